"""Stores: where the API reads samples back (InfluxQL over ``/query``, or the SQLite file).

Both stores answer the same questions with the same results (a test holds them to it):

- raw rows per host, or the mean per time bucket, buckets aligned to the epoch
  (``floor(ts_ms / step_ms) * step_ms``, exactly as InfluxQL's ``GROUP BY time()``);
- one aggregate (mean, min, max, last, count) of one metric over a window, every host's
  samples pooled unless one host is asked for (:func:`combine`: the same rule for both);
- the metric names the store holds, and a cheap reachability check.

Windows are half-open: ``start_ms <= ts_ms < end_ms``. Metric names are checked against
:func:`is_metric` before they reach any query; nothing else is ever pasted into one unquoted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, get_args

if TYPE_CHECKING:
    from monitor.config import Config

BASE_METRICS = (
    "cpu_usage_overall",
    "memory_usage",
    "disk_read",
    "disk_write",
    "network_sent",
    "network_recv",
)
_CORE_METRIC = re.compile(r"cpu_usage_[1-9][0-9]{0,3}")
Aggregation = Literal["mean", "min", "max", "last", "count"]
AGGREGATES: tuple[Aggregation, ...] = get_args(Aggregation)


def is_metric(name: str) -> bool:
    """True for the original setup guide's field names and ``cpu_usage_1`` .. ``cpu_usage_9999``."""
    return name in BASE_METRICS or _CORE_METRIC.fullmatch(name) is not None


def metric_order(name: str) -> tuple[int, int, str]:
    """Sort key: overall CPU, then cores numerically, then the other fields in BASE_METRICS order."""
    if name == "cpu_usage_overall":
        return (0, 0, name)
    if _CORE_METRIC.fullmatch(name):
        return (1, int(name.rsplit("_", 1)[1]), name)
    return (2, BASE_METRICS.index(name) if name in BASE_METRICS else 99, name)


def known_metrics(names: Sequence[str]) -> list[str]:
    """The allow-listed names among NAMES, deduplicated, in :func:`metric_order`."""
    return sorted({n for n in names if is_metric(n)}, key=metric_order)


@dataclass(frozen=True)
class Query:
    """Which samples: metric names (allow-listed), a half-open window, an optional host."""

    metrics: tuple[str, ...]
    start_ms: int
    end_ms: int
    host: str | None = None


@dataclass(frozen=True)
class Series:
    """One host's rows: ``(ts_ms, values)`` in time order, values in the query's metric order.

    A value is a finite float, or None where that metric has no sample at that time; a row
    never has every value None.
    """

    host: str
    rows: list[tuple[int, list[float | None]]]


@dataclass(frozen=True)
class Aggregate:
    """One aggregate over a window, pooled over every host asked for.

    ``value`` is None when the window holds no sample; ``hosts`` counts the hosts whose
    samples went into it; ``value_host`` names the host of the sample a selector (min, max,
    last) picked, and is None for mean and count.
    """

    value: float | None
    samples: int
    hosts: int = 0
    value_host: str | None = None


@dataclass(frozen=True)
class Partial:
    """One host's share of an aggregate, as a store reads it: its SAMPLES in the window and,
    by function, their sum (mean), count (count), extreme (min, max), or the newest value
    and its time ``ts_ms`` (last)."""

    host: str
    samples: int
    value: float | None
    ts_ms: int | None = None


def combine(fn: Aggregation, partials: Sequence[Partial]) -> Aggregate:
    """Pool per-host partials into one aggregate, the same way for every store.

    Mean is the mean of all pooled samples (not of per-host means); count their number; min
    and max the extreme sample; last the newest sample, on a timestamp tie the larger value
    (InfluxDB's rule). A tie that remains goes to the host first in name order.
    """
    parts = sorted((p for p in partials if p.samples > 0), key=lambda p: p.host)
    samples = sum(p.samples for p in parts)
    if not parts:
        return Aggregate(0.0 if fn == "count" else None, 0)
    if fn == "count":
        return Aggregate(float(samples), samples, len(parts))
    if fn == "mean":
        total = math.fsum(float(p.value or 0.0) for p in parts)
        return Aggregate(total / samples, samples, len(parts))
    if fn == "last":
        pick = max(parts, key=lambda p: (p.ts_ms or 0, float(p.value or 0.0)))
    elif fn == "min":
        pick = min(parts, key=lambda p: float(p.value or 0.0))
    else:
        pick = max(parts, key=lambda p: float(p.value or 0.0))
    return Aggregate(None if pick.value is None else float(pick.value), samples, len(parts), pick.host)


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

    def counts(self, query: Query) -> dict[str, int]:
        """Raw rows per host in the window (a row: one timestamp of one host)."""
        ...

    def rows(self, query: Query, step_ms: int | None = None) -> list[Series]:
        """Raw rows (``step_ms`` None) or the mean per epoch-aligned bucket, by host."""
        ...

    def aggregate(
        self, metric: str, fn: Aggregation, start_ms: int, end_ms: int, host: str | None
    ) -> Aggregate:
        """``fn`` (one of :data:`AGGREGATES`) of METRIC over the window, one host or every host
        pooled (read per host, then :func:`combine`)."""
        ...

    def ping(self) -> str:
        """A one-line description if the store answers; raises ``StoreUnavailable`` if not."""
        ...

    def close(self) -> None: ...


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
    "BASE_METRICS",
    "Aggregate",
    "Aggregation",
    "Partial",
    "Query",
    "Series",
    "Store",
    "combine",
    "is_metric",
    "known_metrics",
    "make_store",
    "metric_order",
]
