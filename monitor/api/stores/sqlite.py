"""The embedded store: reads the SQLite file the SQLite sink writes (schema: monitor/metricsdb.py).

The file is opened read-only, one connection and one read transaction per call (cheap,
safe across waitress's threads, and one snapshot: a window the sink seals meanwhile, its
samples moving from ``recent`` to ``chunks``, is seen once). A file that does not exist
yet, or has no tables yet, is an empty store, not an error; one written by an older version
and not yet migrated by the sink is unavailable, saying so. Every query runs under a
deadline (a progress handler), so a huge scan becomes a ``StoreUnavailable`` after
``timeout_s`` instead of holding a thread.

Series are found in the small ``series`` table (its unique key (metric, host, tags) serves
every lookup; ``/hosts`` reads it alone); each series' window is then read from the tiers
(monitor/api/stores/sqlite_tiers.py): raw rows from the packed chunks, buckets and
aggregates from the coarsest rollup tier that fits, raw samples only at the ragged edges.
A tag filter on the family's key names the whole tag set (every family has one tag key), so
it is bound as ``tags = ?`` directly.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import truediv
from pathlib import Path
from typing import Any

from monitor import catalog, metricsdb, sqlitedb
from monitor.api.stores import (
    AGGREGATES,
    Aggregate,
    Aggregation,
    Column,
    ColumnRows,
    HostSeen,
    MetricInfo,
    Newest,
    Partial,
    Query,
    Segment,
    Series,
    Tags,
    combine,
    known_metrics,
    pivot,
    query_family,
    sqlite_tiers,
)
from monitor.api.stores.sqlite_tiers import SeriesRow, WholeChunk
from monitor.errors import QueryFailed, StoreUnavailable

_SERIES_SQL = "SELECT id, host, tags, sealed_ms FROM series WHERE metric = :metric"
# A loose index scan: one seek per distinct metric (the unique key leads with it), not a pass
# over every series (36 000 for 1 000 hosts).
_METRICS = (
    "WITH RECURSIVE m(name) AS (SELECT min(metric) FROM series UNION ALL"
    " SELECT (SELECT min(metric) FROM series WHERE metric > m.name) FROM m WHERE m.name IS NOT NULL)"
    " SELECT name FROM m WHERE name IS NOT NULL"
)
_HOSTS = "SELECT name, last_ms FROM hosts ORDER BY name"
_NEWEST = (  # from the series_newest index alone, in its order
    "SELECT host, tags, last_ms, last FROM series WHERE metric = ? AND last IS NOT NULL ORDER BY host, tags"
)
_RAW_START = "SELECT min(start_ms) FROM chunks WHERE series = ?"
_EMPTY_MARKERS = ("no such table", "no such column")
SeriesKey = tuple[str, Tags]
"""One metric's (timestamps, values) of one series."""


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
            conn.execute("BEGIN")  # one snapshot for the whole call: a seal moves rows between tables
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
        return QueryFailed(self.name, text)

    def _fetch(self, conn: sqlite3.Connection, sql: str, params: dict[str, Any] | list[Any]) -> list[Any]:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not any(marker in str(exc) for marker in _EMPTY_MARKERS):
                raise
            old = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'points'").fetchone()[0]
            if old:
                raise StoreUnavailable(
                    self.name,
                    "written by an older version (schema before tiers); the sink migrates it on its"
                    " next write",
                ) from exc
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version:  # a table or column of a later version is missing
                raise StoreUnavailable(
                    self.name,
                    f"written by an older version (schema {version}, this code reads"
                    f" {metricsdb.SCHEMA_VERSION}); the sink migrates it on its next write",
                ) from exc
            return []  # the sink has not created its tables yet (one transaction): an empty store

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
    ) -> list[SeriesRow]:
        """Every series of METRIC matching HOST and TAGS (None: any), by (host, tags)."""
        sql, params = _SERIES_SQL, {"metric": metric, "host": host, "tags": tags}
        if host is not None:
            sql += " AND host = :host"
        if tags is not None:
            sql += " AND tags = :tags"
        rows = self._fetch(conn, sql + " ORDER BY host, tags", params)
        return [SeriesRow(int(sid), h, t, int(sealed)) for sid, h, t, sealed in rows]

    def _ranges(self, conn: sqlite3.Connection, query: Query) -> Iterator[tuple[int, SeriesKey, SeriesRow]]:
        """(metric index, (host, tags), series) for every series the query reads."""
        tags = self._tag_filter(self._family(query.metrics), query.tags)
        decoded: dict[str, Tags] = {}
        for i, metric in enumerate(query.metrics):
            for series in self._series(conn, metric, query.host, tags):
                key = (series.host, decoded.setdefault(series.tags, metricsdb.decode_tags(series.tags)))
                yield i, key, series

    def ping(self) -> str:
        with self._connect() as conn:
            if conn is None:
                return f"{self.name} (no file yet: nothing written so far)"
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'series'").fetchone()[0]
        return self.name if tables else f"{self.name} (no tables yet: nothing written so far)"

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
                    for series in self._series(conn, metric, None, None)
                    for k, value in metricsdb.decode_tags(series.tags)
                    if k == key
                }
                out.append(MetricInfo(metric, family, {key: sorted(values)}))
        return out

    def hosts(self) -> list[HostSeen]:
        with self._connect() as conn:
            if conn is None:
                return []
            return [HostSeen(host, ts_ms) for host, ts_ms in self._fetch(conn, _HOSTS, {})]

    def newest(self, metrics: Sequence[str]) -> list[Newest]:
        """Each series' newest sample, as the sink keeps it in ``series`` (read from the
        ``series_newest`` index alone)."""
        for metric in metrics:
            if not catalog.is_metric(metric):
                raise QueryFailed(self.name, f"not an allow-listed metric: {metric!r}")
        out: list[Newest] = []
        if not metrics:
            return out
        with self._connect() as conn:
            if conn is None:
                return out
            decoded: dict[str, Tags] = {"": ()}
            for metric in sorted(set(metrics)):  # a query per metric: 4 000 rows need no metric text
                for host, text, ts_ms, value in self._fetch(conn, _NEWEST, [metric]):
                    tags = decoded.get(text)
                    if tags is None:
                        tags = decoded[text] = metricsdb.decode_tags(text)
                    out.append(Newest(metric, host, tags, ts_ms, value))
        return out

    def counts(self, query: Query) -> dict[SeriesKey, int]:
        """Samples per series: raw ones, and before a series' oldest raw chunk the count its
        rollups keep of what raw retention has deleted."""
        out: dict[SeriesKey, int] = {}
        with self._connect() as conn:
            if conn is None:
                return out
            for _, key, series in self._ranges(conn, query):
                raw_start_ms = conn.execute(_RAW_START, (series.sid,)).fetchone()[0]
                raw_start_ms = series.sealed_ms if raw_start_ms is None else int(raw_start_ms)
                split_ms = min(max(query.start_ms, raw_start_ms), query.end_ms)
                n = sqlite_tiers.raw_count(conn, series.sid, split_ms, query.end_ms)
                n += sum(
                    s[0] for s in sqlite_tiers.summaries(conn, "count", series, query.start_ms, split_ms)
                )
                if n:
                    out[key] = max(out.get(key, 0), n)
        return out

    def rows(self, query: Query, step_ms: int | None = None) -> list[Series]:
        width = len(query.metrics)
        columns: dict[SeriesKey, list[Column | None]] = {}
        whole: dict[SeriesKey, list[list[WholeChunk] | None]] = {}
        with self._connect() as conn:
            if conn is None:
                return []
            for i, key, series in self._ranges(conn, query):
                stamps: Sequence[int]
                values: Sequence[float]
                if step_ms is None:
                    chunks: list[WholeChunk] = []
                    stamps, values = sqlite_tiers.raw(
                        conn, series.sid, query.start_ms, query.end_ms, whole=chunks
                    )
                    if stamps:
                        whole.setdefault(key, [None] * width)[i] = chunks
                else:
                    days: list[WholeChunk] = []
                    stamps, counts, sums = sqlite_tiers.step_buckets(
                        conn, series, query.start_ms, query.end_ms, step_ms, whole=days
                    )
                    values = list(map(truediv, sums, counts))
                    if stamps:
                        whole.setdefault(key, [None] * width)[i] = days
                if stamps:
                    columns.setdefault(key, [None] * width)[i] = (stamps, values)
        out = []
        for (host, tags), cols in sorted(columns.items()):
            rows = pivot(cols)
            if isinstance(rows, ColumnRows) and (host, tags) in whole:
                rows.segments = _segments(whole[(host, tags)])
            out.append(Series(host, rows, tags))
        return out

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
            for _, (name, series_tags), series in self._ranges(conn, query):
                for n, value, ts_ms in sqlite_tiers.summaries(conn, fn, series, start_ms, end_ms):
                    partials.append(Partial(name, n, value, ts_ms, series_tags))
        return combine(fn, partials)


def _segments(per_metric: list[list[WholeChunk] | None]) -> list[Segment]:
    """The runs of rows that come from chunks every metric's column holds whole, at the same
    places (samples that share timestamps), keyed by those chunks' bytes in metric order."""
    present = [chunks for chunks in per_metric if chunks is not None]
    places = [(start, n) for _, start, n in present[0]]
    if any([(start, n) for _, start, n in chunks] != places for chunks in present[1:]):
        return []
    blobs = [[None] * len(places) if c is None else [blob for blob, _, _ in c] for c in per_metric]
    return [
        (tuple(b), start, start + n) for b, (start, n) in zip(zip(*blobs, strict=True), places, strict=True)
    ]
