"""What a spool file still holds, read even when it is damaged (``hostmon spool export``).

The queue is read in ``seq`` order from both ends: forwards until a damaged page stops the
scan, then backwards from the newest row down to where the first scan stopped, so the rows on
both sides of a damaged stretch come back (the sqlite3 shell's ``.dump`` does the same). The
file is opened read-only and never written; its schema is read leniently (``writable_schema``),
so damage elsewhere in the schema does not hide the queue. Rows the agent had marked as
delivered (the ``acked`` ranges) are left out when that table can be read; when it cannot they
are included, which is harmless: a re-sent sample overwrites itself in InfluxDB and in the
SQLite store. A row is one tick: one or more lines (the host's, then one per mount, disk and
interface); it is kept whole when every line decodes, else counted as unreadable, and written
as its lines (a line-protocol file has no notion of ticks).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monitor import sqlitedb
from monitor.errors import FileDamaged
from monitor.lineprotocol import decode
from monitor.sqlitedb import MovedAside

_CHUNK_ROWS = 1000
_FORWARD = "SELECT seq, line FROM queue WHERE seq > ? ORDER BY seq LIMIT ?"
_BACKWARD = "SELECT seq, line FROM queue WHERE seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?"
NEWEST_SEQ = 2**63 - 1


@dataclass(frozen=True)
class Salvaged:
    """How much came back.

    ``lines`` rows (ticks) written, each as its lines; ``skipped_delivered`` rows left out as
    already delivered; ``unreadable`` rows found with a line that is not a sample (bytes of a
    damaged page); ``gap`` the seqs (after, before) between which nothing could be read.
    """

    lines: int
    skipped_delivered: int
    unreadable: int
    gap: tuple[int, int] | None


def export_lines(path: Path, write: Callable[[str], object]) -> Salvaged:
    """Call WRITE with each readable waiting row (its lines joined by "\\n"), in seq order.

    Only lines that decode as line protocol are written. FileDamaged when nothing can be read
    at all (not a database, no queue table, a directory).
    """
    if path.is_dir():
        raise FileDamaged(path, "a directory, not a spool file")
    try:
        conn = sqlitedb.connect_readonly(path, timeout_s=2.0)
        # Read the tables even when another part of the schema is damaged (the connection is
        # read-only: nothing can be written through it).
        conn.execute("PRAGMA writable_schema=ON")
    except sqlite3.Error as exc:
        raise FileDamaged(path, str(exc)) from exc
    try:
        reader = _Reader(conn, write)
        last, failure = reader.scan(_FORWARD, lambda seq: (seq, _CHUNK_ROWS), 0)
        if failure is not None and last == 0 and not _any_row(conn):
            raise FileDamaged(path, str(failure))
        gap = None
        if failure is not None:
            tail: list[str] = []  # read newest first, written in seq order
            reader.write = tail.append
            first_after, _ = reader.scan(_BACKWARD, lambda seq: (last, seq, _CHUNK_ROWS), NEWEST_SEQ)
            for line in reversed(tail):
                write(line)
            gap = (last, first_after)
        return Salvaged(reader.kept, reader.skipped, reader.unreadable, gap)
    finally:
        conn.close()


class _Reader:
    """Scans the queue of CONN, handing each readable sample's line to WRITE."""

    def __init__(self, conn: sqlite3.Connection, write: Callable[[str], object]) -> None:
        self._conn = conn
        self.write = write
        self._delivered = _delivered(conn)
        self.kept = self.skipped = self.unreadable = 0

    def scan(
        self, sql: str, params: Callable[[int], tuple[int, ...]], start: int
    ) -> tuple[int, sqlite3.DatabaseError | None]:
        """Read chunks with SQL from seq START on until none is left or a read fails.

        The last seq read (START when none) and the error that stopped the scan, if one did.
        Rows are taken one by one, so those before a damaged page are kept.
        """
        last = start
        while True:
            rows = 0
            try:
                for seq, line in self._conn.execute(sql, params(last)):
                    if not isinstance(seq, int) or not (seq > last if start == 0 else seq < last):
                        return last, sqlite3.DatabaseError(f"seq {seq!r} out of order after {last}")
                    self._take(seq, line)
                    last, rows = seq, rows + 1
            except sqlite3.DatabaseError as exc:
                return last, exc
            if rows == 0:
                return last, None

    def _take(self, seq: int, line: object) -> None:
        if any(lo <= seq <= hi for lo, hi in self._delivered):
            self.skipped += 1
            return
        try:
            if not isinstance(line, str):
                raise ValueError("not text")
            for one in line.split("\n"):  # a tick's row: its samples' lines, host first
                decode(one)
        except ValueError:
            self.unreadable += 1
            return
        self.write(line)
        self.kept += 1


def describe(moved: MovedAside) -> str:
    """One line for the alert and the log: what was moved where, and how to get its samples back."""
    if moved.was_directory:
        return (
            f"a directory was where the spool {moved.original} belongs; moved aside to {moved.moved_to};"
            " sampling goes on in a fresh spool"
        )
    with_companions = " (with its -wal/-shm)" if moved.companions else ""
    out = f"{moved.moved_to}.lp"
    return (
        f"spool {moved.original} was damaged ({moved.reason}); moved aside to {moved.moved_to}"
        f"{with_companions}; sampling goes on in a fresh spool; to send what it still holds:"
        f" hostmon spool export {moved.moved_to} > {out} && hostmon spool replay {out}"
    )


def _any_row(conn: sqlite3.Connection) -> bool:
    """Whether the newest end of the queue can be read at all (the forward scan failed at once)."""
    try:
        return conn.execute("SELECT 1 FROM queue ORDER BY seq DESC LIMIT 1").fetchone() is not None
    except sqlite3.DatabaseError:
        return False


def _delivered(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    try:
        return [(int(lo), int(hi)) for lo, hi in conn.execute("SELECT lo, hi FROM acked")]
    except sqlite3.DatabaseError:
        return []
