"""Helpers for the spool's tests: a sample line, what a spool holds, what its file holds."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from monitor import sqlitedb
from monitor.lineprotocol import Sample, encode
from monitor.spool import Overflowed, Row, Spool
from tests.tmpfs import fill

REPO = Path(__file__).resolve().parents[2]
NOW_S = 1_700_000_000.0

SpoolFactory = Callable[..., Spool]  # the make_spool fixture: Spool(config with these settings)


class Overflows:
    """Records on_overflow calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []  # (policy, samples)
        self.events: list[Overflowed] = []

    def __call__(self, event: Overflowed) -> None:
        self.calls.append((event.policy, event.n))
        self.events.append(event)

    def total(self, policy: str) -> int:
        return sum(n for p, n in self.calls if p == policy)


def line(ts_ms: int, width: int = 4) -> str:
    fields = {f"cpu_usage_{i}": float(i) + ts_ms % 100 / 4 for i in range(1, width + 1)}
    return encode(Sample(ts_ms, "web-1", fields), "system")


def stored_ts(spool: Spool) -> list[int]:
    return [ts for _, ts, _ in spool.peek(10_000_000)]


def keys(rows: list[Row]) -> list[tuple[int, int]]:
    return [(ts, seq) for seq, ts, _ in rows]


def seqs_of(rows: list[Row]) -> list[int]:
    return [seq for seq, _, _ in rows]


def disk_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def count_rows(path: Path, table: str = "queue") -> int:
    """Rows of TABLE in the spool file at PATH, marked or not (read as another process would)."""
    conn = sqlitedb.connect_readonly(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


class FillWhen:
    """Fills the disk at DIRECTORY the moment SPOOL's connection starts a statement WHEN accepts.

    ``WHEN`` gets the statement's SQL with its parameters bound. The transaction that statement
    is in then meets a real SQLITE_FULL (its WAL cannot grow), at exactly that point: no timing.
    ``filler`` is the file written, ``None`` until it fired.
    """

    def __init__(self, spool: Spool, directory: Path, when: Callable[[str], bool]) -> None:
        self._directory = directory
        self._when = when
        self.filler: Path | None = None
        spool._conn.set_trace_callback(self._statement)

    def _statement(self, sql: str) -> None:
        if self.filler is None and self._when(sql):
            self.filler = fill(self._directory, leave_free_bytes=0)


def deletes_seqs_in(lo: int, hi: int, *, after_the_first: bool = False) -> Callable[[str], bool]:
    """A ``FillWhen`` condition: a range delete of the queue that starts within seqs LO..HI
    (AFTER_THE_FIRST: not at LO, so the pieces before it committed)."""

    def matches(sql: str) -> bool:
        found = _RANGE_DELETE.fullmatch(sql.strip())
        return found is not None and (lo + after_the_first) <= int(found[1]) <= hi

    return matches


_RANGE_DELETE = re.compile(r"DELETE FROM queue WHERE seq BETWEEN (\d+) AND (\d+)")
