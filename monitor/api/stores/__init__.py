"""Stores: where the API reads samples back (InfluxQL over ``/query``, or the SQLite file).

Both stores answer the same questions with the same results (a test holds them to it):

- raw rows per series, or the mean per time bucket, buckets aligned to the epoch
  (``floor(ts_ms / step_ms) * step_ms``, exactly as InfluxQL's ``GROUP BY time()``); a series
  is one host and one tag set (``(("mount", "/"),)``; empty for the host family);
- one aggregate (mean, min, max, last, count) of one metric over a window, every matching
  series' samples pooled (:func:`combine`: the same rule for both);
- the metric names the store holds (:meth:`Store.describe`: with their tag values), the hosts
  it has seen, and a cheap reachability check.

All metrics of one :class:`Query` are of one family (``monitor/catalog.py``), and its tag
filters use that family's tag key only; the API refuses anything else before a store sees it.

Windows are half-open: ``start_ms <= ts_ms < end_ms``. Metric names are checked against
:func:`monitor.catalog.is_metric` and tag keys against :data:`monitor.catalog.TAG_KEY` before
they reach any query; tag values and hosts are always quoted or bound, never pasted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, get_args, overload, runtime_checkable

from monitor import catalog
from monitor.catalog import is_metric, metric_order
from monitor.errors import QueryFailed

if TYPE_CHECKING:
    from monitor.config import Config

Aggregation = Literal["mean", "min", "max", "last", "count"]
AGGREGATES: tuple[Aggregation, ...] = get_args(Aggregation)
Tags = tuple[tuple[str, str], ...]
"""A series' tags besides host: ``(key, value)`` pairs sorted by key; ``()`` for the host family."""
Counts = dict[tuple[str, Tags], int]
"""Raw rows per series ``(host, tags)`` in a window, as :meth:`Store.counts` gives them."""
StepRule = Callable[[Counts], tuple[int | None, str | None]]
"""(step in ms or None for raw, why) of a window, from its counts."""


def known_metrics(names: Sequence[str]) -> list[str]:
    """The allow-listed names among NAMES, deduplicated, in :func:`metric_order`."""
    return sorted({n for n in names if is_metric(n)}, key=metric_order)


@dataclass(frozen=True)
class Query:
    """Which samples: metric names (allow-listed, one family), a half-open window, an optional
    host, and exact-match tag filters ``((key, value), ...)`` on the family's tag key."""

    metrics: tuple[str, ...]
    start_ms: int
    end_ms: int
    host: str | None = None
    tags: Tags = ()


Row = tuple[int, list[float | None]]
"""``(ts_ms, values)``: one timestamp of a series, values in the query's metric order."""


Column = tuple[Sequence[int], Sequence[float | None]]
"""``(timestamps, values)`` of one metric of a series, in time order (a value None where the
metric has no sample at a timestamp its neighbours in the answer have)."""

Segment = tuple[Hashable, int, int]
"""``(key, start, end)``: rows ``start:end`` of a :class:`ColumnRows` are a pure function of
KEY (equal keys, equal rows), so what is made of them can be kept and reused under KEY."""


class ColumnRows(Sequence[Row]):
    """A series' rows held as columns: the timestamps and, per metric, its values at each of
    them (None for a metric without samples in the series, a value None where it has none at
    that time), made into rows only as they are read. Both stores answer this way where every
    metric has the same timestamps (:func:`pivot`); the /metrics JSON reads the columns
    directly, without the rows.

    ``segments`` name runs of rows that cannot change (the embedded store: the samples of
    sealed chunks the window holds whole, keyed by the chunks' bytes), in order, disjoint."""

    __slots__ = ("columns", "segments", "stamps")

    def __init__(
        self,
        stamps: Sequence[int],
        columns: Sequence[Sequence[float | None] | None],
        segments: Sequence[Segment] = (),
    ) -> None:
        self.stamps = stamps
        self.columns = columns
        self.segments = segments

    def value_columns(self) -> list[Sequence[float | None]]:
        """Each metric's values, a column of None for a metric without samples."""
        none: list[float | None] = [None] * len(self.stamps)
        return [none if c is None else c for c in self.columns]

    def __len__(self) -> int:
        return len(self.stamps)

    def __iter__(self) -> Iterator[Row]:
        return zip(self.stamps, map(list, zip(*self.value_columns(), strict=True)), strict=True)

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...
    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(index, slice):
            return list(self)[index]
        return self.stamps[index], [None if c is None else c[index] for c in self.columns]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ColumnRows({list(self)!r})"


@dataclass(frozen=True)
class Series:
    """One series' rows: ``(ts_ms, values)`` in time order, values in the query's metric order
    (a list, or :class:`ColumnRows`).

    A series is one host and one tag set (``tags``, sorted by key; ``()`` for the host family).
    A value is a finite float, or None where that metric has no sample at that time; a row
    never has every value None.
    """

    host: str
    rows: Sequence[Row]
    tags: Tags = ()


