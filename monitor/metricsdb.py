"""The embedded store's database: its schema and how the sink (writer) and the API (reader) open it.

A series is one (metric, host, tags) and has an integer id in ``series``; ``tags`` is the
series' tag set besides host in its canonical text (:func:`encode_tags`: ``mount=/``; ``''``
for the host family). ``series.last_ms`` and ``series.last`` are its newest sample's time and
value (``/hosts`` reads them from the ``series_newest`` index alone) and ``series.sealed_ms``
the end of its sealed past: every sample before it is in ``chunks``, every sample after it in
``recent``. ``hosts`` holds each host's newest sample time (the newest ``last_ms`` of its
series), kept by the write path with each batch: ``/hosts`` reads 1 000 small rows where a
pass over the series index cost two seeks per host (36 000 series).

Tiers (monitor/tiers.py writes them, monitor/api/stores/sqlite.py reads them):

- raw: ``chunks``, one row per series and epoch-aligned :data:`CHUNK_MS` window holding that
  window's samples packed (monitor/chunkcodec.py: about 0.1 to 3 bytes a value where a narrow
  row costs 40 to 85); ``recent``, one row per sample of each series' open window.
- rollups: ``minutes`` and ``hours``, one row per series and bucket (count, sum, min, max, and
  the newest sample's time and value); ``five_minute_days``, one row per series and day holding
  that day's five-minute buckets packed as columns (:func:`monitor.chunkcodec.encode_buckets`).
  Each is computed from a window's samples when it is sealed, so a tier is always an exact
  function of the raw samples it summarises.
  Sum, min, max and last are stored times ``scale`` (``10**k``, the chunk's decimal scale: see
  monitor/chunkcodec.py; 1 for values that have none): whole numbers, which SQLite writes in
  2 to 6 bytes instead of a float's 8 (a REAL column still reads them back as floats, so
  ``min / scale`` is the exact value and ``sum / scale`` the sum of the bucket's samples).
  The five-minute tier exists for the API's usual long windows: 30 days under the default cap
  of 10 000 points are 300-second buckets (8 640 per series). It is packed because those
  windows read every bucket back into Python, and a row costs about a microsecond to step
  through (13 series of 30 days: over 100 ms) where a day's blob costs a few tens; SQL never
  aggregates it (one aggregate over a window reads hours and minutes). It shares the minute
  tier's retention (by whole days) and size share.

Why chunks of two hours: a window must hold whole hour buckets (the hour tier is computed
from one sealed window); two hours of 10-second samples (720 values) pack to a few hundred
bytes, and a day is 12 chunks per series to decode. The minute and hour rollups stay one row
per bucket: SQLite aggregates them in C, which keeps one aggregate over a long window fast;
their cost is bounded by their retention and size share, not by the raw tier's.

The primary keys make writes idempotent (a re-sent sample overwrites itself in ``recent``,
or is merged into its sealed chunk, replacing the rollups of its window) and serve every
range read as one seek per series.

The schema's version is ``PRAGMA user_version``. Older stores migrate on the writer's first
open, in one transaction (all or nothing): version 0 (a narrow ``points`` table without
tags) and version 1 (narrow ``points`` with tags) are read in key order, written as chunks
and rollups, and the old table dropped; version 2 (the tiers, ``series`` without ``last``, the
five-minute tier as rows) gains the column, filled from each series' newest stored sample, and
its five-minute rows are packed into days; versions 2 and 3 (before ``hosts``) gain that
table, filled from ``series``, and the ``series_newest`` index in place of ``series_by_host``.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from itertools import groupby
from pathlib import Path

from monitor import chunkcodec, sqlitedb

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
CHUNK_MS = 2 * 3_600_000
TIER_WIDTHS_MS = {"minutes": 60_000, "five_minutes": 300_000, "hours": 3_600_000}
ROW_TIERS = ("minutes", "hours")
"""The rollup tiers stored one row per bucket (their tables are named as the tiers)."""
PACKED_TIER, PACKED_TABLE, PACKED_DAY_MS = "five_minutes", "five_minute_days", 86_400_000
"""The rollup tier stored as one row of packed buckets per series and day."""
_ROLLUP = """ (
    series    INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    scale     INTEGER NOT NULL,
    sum       REAL NOT NULL,
    min       REAL NOT NULL,
    max       REAL NOT NULL,
    last_ms   INTEGER NOT NULL,
    last      REAL NOT NULL,
    PRIMARY KEY (series, bucket_ms)
) WITHOUT ROWID"""
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS series (
    id        INTEGER PRIMARY KEY,
    metric    TEXT NOT NULL,
    host      TEXT NOT NULL,
    tags      TEXT NOT NULL DEFAULT '',
    last_ms   INTEGER,
    sealed_ms INTEGER NOT NULL DEFAULT -9223372036854775808,
    last      REAL,
    UNIQUE (metric, host, tags)
)""",
    """CREATE TABLE IF NOT EXISTS recent (
    series INTEGER NOT NULL,
    ts_ms  INTEGER NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (series, ts_ms)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS chunks (
    series   INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    data     BLOB NOT NULL,
    PRIMARY KEY (series, start_ms)
) WITHOUT ROWID""",
    *(f"CREATE TABLE IF NOT EXISTS {tier}" + _ROLLUP for tier in ROW_TIERS),
    # /hosts: the newest sample of every series of the fleet's "now" metrics, from the index alone
    "CREATE INDEX IF NOT EXISTS series_newest ON series (metric, host, tags, last_ms, last)",
    """CREATE TABLE IF NOT EXISTS hosts (
    name    TEXT PRIMARY KEY,
    last_ms INTEGER NOT NULL
) WITHOUT ROWID""",
    f"""CREATE TABLE IF NOT EXISTS {PACKED_TABLE} (
    series INTEGER NOT NULL,
    day_ms INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (series, day_ms)
) WITHOUT ROWID""",
)
_OLD_POINTS = "SELECT metric, host, {tags}, ts_ms, value FROM points ORDER BY metric, host, {tags}, ts_ms"
MIGRATE_BATCH_ROWS = 100_000

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
        if version in (2, 3):
            if version == 2:
                _add_last_values(conn)
            for statement in SCHEMA:  # the new indexes and tables
                conn.execute(statement)
            if version == 2:
                _pack_five_minutes(conn)
            _fill_hosts(conn)
        elif version < SCHEMA_VERSION:
            for statement in SCHEMA:
                conn.execute(statement)
            _copy_points(conn)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _add_last_values(conn: sqlite3.Connection) -> None:
    """Version 2 to 3: ``series.last``, the value of each series' newest sample (at ``last_ms``),
    from ``recent`` where the newest sample is still open, else from the chunk holding it."""
    from monitor import tiers  # the write path, which imports this module

    conn.execute("ALTER TABLE series ADD COLUMN last REAL")
    conn.execute(
        "UPDATE series SET last ="
        " (SELECT value FROM recent WHERE series = series.id AND ts_ms = series.last_ms)"
    )
    sealed = conn.execute("SELECT id, last_ms FROM series WHERE last IS NULL AND last_ms IS NOT NULL")
    for sid, last_ms in sealed.fetchall():
        row = conn.execute(
            "SELECT data FROM chunks WHERE series = ? AND start_ms = ?", (sid, tiers.window_of(last_ms))
        ).fetchone()
        if row is None:  # the newest sample's chunk went with a size limit: no value to show
            continue
        stamps, values = chunkcodec.decode(row[0])
        if stamps[-1] == last_ms:
            conn.execute("UPDATE series SET last = ? WHERE id = ?", (values[-1], sid))


