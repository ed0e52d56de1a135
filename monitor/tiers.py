"""The embedded store's write path: samples into ``recent``, sealed into chunks and rollups.

Schema and the reasons for it: monitor/metricsdb.py. :func:`store` runs inside the caller's
transaction; after it, each touched series' ``recent`` rows are in its newest window only:
every older window (including one a late or re-sent sample fell into) is sealed, i.e. its
samples merged with the chunk already stored for it (a re-sent sample replaces its old value),
packed, and its minute and hour buckets recomputed from the merged samples. So writes stay
idempotent and every rollup bucket equals what its raw samples give.

:func:`seal_idle` seals the open window of series that stopped receiving samples, so their
last samples reach the rollups before raw retention removes them.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from itertools import groupby

from monitor import chunkcodec
from monitor.metricsdb import CHUNK_MS, PACKED_DAY_MS, PACKED_TABLE, PACKED_TIER, ROW_TIERS, TIER_WIDTHS_MS

Row = tuple[str, str, str, int, float]
"""One sample of one metric: (metric, host, tags text, ts_ms, value)."""
SeriesKey = tuple[str, str, str]
Bucket = tuple[int, int, int, float, float, float, int, float]
"""(bucket_ms, n, scale, sum, min, max, last_ms, last) of one epoch-aligned bucket; sum, min,
max and last times scale (whole numbers when scale is a power of ten above 1)."""
_EXACT_SUM = 1 << 53

_PACKED_SQL = f"SELECT data FROM {PACKED_TABLE} WHERE series = ? AND day_ms = ?"  # noqa: S608
_PACKED_WRITE = f"INSERT OR REPLACE INTO {PACKED_TABLE} (series, day_ms, data) VALUES (?, ?, ?)"  # noqa: S608
_INSERT_RECENT = "INSERT OR REPLACE INTO recent (series, ts_ms, value) VALUES (?, ?, ?)"
# Every SET expression reads the row as it was: last follows a sample at or after last_ms.
_NEWEST = (
    "UPDATE series SET last = CASE WHEN last_ms IS NULL OR ?1 >= last_ms THEN ?3 ELSE last END,"
    " last_ms = max(coalesce(last_ms, ?1), ?1) WHERE id = ?2"
)
_HOST_NEWEST = (
    "INSERT INTO hosts (name, last_ms) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET last_ms = max(last_ms, excluded.last_ms)"
)


def window_of(ts_ms: int) -> int:
    """Start of the epoch-aligned chunk window holding TS_MS (floor, also before 1970)."""
    return ts_ms - ts_ms % CHUNK_MS


def store(conn: sqlite3.Connection, rows: Iterable[Row], ids: dict[SeriesKey, int]) -> int:
    """Write ROWS (non-finite values are skipped) and seal what they close; the number skipped.

    IDS caches series ids across calls on one connection (filled here as series appear).
    """
    per_series: dict[int, tuple[int, float]] = {}  # the newest sample of each series in ROWS
    per_host: dict[str, int] = {}  # the newest sample time of each host in ROWS
    recent: list[tuple[int, int, float]] = []
    skipped = 0
    for metric, host, tags, ts_ms, value in rows:
        if not math.isfinite(value):
            skipped += 1
            continue
        key = (metric, host, tags)
        sid = ids.get(key)
        if sid is None:
            sid = ids[key] = _series_id(conn, key)
        recent.append((sid, ts_ms, value))
        newest = per_series.get(sid)
        if newest is None or ts_ms >= newest[0]:  # a re-sent sample later in ROWS wins, as in recent
            per_series[sid] = (ts_ms, value)
        if ts_ms > per_host.get(host, ts_ms - 1):
            per_host[host] = ts_ms
    conn.executemany(_INSERT_RECENT, recent)
    conn.executemany(_NEWEST, [(ts_ms, sid, value) for sid, (ts_ms, value) in per_series.items()])
    conn.executemany(_HOST_NEWEST, per_host.items())
    for sid, (newest_ms, _) in per_series.items():
        seal(conn, sid, window_of(newest_ms))
    return skipped


def _series_id(conn: sqlite3.Connection, key: SeriesKey) -> int:
    conn.execute("INSERT OR IGNORE INTO series (metric, host, tags) VALUES (?, ?, ?)", key)
    row = conn.execute("SELECT id FROM series WHERE metric = ? AND host = ? AND tags = ?", key).fetchone()
    return int(row[0])


def seal(conn: sqlite3.Connection, sid: int, before_ms: int) -> None:
    """Seal every ``recent`` sample of series SID older than BEFORE_MS (or than its sealed_ms)."""
    sealed_ms = int(conn.execute("SELECT sealed_ms FROM series WHERE id = ?", (sid,)).fetchone()[0])
    upto_ms = max(sealed_ms, before_ms)
    old = conn.execute(
        "SELECT ts_ms, value FROM recent WHERE series = ? AND ts_ms < ? ORDER BY ts_ms", (sid, upto_ms)
    ).fetchall()
    if old:
        for window_ms, samples in groupby(old, key=lambda row: window_of(row[0])):
            _write_window(conn, sid, window_ms, list(samples))
        conn.execute("DELETE FROM recent WHERE series = ? AND ts_ms < ?", (sid, upto_ms))
    if upto_ms > sealed_ms:
        conn.execute("UPDATE series SET sealed_ms = ? WHERE id = ?", (upto_ms, sid))


def seal_idle(conn: sqlite3.Connection) -> int:
    """Seal the open window of every series whose newest sample is in an older window than the
    store's newest sample; the number of series sealed."""
    newest = newest_ms(conn)
    if newest is None:
        return 0
    cut_ms = window_of(newest)
    idle = conn.execute(
        "SELECT id FROM series WHERE last_ms < ? AND last_ms >= sealed_ms", (cut_ms,)
    ).fetchall()
    for (sid,) in idle:
        seal(conn, int(sid), cut_ms)
    return len(idle)


