"""How the SQLite store reads one series over a window from the tiers (schema: monitor/metricsdb.py).

A window is split into parts (:func:`plan`): the coarsest usable tier covers the part aligned
to its buckets and sealed (``series.sealed_ms``: rollups exist only for sealed windows); the
ragged edges go to the next finer tier, and what no tier covers to the raw samples (chunks
and ``recent``). Usable tiers are those whose bucket width divides the step asked for (every
step bucket is then a union of whole tier buckets) — for one aggregate over the window, all.
Because every rollup bucket is computed from exactly the raw samples it covers, an answer
from the parts equals the answer from raw samples (a property test holds it to that).

Every range is one seek of a primary key: ``(series, start_ms)`` for chunks,
``(series, ts_ms)`` for recent samples, ``(series, bucket_ms)`` for a tier.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from monitor import chunkcodec
from monitor.api.stores import Aggregation
from monitor.metricsdb import CHUNK_MS, TIER_WIDTHS_MS

Part = tuple[str, int, int]
"""(tier name or ``raw``, start_ms, end_ms): a half-open piece of a window."""
StepBucket = tuple[int, int, float]
"""(bucket_ms, samples, sum) of one step bucket."""
COARSE_FIRST = sorted(TIER_WIDTHS_MS, key=lambda t: -TIER_WIDTHS_MS[t])
_CHUNKS_SQL = (
    "SELECT start_ms, data FROM chunks WHERE series = :sid AND start_ms > :start - :chunk"
    " AND start_ms < :end ORDER BY start_ms"
)
_CHUNK_COUNTS_SQL = _CHUNKS_SQL.replace("data", "n")  # the blobs (overflow pages) stay unread
_CHUNK_SQL = "SELECT data FROM chunks WHERE series = ? AND start_ms = ?"
_RECENT_WHERE = " FROM recent WHERE series = :sid AND ts_ms >= :start AND ts_ms < :end"
_RECENT_SQL = "SELECT ts_ms, value" + _RECENT_WHERE + " ORDER BY ts_ms"
_RECENT_COUNT_SQL = "SELECT count(*)" + _RECENT_WHERE
_RANGE = " FROM {tier} WHERE series = :sid AND bucket_ms >= :start AND bucket_ms < :end"
# floor(bucket_ms / step) * step, also for negative times: epoch-aligned like InfluxQL's GROUP BY time().
_STEP_SQL = (
    "SELECT bucket_ms - ((bucket_ms % :step) + :step) % :step AS b, sum(n), sum(sum / scale)"
    + _RANGE
    + " GROUP BY b ORDER BY b"
)
_BUCKETS_SQL = "SELECT bucket_ms, n, sum / scale" + _RANGE + " ORDER BY bucket_ms"  # step == the tier's width
TIER_SQL: dict[Aggregation, str] = {
    "mean": "SELECT sum(sum / scale), sum(n)" + _RANGE,
    "min": "SELECT min(min / scale), sum(n)" + _RANGE,
    "max": "SELECT max(max / scale), sum(n)" + _RANGE,
    "count": "SELECT sum(n), sum(n)" + _RANGE,
}
TIER_LAST_SQL = (
    "SELECT last_ms, last / scale, (SELECT sum(n)"
    + _RANGE
    + ")"
    + _RANGE
    + " ORDER BY bucket_ms DESC LIMIT 1"
)


@dataclass(frozen=True)
class SeriesRow:
    """One series as ``series`` lists it."""

    sid: int
    host: str
    tags: str
    sealed_ms: int


def usable_tiers(step_ms: int | None) -> list[str]:
    """The tiers, coarsest first, whose buckets divide STEP_MS (None: one bucket, every tier)."""
    return [t for t in COARSE_FIRST if step_ms is None or step_ms % TIER_WIDTHS_MS[t] == 0]


def plan(start_ms: int, end_ms: int, sealed_ms: int, tiers: list[str]) -> list[Part]:
    """The window's parts in time order: TIERS[0] where aligned and sealed, the rest finer."""
    if start_ms >= end_ms:
        return []
    if not tiers:
        return [("raw", start_ms, end_ms)]
    width = TIER_WIDTHS_MS[tiers[0]]
    a = -(-start_ms // width) * width
    b = min(end_ms // width * width, sealed_ms)
    if a >= b:
        return plan(start_ms, end_ms, sealed_ms, tiers[1:])
    return [
        *plan(start_ms, a, sealed_ms, tiers[1:]),
        (tiers[0], a, b),
        *plan(b, end_ms, sealed_ms, tiers[1:]),
    ]


def raw(conn: sqlite3.Connection, sid: int, start_ms: int, end_ms: int) -> tuple[list[int], list[float]]:
    """The raw samples of series SID in the window, in time order."""
    params = {"sid": sid, "start": start_ms, "end": end_ms, "chunk": CHUNK_MS}
    stamps: list[int] = []
    values: list[float] = []
    for chunk_start_ms, blob in conn.execute(_CHUNKS_SQL, params):
        ts, vs = chunkcodec.decode(blob)
        i = 0 if chunk_start_ms >= start_ms else bisect_left(ts, start_ms)
        j = len(ts) if chunk_start_ms + CHUNK_MS <= end_ms else bisect_left(ts, end_ms)
        stamps += ts[i:j]
        values += vs[i:j]
    for ts_ms, value in conn.execute(_RECENT_SQL, params):
        stamps.append(ts_ms)
        values.append(value)
    return stamps, values


def raw_count(conn: sqlite3.Connection, sid: int, start_ms: int, end_ms: int) -> int:
    """How many raw samples series SID has in the window (a whole chunk by its stored count)."""
    params = {"sid": sid, "start": start_ms, "end": end_ms, "chunk": CHUNK_MS}
    n = 0
    for chunk_start_ms, count in conn.execute(_CHUNK_COUNTS_SQL, params).fetchall():
        if chunk_start_ms >= start_ms and chunk_start_ms + CHUNK_MS <= end_ms:
            n += count
            continue
        blob = conn.execute(_CHUNK_SQL, (sid, chunk_start_ms)).fetchone()[0]
        ts, _ = chunkcodec.decode(blob)
        n += bisect_left(ts, end_ms) - bisect_left(ts, start_ms)
    return n + int(conn.execute(_RECENT_COUNT_SQL, params).fetchone()[0])


def step_buckets(
    conn: sqlite3.Connection, series: SeriesRow, start_ms: int, end_ms: int, step_ms: int
) -> list[StepBucket]:
    """(bucket, samples, sum) per epoch-aligned step bucket of the window that holds samples."""
    out: list[StepBucket] = []
    for tier, a, b in plan(start_ms, end_ms, series.sealed_ms, usable_tiers(step_ms)):
        if tier == "raw":
            stamps, values = raw(conn, series.sid, a, b)
            part = bucket_raw(stamps, values, step_ms)
        else:
            params = {"sid": series.sid, "start": a, "end": b, "step": step_ms}
            sql = _BUCKETS_SQL if step_ms == TIER_WIDTHS_MS[tier] else _STEP_SQL  # no sort when equal
            part = conn.execute(sql.format(tier=tier), params).fetchall()
        if out and part and out[-1][0] == part[0][0]:  # a bucket split between two parts
            bucket_ms, n, total = part[0]
            out[-1] = (bucket_ms, out[-1][1] + n, out[-1][2] + total)
            part = part[1:]
        out += part
    return out


def bucket_raw(stamps: list[int], values: list[float], step_ms: int) -> list[StepBucket]:
    """(bucket, samples, sum) per step bucket of raw samples in time order (one bisect a bucket)."""
    out: list[StepBucket] = []
    i, total = 0, len(stamps)
    while i < total:
        bucket_ms = stamps[i] - stamps[i] % step_ms
        j = bisect_left(stamps, bucket_ms + step_ms, i)
        out.append((bucket_ms, j - i, sum(values[i:j])))
        i = j
    return out


def summaries(
    conn: sqlite3.Connection, fn: Aggregation, series: SeriesRow, start_ms: int, end_ms: int
) -> list[tuple[int, float | None, int | None]]:
    """(samples, value, ts_ms) per part of the window: the sum (mean), count, extreme, or the
    newest value and its time (last) — what :class:`monitor.api.stores.Partial` holds."""
    out: list[tuple[int, float | None, int | None]] = []
    for tier, a, b in plan(start_ms, end_ms, series.sealed_ms, usable_tiers(None)):
        if tier == "raw":
            stamps, values = raw(conn, series.sid, a, b)
            if stamps:
                out.append(_raw_summary(fn, stamps, values))
            continue
        params: dict[str, Any] = {"sid": series.sid, "start": a, "end": b}
        if fn == "last":
            row = conn.execute(TIER_LAST_SQL.format(tier=tier), params).fetchone()
            if row is not None:
                out.append((int(row[2]), float(row[1]), int(row[0])))
            continue
        value, n = conn.execute(TIER_SQL[fn].format(tier=tier), params).fetchone()
        if n:
            out.append((int(n), float(value), None))
    return out


def _raw_summary(
    fn: Aggregation, stamps: list[int], values: list[float]
) -> tuple[int, float | None, int | None]:
    n = len(values)
    if fn == "last":
        return n, values[-1], stamps[-1]
    if fn == "mean":
        return n, sum(values), None
    if fn == "count":
        return n, float(n), None
    return n, (min(values) if fn == "min" else max(values)), None
