"""The InfluxDB store: InfluxQL over ``/query`` (never Flux), with the standard library's HTTP.

The same requests work on InfluxDB 1.x (``db``/``rp``), on 2.x through the v1-compatibility
API (``db`` = bucket, every bucket has a virtual DBRP mapping) and on 3.x; the
``Authorization`` header follows :func:`monitor.influxhttp.authorization` (a token wins over
username/password), the same rule as the agent's writes. Nothing from the request is pasted into a query
unquoted: metric names are allow-listed *and* double-quoted, the host and tag values are
single-quoted, escaped string literals, tag keys come from :data:`monitor.catalog.TAG_KEY` only
(and are double-quoted), and times are integers with an ``ms`` suffix.

A metric's family says its measurement (:func:`monitor.catalog.measurement_of`: ``system``,
``system_filesystem``...); a tagged family's queries group by host *and* its tag key, so each
mount, device or interface is a series of its own.

The HTTP side (kept-alive connections, one deadline per query, InfluxDB's answers and errors)
is :class:`monitor.api.stores.influxql_http.QueryClient`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor import catalog
from monitor.api.stores import (
    AGGREGATES,
    Aggregate,
    Aggregation,
    Counts,
    HostSeen,
    MetricInfo,
    Partial,
    Query,
    Row,
    Series,
    Tags,
    combine,
    known_metrics,
    query_family,
)
from monitor.api.stores.influxql_http import QueryClient
from monitor.errors import QueryFailed
from monitor.influxhttp import (
    Endpoint,
    authorization,
    tls_context,
)

if TYPE_CHECKING:
    from monitor.config import Config

# A window longer than MAX_POINTS samples at this interval (the densest sampling expected) is
# first probed: each series' first _PROBE_ROWS rows of the first metric say its rate, hence its
# rows in the window (one field: InfluxDB 1.6 reads a raw SELECT's fields far past a LIMIT).
_DENSEST_INTERVAL_MS = 1000
_PROBE_ROWS = 16


def ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted and escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """An InfluxQL string literal, single-quoted and escaped."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return "'" + escaped + "'"


