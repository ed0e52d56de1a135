"""The embedded SQLite store's schema and connection settings, shared by the sink and the API.

One narrow table, one row per (metric, host, timestamp): a sample of N fields is N rows.
The primary key makes writes idempotent (a re-sent sample overwrites itself, as in
InfluxDB) and serves both the API's range scans and the retention deletes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    metric TEXT NOT NULL,
    host   TEXT NOT NULL,
    ts_ms  INTEGER NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (metric, host, ts_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_by_time ON points (ts_ms);
"""


WRITER_CACHE_KIB = 512


def connect(path: Path, *, readonly: bool = False, timeout_s: float = 10.0) -> sqlite3.Connection:
    """Open the store (creating it unless ``readonly``) in WAL mode.

    The writer (the agent's sink) keeps SQLite's page cache at ``WRITER_CACHE_KIB``: it only
    appends at the new end and deletes at the old one, and the default 2 MiB cache showed as
    RSS growth of the agent. Readers (the API's queries) keep the default.
    """
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_s, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        conn.executescript(SCHEMA)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn
