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
    Column,
    ColumnRows,
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
    pivot,
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
        """Each metric's count, one statement per half of the metrics (:func:`_halves`)."""
        _, tail = self._tail(query)
        return [
            "SELECT " + ", ".join(f"count({self._field(m)}) AS {ident(m)}" for m in part) + f" {tail}"
            for part in _halves(query.metrics)
        ]

    def _rows_statements(self, query: Query, step_ms: int | None, limit: int | None = None) -> list[str]:
        """The rows of QUERY, raw or each metric's mean per STEP_MS bucket, one statement per
        half of the metrics (:func:`_halves`); at most LIMIT rows per series when given."""
        _, tail = self._tail(query, step_ms)
        suffix = "" if limit is None else f" LIMIT {int(limit)}"
        out = []
        for part in _halves(query.metrics):
            if step_ms is None:
                selects = ", ".join(self._field(m) for m in part)
            else:
                selects = ", ".join(f"mean({self._field(m)}) AS {ident(m)}" for m in part)
            out.append(f"SELECT {selects} {tail}{suffix}")
        return out

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
        """The raw rows, ``LIMIT max_points+1`` per series; a series' count is its most
        frequent metric's non-null values, exactly what ``count()`` gives. None when a series
        holds more than MAX_POINTS rows."""
        answers = self._client.queries(*self._rows_statements(query, None, max_points + 1))
        if any(len(raw.get("values") or []) > max_points for answer in answers for raw in answer):
            return None
        out = _merged(answers, query.metrics, self._family(query.metrics))
        return {(s.host, s.tags): _most_values(s.rows) for s in out}, out

    def rows(self, query: Query, step_ms: int | None = None) -> list[Series]:
        answers = self._client.queries(*self._rows_statements(query, step_ms))
        return _merged(answers, query.metrics, self._family(query.metrics))

    def rows_while_counting(self, query: Query, step_ms: int) -> tuple[Counts, list[Series]]:
        """(``counts(query)``, ``rows(query, step_ms)``), every statement asked at once."""
        family = self._family(query.metrics)
        statements = self._rows_statements(query, step_ms)
        answers = self._client.queries(*statements, *self._count_statements(query))
        rows, counted = answers[: len(statements)], answers[len(statements) :]
        return _counts(counted, family), _merged(rows, query.metrics, family)

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


def _series_key(raw: dict[str, Any], family: catalog.Family | None = None) -> tuple[str, Tags]:
    """(host, tags) of one answered series; the tag key is the family's (or any catalog key)."""
    tags = raw.get("tags") or {}
    keys = [catalog.TAG_KEY[family]] if family is not None else list(catalog.TAG_KEY.values())
    pairs = tuple(sorted((k, str(tags[k])) for k in keys if k is not None and k in tags))
    return str(tags.get("host", "")), pairs


def _halves(metrics: Sequence[str]) -> list[Sequence[str]]:
    """METRICS in two halves (one part for a single metric). InfluxDB reads each field apart
    and answers a statement on one core, so the two halves asked at once answer in about
    two thirds of the time of one statement, for 10-25 % more of its CPU."""
    half = -(-len(metrics) // 2)
    return [metrics[:half], metrics[half:]] if len(metrics) > 1 else [metrics]


def _merged(
    answers: Sequence[list[dict[str, Any]]], metrics: Sequence[str], family: catalog.Family
) -> list[Series]:
    """The series of ANSWERS (statements over parts of METRICS, grouped alike) as one Series
    per (host, tags), in that order: values in METRICS' order, held as columns where every
    part answered the same timestamps (:func:`monitor.api.stores.pivot`)."""
    index = {m: i for i, m in enumerate(metrics)}
    columns: dict[tuple[str, Tags], list[Column | None]] = {}
    for answer in answers:
        for raw in answer:
            for name, column in _columns(raw):
                if name in index:
                    key = _series_key(raw, family)
                    columns.setdefault(key, [None] * len(metrics))[index[name]] = column
    return [Series(host, pivot(cols), tags) for (host, tags), cols in sorted(columns.items())]


_NONE = type(None)


def _columns(raw: dict[str, Any]) -> list[tuple[str, Column]]:
    """Each field of one answered series as (name, (timestamps, values)): values as floats
    (InfluxDB writes a whole float as an integer), the rows without any value left out, and a
    field without any value left out."""
    values = raw.get("values") or []
    names = list(raw.get("columns") or [])[1:]
    cols = list(zip(*values, strict=True))
    kinds = [set(map(type, c)) for c in cols[1:]]
    if any(_NONE in k for k in kinds):
        values = [v for v in values if v.count(None) < len(names)]
        cols = list(zip(*values, strict=True))
        kinds = [set(map(type, c)) for c in cols[1:]]
    if not values:
        return []
    stamps = cols[0] if type(cols[0][0]) is int else tuple(map(int, cols[0]))
    out: list[tuple[str, Column]] = []
    for name, given, kind in zip(names, cols[1:], kinds, strict=True):
        if kind != {_NONE}:
            if int not in kind:
                column = given
            elif _NONE in kind:
                column = tuple(None if x is None else float(x) for x in given)
            else:
                column = tuple(map(float, given))
            out.append((name, (stamps, column)))
    return out


def _most_values(rows: Sequence[Row]) -> int:
    """The non-null values of the metric that has the most in ROWS."""
    if isinstance(rows, ColumnRows):
        return max((len(c) - c.count(None) for c in rows.columns if c is not None), default=0)
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
