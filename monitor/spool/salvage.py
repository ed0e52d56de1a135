"""What a spool file still holds, read even when it is damaged (``hostmon spool export``).

The queue is read in ``seq`` order from both ends: forwards until a damaged page stops the
scan, then backwards from the newest row down to where the first scan stopped, so the rows on
both sides of a damaged stretch come back (the sqlite3 shell's ``.dump`` does the same). The
file is opened read-only and never written; its schema is read leniently (``writable_schema``),
so damage elsewhere in the schema does not hide the queue. Rows the agent had marked as
delivered (the ``acked`` ranges) are left out when that table can be read; when it cannot they
are included, which is harmless: a re-sent sample overwrites itself in InfluxDB and in the
SQLite store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monitor import sqlitedb
from monitor.errors import FileDamaged
from monitor.sqlitedb import MovedAside

_CHUNK_ROWS = 1000
_FORWARD = "SELECT seq, line FROM queue WHERE seq > ? ORDER BY seq LIMIT ?"
_BACKWARD = "SELECT seq, line FROM queue WHERE seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?"
NEWEST_SEQ = 2**63 - 1


@dataclass(frozen=True)
class Salvaged:
    """How much came back: ``lines`` written; ``gap`` the seqs (after, before) that could not be read."""

    lines: int
    skipped_delivered: int
    gap: tuple[int, int] | None


def export_lines(path: Path, write: Callable[[str], object]) -> Salvaged:
    """Call WRITE with each waiting sample's line (no newline) that can be read from PATH.

    FileDamaged when nothing can be read at all (not a database, no queue table, a directory).
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
        delivered = _delivered(conn)
        kept = skipped = 0

        def take(rows: list[tuple[int, str]]) -> None:
            nonlocal kept, skipped
            for seq, line in rows:
                if any(lo <= seq <= hi for lo, hi in delivered):
                    skipped += 1
                else:
                    write(line)
                    kept += 1

        last, failure = _scan(conn, _FORWARD, lambda seq: (seq, _CHUNK_ROWS), 0, take)
        if failure is not None and last == 0 and not _any_row(conn):
            raise FileDamaged(path, str(failure))
        gap = None
        if failure is not None:
            first_after, _ = _scan(conn, _BACKWARD, lambda seq: (last, seq, _CHUNK_ROWS), NEWEST_SEQ, take)
            gap = (last, first_after)
        return Salvaged(kept, skipped, gap)
    finally:
        conn.close()


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


def _scan(
    conn: sqlite3.Connection,
    sql: str,
    params: Callable[[int], tuple[int, ...]],
    start: int,
    take: Callable[[list[tuple[int, str]]], None],
) -> tuple[int, sqlite3.DatabaseError | None]:
    """Read chunks with SQL from seq START on until none is left or a read fails.

    The last seq read (START when none) and the error that stopped the scan, if one did.
    """
    last = start
    while True:
        try:
            rows = [(int(seq), str(line)) for seq, line in conn.execute(sql, params(last))]
        except sqlite3.DatabaseError as exc:
            return last, exc
        if not rows:
            return last, None
        take(rows)
        last = rows[-1][0]


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