def _write_window(conn: sqlite3.Connection, sid: int, window_ms: int, new: list[tuple[int, float]]) -> None:
    """Merge NEW into the window's chunk (NEW wins a timestamp), then replace its rollups."""
    old = conn.execute(
        "SELECT data FROM chunks WHERE series = ? AND start_ms = ?", (sid, window_ms)
    ).fetchone()
    if old is None:
        samples = new
    else:
        merged = dict(zip(*chunkcodec.decode(old[0]), strict=True))
        merged.update(new)
        samples = sorted(merged.items())
    stamps = [ts for ts, _ in samples]
    values = [v for _, v in samples]
    conn.execute(
        "INSERT OR REPLACE INTO chunks (series, start_ms, n, data) VALUES (?, ?, ?, ?)",
        (sid, window_ms, len(samples), chunkcodec.encode(stamps, values)),
    )
    k, ints = chunkcodec.scaled(values)
    stored: list[tuple[int, float]] = list(zip(stamps, ints, strict=True)) if k >= 0 else samples
    scale = 10**k if k >= 0 else 1
    for tier in ROW_TIERS:  # table names from the schema, never input
        conn.executemany(
            f"INSERT OR REPLACE INTO {tier} (series, bucket_ms, n, scale, sum, min, max, last_ms, last)"  # noqa: S608
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(sid, *bucket) for bucket in rollup(stored, TIER_WIDTHS_MS[tier], scale)],
        )
    _write_packed(conn, sid, window_ms, rollup(stored, TIER_WIDTHS_MS[PACKED_TIER], scale))


def _write_packed(conn: sqlite3.Connection, sid: int, window_ms: int, buckets: list[Bucket]) -> None:
    """Put the window's five-minute BUCKETS into its day's packed row (replacing the window's
    old ones: a window's buckets only ever grow when it is merged again)."""
    day_ms = window_ms - window_ms % PACKED_DAY_MS
    old = conn.execute(_PACKED_SQL, (sid, day_ms)).fetchone()
    if old is not None:
        end_ms = window_ms + CHUNK_MS
        kept = [b for b in chunkcodec.decode_buckets(old[0]).rows() if not window_ms <= b[0] < end_ms]
        buckets = sorted(kept + buckets)
    conn.execute(_PACKED_WRITE, (sid, day_ms, chunkcodec.encode_buckets(buckets)))


def rollup(samples: Sequence[tuple[int, float]], width_ms: int, scale: int = 1) -> list[Bucket]:
    """The epoch-aligned buckets of WIDTH_MS over SAMPLES ((ts_ms, value times SCALE) in time
    order). A bucket whose integer sum a float cannot hold exactly is stored unscaled."""
    out: list[Bucket] = []
    for bucket_ms, group in groupby(samples, key=lambda s: s[0] - s[0] % width_ms):
        items = list(group)
        values = [v for _, v in items]
        total, bucket_scale = sum(values), scale
        if scale > 1 and abs(total) >= _EXACT_SUM:
            values, bucket_scale = [v / scale for v in values], 1
            total = sum(values)
        last_ms, last = items[-1][0], values[-1]
        out.append((bucket_ms, len(values), bucket_scale, total, min(values), max(values), last_ms, last))
    return out


