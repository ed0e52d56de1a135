"""The agent's status as its spool file records it, and the read-only reader of it.

The agent writes these keys (:mod:`monitor.spool.state`); ``/health`` and ``hostmon spool``
read them from another process with :func:`read_status`, which never creates or writes the file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from monitor import access, sqlitedb
from monitor.errors import FileDamaged

# Keys of the spool file's ``state`` table: the agent's counters and shipping state.
STATE_KEYS = (
    "dropped_total",  # samples dropped by the drop_oldest overflow policy
    "spilled_total",  # samples moved to the spill file by the spill overflow policy
    "rejected_total",  # samples in batches the database refused as bad data (400/422)
    "last_success_ms",  # wall-clock ms of the last write the database accepted
    "last_error",  # one line: the last write failure, "" after a success
    "sink_reachable",  # 1 / 0: did the last write attempt reach the database
    "updated_ms",  # when the agent last wrote this table (heartbeat)
    "clock_step_ms",  # the last wall-clock step the agent saw: + forward, - back
    "clock_step_at_ms",  # the wall-clock time right after that step
)

# The rows still waiting: rows whose seq lies in an ``acked`` range were delivered (a deferred
# ack) and are only not deleted yet.
NOT_ACKED = "NOT EXISTS (SELECT 1 FROM acked WHERE queue.seq BETWEEN acked.lo AND acked.hi)"
WAITING_ROWS = f"SELECT seq, ts_ms, line FROM queue WHERE {NOT_ACKED} ORDER BY ts_ms, seq"  # noqa: S608
_SUMMARY = "SELECT count(*), min(ts_ms), max(ts_ms) FROM queue"
_SUMMARY_WAITING = f"{_SUMMARY} WHERE {NOT_ACKED}"


@dataclass(frozen=True)
class SpoolStatus:
    """What ``/health`` and ``hostmon spool`` report."""

    depth: int
    oldest_ts_ms: int | None
    newest_ts_ms: int | None
    dropped_total: int
    spilled_total: int
    rejected_total: int
    last_success_ms: int | None
    last_error: str
    sink_reachable: bool | None
    updated_ms: int | None
    clock_step_ms: int | None = None
    clock_step_at_ms: int | None = None


def status_from(conn: sqlite3.Connection) -> SpoolStatus:
    """The status recorded in the spool file CONN has open (rows of deferred acks left out)."""
    has_acked = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'acked'").fetchone()
    # (a file no agent of this version has opened yet has no acked table)
    depth, oldest, newest = conn.execute(_SUMMARY_WAITING if has_acked else _SUMMARY).fetchone()
    state = dict(conn.execute("SELECT key, value FROM state").fetchall())
    reachable = state.get("sink_reachable")
    return SpoolStatus(
        depth=int(depth),
        oldest_ts_ms=oldest,
        newest_ts_ms=newest,
        dropped_total=int(state.get("dropped_total") or 0),
        spilled_total=int(state.get("spilled_total") or 0),
        rejected_total=int(state.get("rejected_total") or 0),
        last_success_ms=state.get("last_success_ms"),
        last_error=str(state.get("last_error") or ""),
        sink_reachable=None if reachable is None else bool(reachable),
        updated_ms=state.get("updated_ms"),
        clock_step_ms=state.get("clock_step_ms"),
        clock_step_at_ms=state.get("clock_step_at_ms"),
    )


def read_status(path: Path, timeout_s: float = 2.0) -> SpoolStatus | None:
    """Status of the spool at PATH, read-only; None if there is none (or it has no tables yet).

    Raises :class:`~monitor.errors.FileDamaged` for a damaged file (or a directory in its
    place) and :class:`~monitor.errors.AccessDenied` when this user cannot read it.
    """
    if path.is_dir():
        raise FileDamaged(path, "a directory is in its place")
    if not path.exists():
        return None
    access.require_readable(path, access.SQLITE_COMPANIONS)
    try:
        conn = sqlitedb.connect_readonly(path, timeout_s=timeout_s)
    except sqlite3.Error as exc:
        raise _unreadable(exc, path) from exc
    try:
        return status_from(conn)
    except sqlite3.DatabaseError as exc:
        if sqlitedb.damage(exc) or sqlitedb.access_denied(exc, path, "read"):
            raise _unreadable(exc, path) from exc
        if isinstance(exc, sqlite3.OperationalError):
            return None  # no tables yet: the agent is creating the file
        raise
    finally:
        conn.close()


def _unreadable(exc: sqlite3.Error, path: Path) -> Exception:
    if sqlitedb.damage(exc):
        return FileDamaged(path, str(exc))
    return sqlitedb.access_denied(exc, path, "read") or exc