class InfluxQLStore:
    """Store over InfluxDB's ``/query`` endpoint (1.x, 2.x v1-compat, 3.x)."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        kind: str = "influxdb_v1",
        measurement: str = "system",
        retention_policy: str = "",
        username: str = "",
        password: str = "",
        token: str = "",
        timeout_s: float = 10.0,
        verify_tls: bool = True,
        ca_file: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self._endpoint = Endpoint.parse(url)
        self.database = database
        self.measurement = measurement
        self.retention_policy = retention_policy
        self.timeout_s = timeout_s
        params = {"db": database, "epoch": "ms", **({"rp": retention_policy} if retention_policy else {})}
        tls = tls_context(verify_tls, ca_file) if self._endpoint.https else None
        self._client = QueryClient(
            self.name,
            self._endpoint,
            params,
            authorization(token, username, password),
            timeout_s=timeout_s,
            tls=tls,
            monotonic=monotonic,
        )

    @classmethod
    def from_config(cls, config: Config) -> InfluxQLStore:
        """Read what the configured InfluxDB sink writes, with the API's read credentials.

        On ``influxdb_v2`` (database = bucket) a token only: ``api.store_token``, else the
        sink's. Otherwise the API's own credentials (``api.store_token`` or
        ``api.store_username``) when it has any, else the sink's; of those,
        :func:`monitor.influxhttp.authorization` picks.
        """
        sink, api = config.sink, config.api
        if sink.kind == "influxdb_v2":
            token, username, password = api.store_token or sink.token, "", ""
            database, rp = sink.bucket, ""
        else:
            if api.store_token or api.store_username:
                token, username, password = api.store_token, api.store_username, api.store_password
            else:
                token, username, password = sink.token, sink.username, sink.password
            database, rp = sink.database, sink.retention_policy
        return cls(
            sink.url,
            database,
            kind=sink.kind,
            measurement=sink.measurement,
            retention_policy=rp,
            username=username,
            password=password,
            token=token,
            timeout_s=api.query_timeout_s,
            verify_tls=sink.verify_tls,
            ca_file=sink.ca_file,
        )

    @property
    def name(self) -> str:
        return f"{self.kind} {self._endpoint.display} db={self.database}"

    # -- queries ---------------------------------------------------------------------------

    def _field(self, metric: str) -> str:
        """A metric as a quoted identifier, refusing anything outside the allow-list."""
        if not catalog.is_metric(metric):
            raise QueryFailed(self.name, f"not an allow-listed metric: {metric!r}")
        return ident(metric)

    def _family(self, metrics: Sequence[str]) -> catalog.Family:
        """The one family of METRICS (allow-listed); a mix is refused before any query."""
        return query_family(self.name, metrics)

    def _source(self, family: catalog.Family = "host") -> str:
        measurement = ident(catalog.measurement_of(family, self.measurement))
        if self.retention_policy:
            return f"{ident(self.retention_policy)}.{measurement}"
        return measurement

    def _where(
        self, family: catalog.Family, start_ms: int, end_ms: int, host: str | None, tags: Tags = ()
    ) -> str:
        clause = f"time >= {int(start_ms)}ms AND time < {int(end_ms)}ms"
        if host is not None:
            clause += f" AND {ident('host')} = {literal(host)}"
        key = catalog.TAG_KEY[family]
        for tag, value in tags:
            if tag != key:
                raise QueryFailed(self.name, f"not a tag of the {family} family: {tag!r}")
            clause += f" AND {ident(key)} = {literal(value)}"
        return clause

    @staticmethod
    def _group(family: catalog.Family) -> str:
        key = catalog.TAG_KEY[family]
        return ident("host") if key is None else f"{ident('host')}, {ident(key)}"

    def _sources(self, families: Sequence[catalog.Family]) -> tuple[str, dict[str, catalog.Family]]:
        """FAMILIES' measurements as one FROM list, and the family of each measurement name."""
        names = {catalog.measurement_of(f, self.measurement): f for f in families}
        return ", ".join(self._source(f) for f in families), names

    def _field_keys(self) -> dict[catalog.Family, list[str]]:
        """The allow-listed field keys of every family's measurement that has any (one query)."""
        sources, family_of = self._sources(catalog.FAMILIES)
        out: dict[catalog.Family, list[str]] = {}
        for series in self._client.query(f"SHOW FIELD KEYS FROM {sources}"):
            family = family_of.get(str(series.get("name", "")))
            keys = [str(row[0]) for row in series.get("values") or []]
            known = [k for k in known_metrics(keys) if catalog.family_of(k) == family]
            if family is not None and known:
                out[family] = known
        return out

    def names(self) -> list[str]:
        return known_metrics([k for keys in self._field_keys().values() for k in keys])

    def describe(self) -> list[MetricInfo]:
        fields = self._field_keys()
        tagged = [f for f in fields if catalog.TAG_KEY[f] is not None]
        values: dict[catalog.Family, set[str]] = {f: set() for f in tagged}
        if tagged:
            sources, family_of = self._sources(tagged)
            keys = ", ".join(ident(str(catalog.TAG_KEY[f])) for f in tagged)
            for series in self._client.query(f"SHOW TAG VALUES FROM {sources} WITH KEY IN ({keys})"):
                family = family_of.get(str(series.get("name", "")))
                for key, value in series.get("values") or []:
                    if family is not None and key == catalog.TAG_KEY[family]:
                        values[family].add(str(value))
        out = [
            MetricInfo(
                name,
                family,
                {str(catalog.TAG_KEY[family]): sorted(values[family])} if family in values else {},
            )
            for family, names in fields.items()
            for name in names
        ]
        return sorted(out, key=lambda m: catalog.metric_order(m.name))

    def hosts(self) -> list[HostSeen]:
        newest: dict[str, int] = {}
        for family, keys in self._field_keys().items():
            selects = ", ".join(f"last({ident(k)}) AS {ident(k)}" for k in keys[:1])
            q = f"SELECT {selects} FROM {self._source(family)} GROUP BY {ident('host')}"  # noqa: S608
            for (host, _), row in _first_rows(self._client.query(q)).items():
                if row.get("time") is not None:
                    newest[host] = max(newest.get(host, int(row["time"])), int(row["time"]))
        return [HostSeen(h, ts) for h, ts in sorted(newest.items())]

    def _tail(self, query: Query, step_ms: int | None = None) -> tuple[catalog.Family, str]:
        """(family, ``FROM ... WHERE ... GROUP BY <series>``) of QUERY; by ``time(STEP_MS)``
        first, empty buckets left out, when STEP_MS is given."""
        family = self._family(query.metrics)
        where = self._where(family, query.start_ms, query.end_ms, query.host, query.tags)
        group = self._group(family)
        if step_ms is not None:
            group = f"time({int(step_ms)}ms), {group} fill(none)"
        return family, f"FROM {self._source(family)} WHERE {where} GROUP BY {group}"

    def _count_statements(self, query: Query) -> list[str]:
        """The metrics counted in two halves at once (InfluxDB reads each field apart, one core
        per query)."""
        _, tail = self._tail(query)
        half = -(-len(query.metrics) // 2)
        parts = [query.metrics[:half], query.metrics[half:]] if len(query.metrics) > 1 else [query.metrics]
        return [
            "SELECT " + ", ".join(f"count({self._field(m)}) AS {ident(m)}" for m in part) + f" {tail}"
            for part in parts
        ]

    def _rows_statement(self, query: Query, step_ms: int | None) -> str:
        _, tail = self._tail(query, step_ms)
        if step_ms is None:
            selects = ", ".join(self._field(m) for m in query.metrics)
        else:
            selects = ", ".join(f"mean({self._field(m)}) AS {ident(m)}" for m in query.metrics)
        return f"SELECT {selects} {tail}"

    def counts(self, query: Query) -> dict[tuple[str, Tags], int]:
        """Each series' most frequent metric's count."""
        return _counts(self._client.queries(*self._count_statements(query)), self._family(query.metrics))

    def estimate(self, query: Query, max_points: int) -> Counts | None:
        """Each series' rows in the window, extrapolated from its first rows of the first metric
        (one small query); None for a window too short to hold more than MAX_POINTS rows per
        series at the densest rate expected (nothing asked)."""
        if query.end_ms - query.start_ms <= max_points * _DENSEST_INTERVAL_MS:
            return None
        family, tail = self._tail(query)
        out: Counts = {}
        for raw in self._client.query(f"SELECT {self._field(query.metrics[0])} {tail} LIMIT {_PROBE_ROWS}"):
            stamps = [int(v[0]) for v in raw.get("values") or []]
            if len(stamps) < _PROBE_ROWS:
                expected = len(stamps)
            else:
                span_ms = max(stamps[-1] - stamps[0], 1)
                expected = math.ceil((query.end_ms - stamps[0]) * (len(stamps) - 1) / span_ms)
            if expected:
                out[_series_key(raw, family)] = expected
        return out

    def raw_window(self, query: Query, max_points: int) -> tuple[Counts, list[Series]] | None:
        """One ``SELECT <fields> ... LIMIT max_points+1`` (per series); a series' count is its
        most frequent metric's non-null values, exactly what ``count()`` gives. None when a
        series holds more than MAX_POINTS rows."""
        family, tail = self._tail(query)
        selects = ", ".join(self._field(m) for m in query.metrics)
        counts: Counts = {}
        out = []
        for raw in self._client.query(f"SELECT {selects} {tail} LIMIT {int(max_points) + 1}"):
            if len(raw.get("values") or []) > max_points:
                return None
            series, nulls = _series_nulls(raw, query.metrics, family)
            if series.rows:
                most = _most_values(series.rows) if nulls else len(series.rows)
                counts[(series.host, series.tags)] = most
                out.append(series)
        return counts, sorted(out, key=lambda s: (s.host, s.tags))

    def rows(self, query: Query, step_ms: int | None = None) -> list[Series]:
        answer = self._client.query(self._rows_statement(query, step_ms))
        return _rows(answer, query.metrics, self._family(query.metrics))

    def rows_while_counting(self, query: Query, step_ms: int) -> tuple[Counts, list[Series]]:
        """(``counts(query)``, ``rows(query, step_ms)``), every statement asked at once."""
        family = self._family(query.metrics)
        rows, *counted = self._client.queries(
            self._rows_statement(query, step_ms), *self._count_statements(query)
        )
        return _counts(counted, family), _rows(rows, query.metrics, family)

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
        if fn not in AGGREGATES:
            raise QueryFailed(self.name, f"not an aggregate: {fn!r}")
        f = self._field(metric)
        _, tail = self._tail(Query((metric,), start_ms, end_ms, host, tags))
        call = {"mean": f"sum({f})", "count": f"count({f})"}.get(fn, f"{fn}({f})")
        value = f"{call} AS {ident('value')}"
        count = f"count({f}) AS {ident('samples')}"
        if fn == "count":
            rows = _first_rows(self._client.query(f"SELECT {value} {tail}"))
            partials = [
                Partial(h, int(r["value"] or 0), _number(r["value"]), tags=t) for (h, t), r in rows.items()
            ]
            return combine(fn, partials)
        # InfluxDB reads a field once per call: the value and the count are asked at once
        values, counts = map(
            _first_rows, self._client.queries(f"SELECT {value} {tail}", f"SELECT {count} {tail}")
        )
        partials = [
            Partial(
                h, int(counts.get((h, t), {}).get("samples") or 0), _number(r["value"]), int(r["time"]), t
            )
            for (h, t), r in values.items()
        ]
        return combine(fn, partials)  # a lone selector (last) gives its sample's time

    def ping(self) -> str:
        _, missing = self._client.statement(f"SHOW FIELD KEYS FROM {self._source()}")
        version = f" (InfluxDB {self._client.version})" if self._client.version else ""
        note = f" (database {self.database!r} not found: nothing written so far)" if missing else ""
        return f"{self.name}{version}{note}"

    def close(self) -> None:
        """Stop the helper threads, close the kept-alive connections."""
        self._client.close()


def _counts(answers: Sequence[list[dict[str, Any]]], family: catalog.Family) -> Counts:
    """Each series' most frequent metric's count from the answers of the count statements."""
    out: Counts = {}
    for answer in answers:
        for series in answer:
            key = _series_key(series, family)
            n = max((int(v or 0) for row in series.get("values") or [] for v in row[1:]), default=0)
            if n:
                out[key] = max(out.get(key, 0), n)
    return out


def _rows(answer: list[dict[str, Any]], metrics: Sequence[str], family: catalog.Family) -> list[Series]:
    """The answered series that have rows, in (host, tags) order."""
    out = [_series(s, metrics, family) for s in answer]
    return sorted((s for s in out if s.rows), key=lambda s: (s.host, s.tags))


def _series_key(raw: dict[str, Any], family: catalog.Family | None = None) -> tuple[str, Tags]:
    """(host, tags) of one answered series; the tag key is the family's (or any catalog key)."""
    tags = raw.get("tags") or {}
    keys = [catalog.TAG_KEY[family]] if family is not None else list(catalog.TAG_KEY.values())
    pairs = tuple(sorted((k, str(tags[k])) for k in keys if k is not None and k in tags))
    return str(tags.get("host", "")), pairs


def _series(raw: dict[str, Any], metrics: Sequence[str], family: catalog.Family = "host") -> Series:
    """One answered series as a Series: its values in METRICS' order, as floats (InfluxDB
    writes a whole float as an integer), and without the rows that have none."""
    return _series_nulls(raw, metrics, family)[0]


def _series_nulls(
    raw: dict[str, Any], metrics: Sequence[str], family: catalog.Family = "host"
) -> tuple[Series, int]:
    """(:func:`_series`, how many of its values are None)."""
    columns = list(raw.get("columns") or [])
    values = raw.get("values") or []
    width = len(metrics)
    if columns[1:] != list(metrics):  # not the SELECT's own order: into it
        index = [columns.index(m) if m in columns else None for m in metrics]
        values = [[v[0], *(None if i is None else v[i] for i in index)] for v in values]
    rows: list[tuple[int, list[float | None]]] = []
    append = rows.append
    nulls = 0
    for v in values:
        row = v[1:]
        if int in map(type, row):
            row = [float(x) if type(x) is int else x for x in row]
        n = row.count(None)
        if n < width:
            append((int(v[0]), row))
            nulls += n
    host, tags = _series_key(raw, family)
    return Series(host, rows, tags), nulls


def _most_values(rows: Sequence[Row]) -> int:
    """The non-null values of the metric that has the most in ROWS."""
    columns = list(zip(*(row for _, row in rows), strict=True))
    return max(len(c) - c.count(None) for c in columns)


def _first_rows(answer: list[dict[str, Any]]) -> dict[tuple[str, Tags], dict[str, Any]]:
    """The first row of each series of ANSWER (a statement grouped by host and tag key), by
    column name."""
    return {
        _series_key(series): dict(zip(series.get("columns") or [], series["values"][0], strict=False))
        for series in answer
        if series.get("values")
    }


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