def pivot(columns: Sequence[Column | None]) -> Sequence[Row]:
    """One series' per-metric (timestamps, values), each in time order, as rows in time order.

    Fast path: every metric present has the same timestamps (all fields of a sample share
    one): the columns as they are (:class:`ColumnRows`); otherwise a merge by timestamp, None
    in the gaps.
    """
    present = [c for c in columns if c is not None]
    stamps = present[0][0]
    if all(c[0] == stamps for c in present[1:]):
        return ColumnRows(stamps, [None if c is None else c[1] for c in columns])
    table: dict[int, list[float | None]] = {}
    for i, column in enumerate(columns):
        for ts, v in zip(*(column or ([], [])), strict=True):
            row = table.get(ts)
            if row is None:
                row = table[ts] = [None] * len(columns)
            row[i] = v
    return sorted(table.items())


@dataclass(frozen=True)
class Aggregate:
    """One aggregate over a window, pooled over every series asked for.

    ``value`` is None when the window holds no sample; ``hosts`` counts the distinct hosts
    whose samples went into it; ``value_host`` and ``value_tags`` name the series of the
    sample a selector (min, max, last) picked (``value_host`` None and ``value_tags`` ``()``
    for mean and count; ``value_tags`` is ``()`` for the host family, which has no tags).
    """

    value: float | None
    samples: int
    hosts: int = 0
    value_host: str | None = None
    value_tags: Tags = ()


@dataclass(frozen=True)
class Partial:
    """One series' share of an aggregate, as a store reads it: its SAMPLES in the window and,
    by function, their sum (mean), count (count), extreme (min, max), or the newest value
    and its time ``ts_ms`` (last)."""

    host: str
    samples: int
    value: float | None
    ts_ms: int | None = None
    tags: Tags = ()


@dataclass(frozen=True)
class MetricInfo:
    """A metric the store holds, its family, and for a tagged family its tag key mapped to the
    sorted values the store holds (``{"mount": ["/", "/home"]}``; ``{}`` for the host family)."""

    name: str
    family: str
    tags: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class HostSeen:
    """A host the store holds samples of, and the time of its newest sample (any metric)."""

    host: str
    last_ms: int


class Newest(NamedTuple):
    """The newest sample of one series: its metric, host, tags, time and value (a tuple: a
    fleet's /hosts makes thousands)."""

    metric: str
    host: str
    tags: Tags
    ts_ms: int
    value: float


def query_family(store: str, metrics: Sequence[str]) -> catalog.Family:
    """The one family of METRICS, for STORE's error: an unknown metric or a mix of families is
    refused before any query (no metrics: the host family)."""
    families = []
    for metric in metrics:
        family = catalog.family_of(metric)
        if family is None:
            raise QueryFailed(store, f"not an allow-listed metric: {metric!r}")
        families.append(family)
    if len(set(families)) > 1:
        raise QueryFailed(store, f"metrics of more than one family: {', '.join(metrics)}")
    return families[0] if families else "host"


def combine(fn: Aggregation, partials: Sequence[Partial]) -> Aggregate:
    """Pool per-series partials into one aggregate, the same way for every store.

    Mean is the mean of all pooled samples (not of per-series means); count their number; min
    and max the extreme sample; last the newest sample, on a timestamp tie the larger value
    (InfluxDB's rule). A tie that remains goes to the series first in (host, tags) order.
    """
    parts = sorted((p for p in partials if p.samples > 0), key=lambda p: (p.host, p.tags))
    samples = sum(p.samples for p in parts)
    if not parts:
        return Aggregate(0.0 if fn == "count" else None, 0)
    hosts = len({p.host for p in parts})
    if fn == "count":
        return Aggregate(float(samples), samples, hosts)
    if fn == "mean":
        total = math.fsum(float(p.value or 0.0) for p in parts)
        return Aggregate(total / samples, samples, hosts)
    if fn == "last":
        pick = max(parts, key=lambda p: (p.ts_ms or 0, float(p.value or 0.0)))
    elif fn == "min":
        pick = min(parts, key=lambda p: float(p.value or 0.0))
    else:
        pick = max(parts, key=lambda p: float(p.value or 0.0))
    value = None if pick.value is None else float(pick.value)
    return Aggregate(value, samples, hosts, pick.host, pick.tags)


