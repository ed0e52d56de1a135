"""Helpers for the spool's tests: a sample line, what a spool holds, what its file holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from monitor import sqlitedb
from monitor.lineprotocol import Sample, encode
from monitor.spool import Overflowed, Row, Spool

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
