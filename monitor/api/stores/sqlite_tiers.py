"""How the SQLite store reads one series over a window from the tiers (schema: monitor/metricsdb.py).

A window is split into parts (:func:`plan`): the coarsest usable tier covers the part aligned
to its buckets and sealed (``series.sealed_ms``: rollups exist only for sealed windows); the
ragged edges go to the next finer tier, and what no tier covers to the raw samples (chunks
and ``recent``). Usable tiers are those whose bucket width divides the step asked for (every
step bucket is then a union of whole tier buckets) — for one aggregate over the window, all.
Because every rollup bucket is computed from exactly the raw samples it covers, an answer
from the parts equals the answer from raw samples (a property test holds it to that).

Every range is one seek of a primary key: ``(series, start_ms)`` for chunks,
``(series, ts_ms)`` for recent samples, ``(series, bucket_ms)`` for a tier of rows,
``(series, day_ms)`` for the packed five-minute days. Step buckets come back as columns
(:data:`Columns`), so a long window makes no tuple per bucket.
"""

from __future__ import annotations

import sqlite3
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import truediv
from typing import Any

from monitor import chunkcodec
from monitor.api.cache import BoundedCache
from monitor.api.stores import Aggregation
from monitor.metricsdb import CHUNK_MS, PACKED_DAY_MS, PACKED_TABLE, PACKED_TIER, TIER_WIDTHS_MS

Part = tuple[str, int, int]
"""(tier name or ``raw``, start_ms, end_ms): a half-open piece of a window."""
WholeChunk = tuple[bytes, int, int]
"""A chunk a window holds entirely: its blob, the index of its first sample, its samples."""
Columns = tuple[list[int], list[int], list[float]]
"""Step buckets as columns: each bucket's start, its samples, and their sum."""
COARSE_FIRST = sorted(TIER_WIDTHS_MS, key=lambda t: -TIER_WIDTHS_MS[t])
_PACKED_SQL = (
    f"SELECT data FROM {PACKED_TABLE} WHERE series = :sid AND day_ms > :start - :day"  # noqa: S608
    " AND day_ms < :end ORDER BY day_ms"
)
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


class DecodedChunks(BoundedCache[tuple["array[int]", "array[float]"]]):
    """The last decoded raw chunks, keyed by their blob (a chunk rewritten by a late sample is
    another blob, so an entry is never stale), up to MAX_VALUES samples in all (16 bytes each:
    the default 1 000 000 is 16 MB, a day of the default collectors for about nine hosts).
    Dashboards ask for the same windows again every few seconds; a hit costs a lookup instead
    of a decode."""

    def __init__(self, max_values: int = 1_000_000) -> None:
        super().__init__(max_values, size=lambda entry: len(entry[0]))

    def decode(self, blob: bytes) -> tuple[array[int], array[float]]:
        return self.get(blob, lambda: _decoded(blob))


def _decoded(blob: bytes) -> tuple[array[int], array[float]]:
    stamps, values = chunkcodec.decode(blob)
    return array("q", stamps), array("d", values)


CHUNKS = DecodedChunks()
"""The process's cache of decoded chunks (the API reads through it)."""


@dataclass(frozen=True)
class SeriesRow:
    """One series as ``series`` lists it."""

    sid: int
    host: str
    tags: str
    sealed_ms: int


def usable_tiers(step_ms: int | None) -> list[str]:
    """The tiers, coarsest first, whose buckets divide STEP_MS (None: one aggregate over the
    window, which the tiers of rows answer in SQL: every tier but the packed one)."""
    if step_ms is None:
        return [t for t in COARSE_FIRST if t != PACKED_TIER]
    return [t for t in COARSE_FIRST if step_ms % TIER_WIDTHS_MS[t] == 0]


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


def raw(
    conn: sqlite3.Connection, sid: int, start_ms: int, end_ms: int, *, whole: list[WholeChunk] | None = None
) -> tuple[array[int], array[float]]:
    """The raw samples of series SID in the window, in time order (as arrays: copied from the
    decoded chunks without an object per sample). WHOLE, when given, gets each chunk the
    window holds entirely: (its blob, where its samples start in the arrays, how many)."""
    params = {"sid": sid, "start": start_ms, "end": end_ms, "chunk": CHUNK_MS}
    stamps: array[int] = array("q")
    values: array[float] = array("d")
    for chunk_start_ms, blob in conn.execute(_CHUNKS_SQL, params):
        ts, vs = CHUNKS.decode(blob)
        i = 0 if chunk_start_ms >= start_ms else bisect_left(ts, start_ms)
        j = len(ts) if chunk_start_ms + CHUNK_MS <= end_ms else bisect_left(ts, end_ms)
        if whole is not None and i == 0 and j == len(ts):
            whole.append((blob, len(stamps), j))
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
        ts, _ = CHUNKS.decode(blob)
        n += bisect_left(ts, end_ms) - bisect_left(ts, start_ms)
    return n + int(conn.execute(_RECENT_COUNT_SQL, params).fetchone()[0])


