"""The embedded store's database: its schema and how the sink (writer) and the API (reader) open it.

One narrow table, one row per (metric, host, timestamp): a sample of N fields is N rows.
The primary key makes writes idempotent (a re-sent sample overwrites itself, as in
InfluxDB) and serves both the API's range scans and the retention deletes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from monitor import sqlitedb

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

# The writer only appends at the new end and deletes at the old one: a small page cache does.
WRITER_CACHE_KIB = 512


def connect(path: Path, *, readonly: bool = False, timeout_s: float = 10.0) -> sqlite3.Connection:
    """Open the store read-only, or for writing (created with its schema when missing)."""
    if readonly:
        return sqlitedb.connect_readonly(path, timeout_s=timeout_s)
    conn = sqlitedb.connect_writer(
        path, synchronous="NORMAL", cache_kib=WRITER_CACHE_KIB, timeout_s=timeout_s
    )
    conn.executescript(SCHEMA)
    return conn
