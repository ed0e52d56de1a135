"""The embedded store's database: its schema and how the sink (writer) and the API (reader) open it.

One narrow table, one row per (metric, host, tags, timestamp): a sample of N fields is N rows.
``tags`` is the series' tag set besides host in its canonical text (:func:`encode_tags`:
``mount=/``; ``''`` for the host family). The primary key makes writes idempotent (a re-sent
sample overwrites itself, as in InfluxDB) and serves the API's range scans; the time index
serves the retention deletes.

The schema's version is ``PRAGMA user_version``. A store written before tags existed (version
0: no ``tags`` column) is migrated by the writer on its first open, in one transaction (a new
table, every row copied with ``tags = ''``, the old one dropped, the new one renamed).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from monitor import sqlitedb

SCHEMA_VERSION = 1
_COLUMNS = """ (
    metric TEXT NOT NULL,
    host   TEXT NOT NULL,
    tags   TEXT NOT NULL DEFAULT '',
    ts_ms  INTEGER NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (metric, host, tags, ts_ms)
) WITHOUT ROWID"""
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS points" + _COLUMNS,
    "CREATE INDEX IF NOT EXISTS points_by_time ON points (ts_ms)",
)
_MIGRATE_FROM_0 = (  # version 0: (metric, host, ts_ms, value), PRIMARY KEY (metric, host, ts_ms)
    "CREATE TABLE points_new" + _COLUMNS,
    "INSERT INTO points_new (metric, host, tags, ts_ms, value)"
    " SELECT metric, host, '', ts_ms, value FROM points ORDER BY metric, host, ts_ms",
    "DROP TABLE points",  # its index goes with it
    "ALTER TABLE points_new RENAME TO points",
)

# The writer only appends at the new end and deletes at the old one: a small page cache does.
WRITER_CACHE_KIB = 512

Tags = tuple[tuple[str, str], ...]
_SPECIAL = re.compile(r"[\\,]")
_PAIR_END = re.compile(r"(?<!\\)((?:\\\\)*),")


def encode_tags(tags: Tags) -> str:
    """The canonical text of a tag set: ``key=value`` pairs sorted by key, joined by ``,``; a
    backslash or comma in a value is escaped with a backslash (keys are catalog names). ``''``
    for no tags. Equal tag sets have equal texts, so ``tags = ?`` seeks the primary key."""
    return ",".join(f"{k}={_SPECIAL.sub(_escape, v)}" for k, v in sorted(tags))


def _escape(match: re.Match[str]) -> str:
    return "\\" + match.group()


def decode_tags(text: str) -> Tags:
    """Inverse of :func:`encode_tags`."""
    if not text:
        return ()
    pairs = []
    for part in _split(text):
        key, _, value = part.partition("=")
        pairs.append((key, re.sub(r"\\(.)", r"\1", value)))
    return tuple(pairs)


def _split(text: str) -> list[str]:
    """TEXT split at every comma that no backslash escapes."""
    out, start = [], 0
    for match in _PAIR_END.finditer(text):
        out.append(text[start : match.end() - 1])
        start = match.end()
    out.append(text[start:])
    return out


def connect(path: Path, *, readonly: bool = False, timeout_s: float = 10.0) -> sqlite3.Connection:
    """Open the store read-only, or for writing (created with its schema when missing, migrated
    to :data:`SCHEMA_VERSION` when older)."""
    if readonly:
        return sqlitedb.connect_readonly(path, timeout_s=timeout_s)
    conn = sqlitedb.connect_writer(
        path, synchronous="NORMAL", cache_kib=WRITER_CACHE_KIB, timeout_s=timeout_s
    )
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the store to :data:`SCHEMA_VERSION` in one transaction (all or nothing).

    Raises ``sqlite3.DatabaseError`` for a store of a newer version than this code knows.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    conn.commit()
    conn.execute("BEGIN IMMEDIATE")  # re-read under the write lock: one writer migrates
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"the store's schema version {version} is newer than this code's ({SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(points)")}
            if columns and "tags" not in columns:  # version 0: written before tags existed
                for statement in _MIGRATE_FROM_0:
                    conn.execute(statement)
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
