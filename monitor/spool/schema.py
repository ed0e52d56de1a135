"""The spool file's tables, how the agent opens it, and its one way to run a transaction."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from monitor import sqlitedb
from monitor.sqlitedb import MovedAside

log = logging.getLogger(__name__)

# queue: the samples, read in (ts_ms, seq) order through queue_by_time (an index on ts_ms also
# holds the rowid, which is seq). state: the agent's counters and shipping state
# (monitor.status.STATE_KEYS). acked: seq ranges [lo, hi] the database accepted whose rows are
# not deleted yet (monitor.spool.acks).
SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    line  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_by_time ON queue (ts_ms);
CREATE TABLE IF NOT EXISTS state (
    key   TEXT PRIMARY KEY,
    value
);
CREATE TABLE IF NOT EXISTS acked (
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL
);
"""

# The oldest rows in the queue's order, from the start or after a given (ts_ms, seq).
OLDEST = "SELECT seq, ts_ms, line FROM queue ORDER BY ts_ms, seq LIMIT ?"
OLDEST_AFTER = "SELECT seq, ts_ms, line FROM queue WHERE (ts_ms, seq) > (?, ?) ORDER BY ts_ms, seq LIMIT ?"

# SQLite's page cache for the spool's connection, in KiB. The working set (the queue's two ends,
# a batch being read) needs far less than SQLite's default, which shows as the agent's RSS.
CACHE_KIB = 512


def connect(path: Path) -> sqlite3.Connection:
    """PATH opened (created with its tables when new) for the agent, in autocommit mode.

    WAL with ``synchronous=FULL``: a committed transaction is fsync'd before the call that
    commits it returns, so neither a crash (SIGKILL) nor a power loss loses it. New files use
    ``auto_vacuum=INCREMENTAL``, so free pages can be handed back to the file system.
    """
    conn = sqlitedb.connect_writer(
        path, synchronous="FULL", cache_kib=CACHE_KIB, isolation_level=None, auto_vacuum="INCREMENTAL"
    )
    conn.executescript(SCHEMA)
    return conn


def open_spool(
    path: Path, *, clock: Callable[[], float] = time.time
) -> tuple[sqlite3.Connection, MovedAside | None]:
    """PATH opened by :func:`connect`; a damaged file is first moved aside and a fresh one created.

    Damaged means a directory in its place, a file that is not a database, or one failing
    ``PRAGMA quick_check`` (checked before anything writes to it: a truncated copy often reads
    fine until a missing page is needed). It is renamed, never deleted
    (:func:`monitor.sqlitedb.move_aside`), and the second value says where it went; ``hostmon
    spool export`` reads what it still holds. A permission problem or a read-only mount raises
    :class:`~monitor.errors.AccessDenied`; anything else (a lock held too long) raises as it is.
    """
    reason = sqlitedb.damage_at(path, quick_check=True)
    if reason is None:
        return _connect_or_denied(path), None
    moved = sqlitedb.move_aside(path, reason, clock=clock)
    log.error("%s: damaged (%s); moved aside to %s; starting a fresh spool", path, reason, moved.moved_to)
    return _connect_or_denied(path), moved


def _connect_or_denied(path: Path) -> sqlite3.Connection:
    try:
        return connect(path)
    except sqlite3.Error as exc:
        raise _translated(exc, path) from exc


def _translated(exc: sqlite3.Error, path: Path) -> Exception:
    return sqlitedb.access_denied(exc, path) or exc


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``): committed when the block ends, else rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