TABLES = {"raw": ("chunks", "recent"), "minutes": ("minutes", PACKED_TABLE), "hours": ("hours",)}
"""The tables of each tier that has its own retention and size share (configuration's names)."""
_DELETE = {  # every table name from the schema, never from input
    "raw": (
        "DELETE FROM chunks WHERE series IN (SELECT id FROM series) AND start_ms <= :cut - :chunk",
        "DELETE FROM recent WHERE series IN (SELECT id FROM series) AND ts_ms < :cut",
    ),
    "minutes": (
        "DELETE FROM minutes WHERE series IN (SELECT id FROM series) AND bucket_ms < :cut",
        f"DELETE FROM {PACKED_TABLE} WHERE series IN (SELECT id FROM series) AND day_ms <= :cut - :day",  # noqa: S608
    ),
    "hours": ("DELETE FROM hours WHERE series IN (SELECT id FROM series) AND bucket_ms < :cut",),
}
_OLDEST = {
    tier: f"SELECT min((SELECT min({column}) FROM {table} WHERE series = s.id)) FROM series s"  # noqa: S608
    for tier, table, column in (("raw", "chunks", "start_ms"), *((t, t, "bucket_ms") for t in ROW_TIERS))
}


def delete_before(conn: sqlite3.Connection, tier: str, cut_ms: int) -> int:
    """Delete TIER's data (a key of :data:`TABLES`) older than CUT_MS (``raw``: chunks that end
    by then, and recent samples before it; a rollup tier: its buckets before it, the packed
    five-minute days that end by then); the rows deleted. Each series is one primary-key seek,
    never a scan."""
    params = {"cut": cut_ms, "chunk": CHUNK_MS, "day": PACKED_DAY_MS}
    return sum(conn.execute(sql, params).rowcount for sql in _DELETE[tier])


def newest_ms(conn: sqlite3.Connection) -> int | None:
    """The time of the store's newest sample (None when it holds none)."""
    value = conn.execute("SELECT max(last_ms) FROM series").fetchone()[0]
    return None if value is None else int(value)


def oldest_ms(conn: sqlite3.Connection, tier: str) -> int | None:
    """The oldest time TIER holds (one seek per series)."""
    value = conn.execute(_OLDEST[tier]).fetchone()[0]
    return None if value is None else int(value)


def delete_host(conn: sqlite3.Connection, host: str) -> None:
    """Delete every sample of HOST in every tier, its series and its ``hosts`` row."""
    for table in ("recent", "chunks", *ROW_TIERS, PACKED_TABLE):  # names from the schema, never input
        conn.execute(f"DELETE FROM {table} WHERE series IN (SELECT id FROM series WHERE host = ?)", (host,))  # noqa: S608
    conn.execute("DELETE FROM series WHERE host = ?", (host,))
    conn.execute("DELETE FROM hosts WHERE name = ?", (host,))


def delete_series_before(conn: sqlite3.Connection, cut_ms: int) -> None:
    """Forget the series whose newest sample is older than CUT_MS (for when no tier holds
    anything of them any more), and the hosts all of whose series those are."""
    conn.execute("DELETE FROM series WHERE last_ms < ?", (cut_ms,))
    conn.execute("DELETE FROM hosts WHERE last_ms < ?", (cut_ms,))  # its newest series is older


def read_all(conn: sqlite3.Connection) -> list[Row]:
    """Every raw sample stored, ordered by (metric, host, tags, ts_ms): for tests and exports."""
    out: list[Row] = []
    for sid, metric, host, tags in conn.execute("SELECT id, metric, host, tags FROM series").fetchall():
        for (blob,) in conn.execute("SELECT data FROM chunks WHERE series = ? ORDER BY start_ms", (sid,)):
            stamps, values = chunkcodec.decode(blob)
            out.extend((metric, host, tags, ts, v) for ts, v in zip(stamps, values, strict=True))
        recent = conn.execute("SELECT ts_ms, value FROM recent WHERE series = ? ORDER BY ts_ms", (sid,))
        out.extend((metric, host, tags, ts, v) for ts, v in recent)
    return sorted(out)