class Store(Protocol):
    """The one seam between the API and a database."""

    @property
    def name(self) -> str:
        """What this store reads, for logs and /health (never contains a secret)."""
        ...

    @property
    def kind(self) -> str:
        """``sqlite``, ``influxdb_v1`` or ``influxdb_v2``."""
        ...

    def names(self) -> list[str]:
        """The allow-listed metric names the store holds, in :func:`metric_order`."""
        ...

    def describe(self) -> list[MetricInfo]:
        """Every allow-listed metric the store holds, in :func:`metric_order`, with its family
        and its tag values."""
        ...

    def hosts(self) -> list[HostSeen]:
        """Every host the store holds samples of, in name order, with its newest sample's time."""
        ...

    def counts(self, query: Query) -> dict[tuple[str, Tags], int]:
        """Raw rows per series ``(host, tags)`` in the window (a row: one timestamp of one series)."""
        ...

    def rows(self, query: Query, step_ms: int | None = None) -> list[Series]:
        """Raw rows (``step_ms`` None) or the mean per epoch-aligned bucket, one Series per
        (host, tags), sorted by (host, tags)."""
        ...

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
        """``fn`` (one of :data:`AGGREGATES`) of METRIC over the window, every series matching
        HOST and TAGS pooled (read per series, then :func:`combine`)."""
        ...

    def ping(self) -> str:
        """A one-line description if the store answers; raises ``StoreUnavailable`` if not."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class RawWindow(Protocol):
    """A store that can read a window's raw rows and their counts in one pass, and guess a
    window's series and rows from a cheap probe (a server that counts by reading every value:
    InfluxDB)."""

    def raw_window(self, query: Query, max_points: int) -> tuple[Counts, list[Series]] | None:
        """(counts as :meth:`Store.counts` gives them, rows as ``rows(query)`` gives them) when
        no series holds more than MAX_POINTS rows in the window; None when one does."""
        ...

    def estimate(self, query: Query, max_points: int) -> Counts | None:
        """Each series' expected rows in the window (a guess); None when the window is too short
        for any series to hold more than MAX_POINTS rows (then nothing was asked)."""
        ...

    def rows_while_counting(self, query: Query, step_ms: int) -> tuple[Counts, list[Series]]:
        """(``counts(query)``, ``rows(query, step_ms)``), read at once."""
        ...


@runtime_checkable
class NewestSamples(Protocol):
    """A store that keeps each series' newest sample where it reads it at once."""

    def newest(self, metrics: Sequence[str]) -> list[Newest]:
        """The newest sample of every series of METRICS (allow-listed), in (metric, host, tags)
        order."""
        ...


def read_window(
    store: Store, query: Query, max_points: int, step_rule: StepRule, *, raw_if_fits: bool
) -> tuple[Counts, list[Series], int | None, str | None]:
    """(counts, rows, step in ms or None for raw, why) of QUERY's window, STEP_RULE picking the
    step from the counts. RAW_IF_FITS promises that STEP_RULE answers raw for counts totalling
    at most MAX_POINTS.

    Any store is read as ``counts()``, then ``rows()`` at the chosen step. A
    :class:`RawWindow` store is first asked for its estimate: a window expected to fit is
    read raw in one pass (no count first); a window expected at a step is read at that step
    while it is counted, and read again only if the counts choose another step (so the answer
    is always the one the counts give)."""
    if not query.metrics:
        return {}, [], *step_rule({})
    counts: Counts | None = None
    if isinstance(store, RawWindow):
        guess = store.estimate(query, max_points)
        if raw_if_fits and (guess is None or sum(guess.values()) <= max_points):
            read = store.raw_window(query, max_points)
            if read is not None:
                counts = read[0]
                step_ms, reason = step_rule(counts)
                if step_ms is None:
                    return counts, read[1], step_ms, reason
        guessed = step_rule(guess)[0] if guess and counts is None else None
        if guessed is not None:
            counts, series = store.rows_while_counting(query, guessed)
            step_ms, reason = step_rule(counts)
            if step_ms == guessed:
                return counts, series, step_ms, reason
    if counts is None:
        counts = store.counts(query)
    step_ms, reason = step_rule(counts)
    return counts, store.rows(query, step_ms) if counts else [], step_ms, reason


def make_store(config: Config) -> Store:
    """The store that reads what the configured sink writes (``config.sink.kind``)."""
    timeout_s = config.api.query_timeout_s
    if config.sink.kind == "sqlite":
        from monitor.api.stores.sqlite import SQLiteStore

        return SQLiteStore(config.sink.path, timeout_s=timeout_s)
    from monitor.api.stores.influxql import InfluxQLStore

    return InfluxQLStore.from_config(config)


__all__ = [
    "AGGREGATES",
    "Aggregate",
    "Aggregation",
    "Column",
    "ColumnRows",
    "Counts",
    "HostSeen",
    "MetricInfo",
    "Newest",
    "NewestSamples",
    "Partial",
    "Query",
    "RawWindow",
    "Row",
    "Segment",
    "Series",
    "StepRule",
    "Store",
    "Tags",
    "combine",
    "is_metric",
    "known_metrics",
    "make_store",
    "metric_order",
    "pivot",
    "query_family",
    "read_window",
]
