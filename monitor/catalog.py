"""Every metric the agent samples: its family, its measurement, its tag key and its unit.

The one list the collector, the API's allow-list, the OpenAPI document, the alert rules and
the Grafana dashboard agree on. Names carry their units (``_bytes``, ``_percent``,
``_per_s``), except the original setup guide's fields, which keep their names, units and
meaning (``disk_read`` is bytes per second summed over whole disks, ``memory_usage`` a percent).

Families:

- ``host``: one series per host, in the configured measurement (``sink.measurement``,
  ``system`` by default), tagged ``host`` only: the original fields, the per-core CPU fields
  ``cpu_usage_1`` .. ``cpu_usage_N``, load and swap.
- ``filesystem``, ``disk``, ``network``: one series per host and mount point, block device or
  network interface, in the measurement ``<sink.measurement>_<family>`` (``system_filesystem``),
  tagged ``host`` and the family's tag key (``mount``, ``device``, ``interface``).

A metric name belongs to exactly one family, so a name alone says where it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

Family = Literal["host", "filesystem", "disk", "network"]
FAMILIES: tuple[Family, ...] = get_args(Family)
TagKey = Literal["mount", "device", "interface"]
TAG_KEYS: tuple[TagKey, ...] = get_args(TagKey)


@dataclass(frozen=True)
class Metric:
    name: str
    family: Family
    unit: str  # "percent", "bytes", "bytes/s", "1/s", "load"
    description: str


_M = Metric
METRICS: tuple[Metric, ...] = (
    # host: the original setup guide's fields, unchanged
    _M("cpu_usage_overall", "host", "percent", "CPU busy, all cores"),
    _M("memory_usage", "host", "percent", "virtual memory in use"),
    _M("disk_read", "host", "bytes/s", "bytes read per second, summed over whole disks"),
    _M("disk_write", "host", "bytes/s", "bytes written per second, summed over whole disks"),
    _M("network_sent", "host", "bytes/s", "bytes sent per second, summed over every NIC but lo"),
    _M("network_recv", "host", "bytes/s", "bytes received per second, summed over every NIC but lo"),
    # host: load and swap
    _M("load_1", "host", "load", "load average over 1 minute"),
    _M("load_5", "host", "load", "load average over 5 minutes"),
    _M("load_15", "host", "load", "load average over 15 minutes"),
    _M("swap_used_percent", "host", "percent", "swap in use"),
    _M("swap_used_bytes", "host", "bytes", "swap in use"),
    # filesystem, per mount point
    _M("filesystem_used_percent", "filesystem", "percent", "space in use, as df shows it"),
    _M("filesystem_free_bytes", "filesystem", "bytes", "space available to unprivileged users"),
    _M("filesystem_total_bytes", "filesystem", "bytes", "size of the filesystem"),
    _M("filesystem_inodes_used_percent", "filesystem", "percent", "inodes in use"),
    # disk, per block device
    _M("disk_read_bytes_per_s", "disk", "bytes/s", "bytes read per second"),
    _M("disk_write_bytes_per_s", "disk", "bytes/s", "bytes written per second"),
    _M("disk_busy_percent", "disk", "percent", "time the device was busy with I/O"),
    # network, per interface
    _M("network_sent_bytes_per_s", "network", "bytes/s", "bytes sent per second"),
    _M("network_recv_bytes_per_s", "network", "bytes/s", "bytes received per second"),
    _M("network_errors_in_per_s", "network", "1/s", "receive errors per second"),
    _M("network_errors_out_per_s", "network", "1/s", "transmit errors per second"),
    _M("network_drops_in_per_s", "network", "1/s", "received packets dropped per second"),
    _M("network_drops_out_per_s", "network", "1/s", "transmitted packets dropped per second"),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
ORIGINAL_METRICS = tuple(m.name for m in METRICS[:6])
TAG_KEY: dict[Family, TagKey | None] = {
    "host": None,
    "filesystem": "mount",
    "disk": "device",
    "network": "interface",
}
CORE_METRIC = re.compile(r"cpu_usage_[1-9][0-9]{0,3}")
_ORDER = {m.name: i for i, m in enumerate(METRICS)}


def family_of(name: str) -> Family | None:
    """The family of a metric name, None when the name is not one of ours."""
    metric = BY_NAME.get(name)
    if metric is not None:
        return metric.family
    return "host" if CORE_METRIC.fullmatch(name) else None


def is_metric(name: str) -> bool:
    """True for every name in :data:`METRICS` and ``cpu_usage_1`` .. ``cpu_usage_9999``."""
    return family_of(name) is not None


def family_of_tags(keys: Iterable[str]) -> Family:
    """The family whose tag key is among KEYS (``host`` when none is)."""
    present = set(keys)
    for family, key in TAG_KEY.items():
        if key is not None and key in present:
            return family
    return "host"


def measurement_of(family: Family, measurement: str) -> str:
    """Where FAMILY is stored when the host measurement is MEASUREMENT (``sink.measurement``)."""
    return measurement if family == "host" else f"{measurement}_{family}"


def metric_order(name: str) -> tuple[int, int, str]:
    """Sort key: overall CPU, then cores numerically, then the others in :data:`METRICS` order."""
    if name == "cpu_usage_overall":
        return (0, 0, name)
    if CORE_METRIC.fullmatch(name):
        return (1, int(name.rsplit("_", 1)[1]), name)
    return (2, _ORDER.get(name, len(_ORDER)), name)
