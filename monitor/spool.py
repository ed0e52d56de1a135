"""The durable spool: every sample is stored here (SQLite, WAL) before it is shipped.

(Skeleton: the schema and the read-only status other processes use. The queue itself
is being built on top of this.)
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    line  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key   TEXT PRIMARY KEY,
    value
);
"""

# Keys of the ``state`` table (the agent's counters and shipping state, durable across restarts).
STATE_KEYS = (
    "dropped_total",  # samples dropped by the drop_oldest overflow policy
    "spilled_total",  # samples moved to the spill file by the spill overflow policy
    "rejected_total",  # samples in batches the database refused as bad data (400/422)
    "last_success_ms",  # wall-clock ms of the last write the database accepted
    "last_error",  # one line: the last write failure, "" after a success
    "sink_reachable",  # 1 / 0: did the last write attempt reach the database
    "updated_ms",  # when the agent last wrote this table (heartbeat)
)


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


def status_from(conn: sqlite3.Connection) -> SpoolStatus:
    depth, oldest, newest = conn.execute("SELECT count(*), min(ts_ms), max(ts_ms) FROM queue").fetchone()
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
    )


def read_status(path: Path, timeout_s: float = 2.0) -> SpoolStatus | None:
    """Status of the spool at PATH, read-only (for the API process); None if there is none."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_s)
    try:
        return status_from(conn)
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
