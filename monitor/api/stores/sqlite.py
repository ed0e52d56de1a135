"""The embedded store: reads the SQLite file the SQLite sink writes (schema: monitor/metricsdb.py).

The file is opened read-only, one connection per call (cheap, and safe across waitress's
threads). A file that does not exist yet, or has no table yet, is an empty store, not an
error. Every query runs under a deadline (a progress handler), so a huge scan becomes a
``StoreUnavailable`` after ``timeout_s`` instead of holding a thread.

The primary key is (metric, host, tags, ts_ms); every query is written so SQLite seeks that
key per series instead of scanning: hosts, and a tagged family's tag sets per host, are found
with skip-scans (one index seek per distinct value), then each range is ``metric = ? AND
host = ? AND tags = ? AND ts_ms BETWEEN``. A tag filter on the family's key names the whole
tag set (every family has one tag key), so it is bound as ``tags = ?`` directly.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monitor import catalog, metricsdb, sqlitedb
from monitor.api.stores import (
    AGGREGATES,
    Aggregate,
    Aggregation,
    HostSeen,
    MetricInfo,
    Partial,
    Query,
    Series,
    Tags,
    combine,
    known_metrics,
    query_family,
)
from monitor.errors import QueryFailed, StoreUnavailable

_HOSTS = """
WITH RECURSIVE h(host) AS (
    SELECT (SELECT min(host) FROM points WHERE metric = :metric)
    UNION ALL
    SELECT (SELECT min(host) FROM points WHERE metric = :metric AND host > h.host)
    FROM h WHERE h.host IS NOT NULL
)
SELECT host FROM h WHERE host IS NOT NULL
"""
_TAG_SETS = """
WITH RECURSIVE t(tags) AS (
    SELECT (SELECT min(tags) FROM points WHERE metric = :metric AND host = :host)
    UNION ALL
    SELECT (SELECT min(tags) FROM points WHERE metric = :metric AND host = :host AND tags > t.tags)
    FROM t WHERE t.tags IS NOT NULL
)
SELECT tags FROM t WHERE tags IS NOT NULL
"""
_METRICS = """
WITH RECURSIVE m(metric) AS (
    SELECT (SELECT min(metric) FROM points)
    UNION ALL
    SELECT (SELECT min(metric) FROM points WHERE metric > m.metric) FROM m WHERE m.metric IS NOT NULL
)
SELECT metric FROM m WHERE metric IS NOT NULL
"""
_NEWEST_SQL = "SELECT max(ts_ms) FROM points WHERE metric = :metric AND host = :host AND tags = :tags"
# Every range below is one seek of the primary key (metric, host, tags, ts_ms).
_WHERE = (
    " FROM points WHERE metric = :metric AND host = :host AND tags = :tags"
    " AND ts_ms >= :start AND ts_ms < :end"
)
# Rows and buckets carry finite values only (a REAL column can hold ±Inf, never NaN).
_FINITE = " AND value > -9e999 AND value < 9e999"
_AGGREGATE_SQL = {
    "mean": "SELECT sum(value), count(*)" + _WHERE,
    "min": "SELECT min(value), count(*)" + _WHERE,
    "max": "SELECT max(value), count(*)" + _WHERE,
    "count": "SELECT count(*), count(*)" + _WHERE,
}
_LAST_SQL = "SELECT ts_ms, value" + _WHERE + " ORDER BY ts_ms DESC LIMIT 1"
_COUNT_SQL = "SELECT count(*)" + _WHERE
_RAW_SQL = "SELECT ts_ms, value" + _WHERE + _FINITE
# floor(ts_ms / step) * step, also for negative ts_ms: epoch-aligned like InfluxQL's GROUP BY time().
_BUCKET_SQL = (
    "SELECT ts_ms - ((ts_ms % :step) + :step) % :step AS bucket, avg(value)"
    + _WHERE
    + _FINITE
    + " GROUP BY bucket"
)
_EMPTY_MARKERS = ("no such table",)
_OLD_SCHEMA_MARKERS = ("no such column: tags",)
SeriesKey = tuple[str, Tags]


class SQLiteStore:
    """Store over the SQLite sink's file."""

    kind = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        timeout_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._monotonic = monotonic

    @property
    def name(self) -> str:
        return f"sqlite:{self.path}"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection with a deadline, or None when there is no file yet."""
        if not self.path.exists():
            yield None
            return
        try:
            conn = sqlitedb.connect_readonly(self.path, timeout_s=self.timeout_s)
        except sqlite3.Error as exc:
            raise StoreUnavailable(self.name, f"cannot open: {exc}") from exc
        deadline = self._monotonic() + self.timeout_s
        conn.set_progress_handler(lambda: int(self._monotonic() > deadline), 10_000)
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            raise self._translate(exc) from exc
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(self.name, str(exc)) from exc
        finally:
            conn.close()

    def _translate(self, exc: sqlite3.OperationalError) -> Exception:
        text = str(exc)
        if "interrupted" in text:
            return StoreUnavailable(self.name, f"query took longer than {self.timeout_s:g} s")
        if "locked" in text or "unable to open" in text or "disk I/O" in text:
            return StoreUnavailable(self.name, text)
        if any(marker in text for marker in _OLD_SCHEMA_MARKERS):
            return StoreUnavailable(
                self.name,
                "written by an older version (no tags column); the sink migrates it on its next write",
            )
        return QueryFailed(self.name, text)

    @staticmethod
    def _fetch(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[Any]:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if any(marker in str(exc) for marker in _EMPTY_MARKERS):
                return []  # the sink has not created its table yet: an empty store
            raise

    def _family(self, metrics: Sequence[str]) -> catalog.Family:
        """The one family of METRICS (allow-listed); a mix is refused before any query."""
        return query_family(self.name, metrics)

    def _tag_filter(self, family: catalog.Family, tags: Tags) -> str | None:
        """The stored tag text TAGS select (a family has one key: a filter names the whole set),
        None when TAGS is empty (every tag set)."""
        key = catalog.TAG_KEY[family]
        for tag, _ in tags:
            if tag != key:
                raise QueryFailed(self.name, f"not a tag of the {family} family: {tag!r}")
        if key is None:
            return ""
        return metricsdb.encode_tags(tags) if tags else None

    def _series(
        self, conn: sqlite3.Connection, metric: str, host: str | None, tags: str | None
    ) -> list[tuple[str, str]]:
        """(host, stored tag text) of every series of METRIC matching HOST and TAGS."""
        hosts = (
            [host] if host is not None else [row[0] for row in self._fetch(conn, _HOSTS, {"metric": metric})]
        )
        if tags is not None:
            return [(h, tags) for h in hosts]
        return [
            (h, row[0]) for h in hosts for row in self._fetch(conn, _TAG_SETS, {"metric": metric, "host": h})
        ]

    def _ranges(
        self, conn: sqlite3.Connection, query: Query
    ) -> Iterator[tuple[int, SeriesKey, dict[str, Any]]]:
        """(metric index, (host, tags), bound parameters) for every series range to read."""
        tags = self._tag_filter(self._family(query.metrics), query.tags)
        decoded: dict[str, Tags] = {}
        for i, metric in enumerate(query.metrics):
            for host, text in self._series(conn, metric, query.host, tags):
                key = (host, decoded.setdefault(text, metricsdb.decode_tags(text)))
                params = {
                    "metric": metric,
                    "host": host,
                    "tags": text,
                    "start": query.start_ms,
                    "end": query.end_ms,
                }
                yield i, key, params

    def ping(self) -> str:
        with self._connect() as conn:
            if conn is None:
                return f"{self.name} (no file yet: nothing written so far)"
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'points'").fetchone()[0]
        return self.name if tables else f"{self.name} (no points table yet)"

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own connection."""

    def names(self) -> list[str]:
        with self._connect() as conn:
            if conn is None:
                return []
            return known_metrics([row[0] for row in self._fetch(conn, _METRICS, {})])

    def describe(self) -> list[MetricInfo]:
        out: list[MetricInfo] = []
        with self._connect() as conn:
            if conn is None:
                return out
            for metric in known_metrics([row[0] for row in self._fetch(conn, _METRICS, {})]):
                family = catalog.family_of(metric) or "host"
                key = catalog.TAG_KEY[family]
                if key is None:
                    out.append(MetricInfo(metric, family))
                    continue
                values = {
                    value
                    for _, text in self._series(conn, metric, None, None)
                    for k, value in metricsdb.decode_tags(text)
                    if k == key
                }
                out.append(MetricInfo(metric, family, {key: sorted(values)}))
        return out

    def hosts(self) -> list[HostSeen]:
        newest: dict[str, int] = {}
        with self._connect() as conn:
            if conn is None:
                return []
            for metric in [row[0] for row in self._fetch(conn, _METRICS, {})]:
                for host, text in self._series(conn, metric, None, None):
                    params = {"metric": metric, "host": host, "tags": text}
                    ts_ms = self._fetch(conn, _NEWEST_SQL, params)[0][0]
                    if ts_ms is not None:
                        newest[host] = max(newest.get(host, ts_ms), int(ts_ms))
        return [HostSeen(host, ts_ms) for host, ts_ms in sorted(newest.items())]

    def counts(self, query: Query) -> dict[SeriesKey, int]:
        out: dict[SeriesKey, int] = {}
        with self._connect() as conn:
            if conn is None:
                return out
            for _, key, params in self._ranges(conn, query):
                n = int(self._fetch(conn, _COUNT_SQL, params)[0][0])
                if n:
                    out[key] = max(out.get(key, 0), n)
        return out

    def rows(self, query: Query, step_ms: int | None = None) -> list[Series]:
        width = len(query.metrics)
        columns: dict[SeriesKey, list[list[tuple[int, float]]]] = {}
        sql = _RAW_SQL if step_ms is None else _BUCKET_SQL
        with self._connect() as conn:
            if conn is None:
                return []
            for i, key, params in self._ranges(conn, query):
                fetched = self._fetch(conn, sql, {**params, "step": step_ms} if step_ms else params)
                if fetched:
                    columns.setdefault(key, [[] for _ in range(width)])[i] = fetched
        return [Series(host, _pivot(cols), tags) for (host, tags), cols in sorted(columns.items())]

    def aggregate(
        self,
        metric: str,
        fn: Aggregation,
        start_ms: int,
        end_ms: int,
        host: str | None,
        *,
        tags: Tags = (),
    ) -> Aggregate:
        if not catalog.is_metric(metric):
            raise QueryFailed(self.name, f"not an allow-listed metric: {metric!r}")
        if fn not in AGGREGATES:
            raise QueryFailed(self.name, f"not an aggregate: {fn!r}")
        query = Query((metric,), start_ms, end_ms, host, tags)
        partials: list[Partial] = []
        with self._connect() as conn:
            if conn is None:
                return combine(fn, [])
            for _, (name, series_tags), params in self._ranges(conn, query):
                if fn == "last":
                    for ts_ms, value in self._fetch(conn, _LAST_SQL, params):
                        n = int(self._fetch(conn, _COUNT_SQL, params)[0][0])
                        partials.append(Partial(name, n, float(value), int(ts_ms), series_tags))
                else:
                    for value, n in self._fetch(conn, _AGGREGATE_SQL[fn], params):
                        v = None if value is None else float(value)
                        partials.append(Partial(name, int(n), v, tags=series_tags))
        return combine(fn, partials)


def _pivot(columns: list[list[tuple[int, float]]]) -> list[tuple[int, list[float | None]]]:
    """One host's per-metric (ts, value) lists, each in time order, as rows in time order.

    Fast path: every metric present has the same timestamps (all fields of a sample share
    one), so the rows are a transposition; otherwise a merge by timestamp, None in the gaps.
    """
    split = [tuple(zip(*c, strict=True)) if c else None for c in columns]
    present = [t for t in split if t is not None]
    stamps = present[0][0]
    if all(t[0] == stamps for t in present[1:]):
        none = (None,) * len(stamps)
        values = [none if t is None else t[1] for t in split]
        return [(ts, list(vs)) for ts, *vs in zip(stamps, *values, strict=True)]
    table: dict[int, list[float | None]] = {}
    for i, column in enumerate(columns):
        for ts, v in column:
            row = table.get(ts)
            if row is None:
                row = table[ts] = [None] * len(columns)
            row[i] = v
    return sorted(table.items())