def step_buckets(
    conn: sqlite3.Connection,
    series: SeriesRow,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    whole: list[WholeChunk] | None = None,
) -> Columns:
    """(bucket starts, samples, sums) of the window's epoch-aligned step buckets that hold
    samples. WHOLE, when given, gets each packed day whose five-minute buckets are step buckets
    of the answer as they are (a five-minute step, the day inside the window): its blob, where
    its buckets start in the columns, how many."""
    stamps: list[int] = []
    counts: list[int] = []
    sums: list[float] = []
    for tier, a, b in plan(start_ms, end_ms, series.sealed_ms, usable_tiers(step_ms)):
        days: list[WholeChunk] = []
        if tier == "raw":
            part = bucket_raw(*raw(conn, series.sid, a, b), step_ms)
        elif tier == PACKED_TIER:
            part = packed(conn, series.sid, a, b, step_ms, whole=days if whole is not None else None)
        else:
            params = {"sid": series.sid, "start": a, "end": b, "step": step_ms}
            sql = _BUCKETS_SQL if step_ms == TIER_WIDTHS_MS[tier] else _STEP_SQL  # no sort when equal
            rows = conn.execute(sql.format(tier=tier), params).fetchall()
            b_col, n_col, s_col = zip(*rows, strict=True) if rows else ((), (), ())
            part = (list(b_col), list(n_col), list(s_col))
        p_stamps, p_counts, p_sums = part
        shift = len(stamps)
        if stamps and p_stamps and stamps[-1] == p_stamps[0]:  # a bucket split between two parts
            counts[-1] += p_counts[0]
            sums[-1] += p_sums[0]
            p_stamps, p_counts, p_sums = p_stamps[1:], p_counts[1:], p_sums[1:]
            shift -= 1
            if whole and whole[-1][1] + whole[-1][2] == len(stamps):  # its last bucket changed
                whole.pop()
            days = [d for d in days if d[1] > 0]  # a day whose first bucket went into the last one
        if whole is not None:
            whole += [(blob, start + shift, n) for blob, start, n in days]
        stamps += p_stamps
        counts += p_counts
        sums += p_sums
    return stamps, counts, sums


def packed(
    conn: sqlite3.Connection,
    sid: int,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    whole: list[WholeChunk] | None = None,
) -> Columns:
    """Step buckets of the packed five-minute days' buckets in the window (STEP_MS a multiple
    of five minutes); WHOLE as :func:`step_buckets` says."""
    params = {"sid": sid, "start": start_ms, "end": end_ms, "day": PACKED_DAY_MS}
    stamps: list[int] = []
    counts: list[int] = []
    sums: list[float] = []
    as_they_are = step_ms == TIER_WIDTHS_MS[PACKED_TIER]
    for (blob,) in conn.execute(_PACKED_SQL, params):
        day = chunkcodec.decode_buckets(blob)
        i, j = bisect_left(day.bucket_ms, start_ms), bisect_left(day.bucket_ms, end_ms)
        if whole is not None and as_they_are and i == 0 and j == len(day.bucket_ms):
            whole.append((blob, len(stamps), j))
        stamps += day.bucket_ms[i:j]
        counts += day.n[i:j].tolist()
        sums += map(truediv, day.sum[i:j], day.scale[i:j])
    if step_ms == TIER_WIDTHS_MS[PACKED_TIER] or not stamps:
        return stamps, counts, sums
    out: Columns = ([], [], [])
    keyed = ((b - b % step_ms, n, total) for b, n, total in zip(stamps, counts, sums, strict=True))
    for bucket_ms, group in groupby(keyed, key=lambda item: item[0]):
        items = list(group)
        out[0].append(bucket_ms)
        out[1].append(sum(n for _, n, _ in items))
        out[2].append(sum(total for _, _, total in items))
    return out


def bucket_raw(stamps: Sequence[int], values: Sequence[float], step_ms: int) -> Columns:
    """(bucket starts, samples, sums) per step bucket of raw samples in time order (one bisect a
    bucket)."""
    out: Columns = ([], [], [])
    i, total = 0, len(stamps)
    while i < total:
        bucket_ms = stamps[i] - stamps[i] % step_ms
        j = bisect_left(stamps, bucket_ms + step_ms, i)
        out[0].append(bucket_ms)
        out[1].append(j - i)
        out[2].append(sum(values[i:j]))
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
    fn: Aggregation, stamps: Sequence[int], values: Sequence[float]
) -> tuple[int, float | None, int | None]:
    n = len(values)
    if fn == "last":
        return n, values[-1], stamps[-1]
    if fn == "mean":
        return n, sum(values), None
    if fn == "count":
        return n, float(n), None
    return n, (min(values) if fn == "min" else max(values)), None