def _fill_hosts(conn: sqlite3.Connection) -> None:
    """Versions 2 and 3 to 4: ``hosts`` from each host's newest series; the old host index dropped."""
    conn.execute(
        "INSERT INTO hosts (name, last_ms) SELECT host, max(last_ms) FROM series"
        " WHERE last_ms IS NOT NULL GROUP BY host"
    )
    conn.execute("DROP INDEX IF EXISTS series_by_host")


def _pack_five_minutes(conn: sqlite3.Connection) -> None:
    """Version 2 to 3: the ``five_minutes`` rows packed into one ``five_minute_days`` row per
    series and day, then the old table dropped."""
    cursor = conn.execute(
        "SELECT series, bucket_ms, n, scale, sum, min, max, last_ms, last FROM five_minutes"
        " ORDER BY series, bucket_ms"
    )
    insert = f"INSERT INTO {PACKED_TABLE} (series, day_ms, data) VALUES (?, ?, ?)"  # noqa: S608
    rows = (row for batch in iter(lambda: cursor.fetchmany(MIGRATE_BATCH_ROWS), []) for row in batch)
    for (sid, day_ms), day in groupby(rows, key=lambda r: (r[0], r[1] - r[1] % PACKED_DAY_MS)):
        conn.execute(insert, (sid, day_ms, chunkcodec.encode_buckets([bucket[1:] for bucket in day])))
    conn.execute("DROP TABLE five_minutes")


def _copy_points(conn: sqlite3.Connection) -> None:
    """Move a version 0 or 1 ``points`` table (narrow rows) into the tiers, then drop it."""
    from monitor import tiers  # the write path, which imports this module

    columns = {row[1] for row in conn.execute("PRAGMA table_info(points)")}
    if not columns:
        return
    cursor = conn.execute(_OLD_POINTS.format(tags="tags" if "tags" in columns else "''"))
    ids: dict[tuple[str, str, str], int] = {}
    skipped = 0
    while batch := cursor.fetchmany(MIGRATE_BATCH_ROWS):
        skipped += tiers.store(conn, batch, ids)
    tiers.seal_idle(conn)
    conn.execute("DROP TABLE points")  # its index goes with it
    if skipped:  # ±Inf, which a REAL column holds and the API never showed
        log.warning("migration: %d non-finite values were not carried over", skipped)
