"""A small fleet in a real SQLite store, for the dashboard's browser tests and screenshots.

Three hosts, sampled every ``INTERVAL_S`` with every collector's metrics (monitor/catalog.py):
``web1`` up to now over ``WEB1_HOURS``, ``web2`` up to now over one hour (with a firing alert
in the alert log: *alerting*), ``old1`` for an hour that ended ``OLD1_SILENT_H`` hours ago
(*silent*). Values are smooth, deterministic waves, so screenshots look like a real host.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

from monitor import catalog, metricsdb
from monitor.alerts.log import AlertEvent, format_line
from tests.store_helpers import write_rows

INTERVAL_S = 10
WEB1_HOURS = 24
OLD1_SILENT_H = 3
CORES = 2
MOUNTS = ("/", "/var")
DEVICES = ("sda",)
INTERFACES = ("eth0",)
TAG_VALUES = {"mount": MOUNTS, "device": DEVICES, "interface": INTERFACES}
HOST_METRICS = (
    *(m.name for m in catalog.METRICS if m.family == "host"),
    *(f"cpu_usage_{n}" for n in range(1, CORES + 1)),
)
# Each tag key, its values, and every metric of its family (monitor/catalog.py).
TAGGED = {
    key: (TAG_VALUES[key], tuple(m.name for m in catalog.METRICS if m.family == family))
    for family, key in catalog.TAG_KEY.items()
    if key is not None
}
Row = tuple[str, str, str, int, float]


@dataclass(frozen=True)
class HostData:
    host: str
    first_ms: int
    last_ms: int


def _shape(ts_ms: int, key: str) -> float:
    """0..1: a day's rhythm, an hourly ripple and a little deterministic noise, per KEY."""
    phase = zlib.crc32(key.encode()) % 1000 / 1000 * 2 * math.pi
    t_s = ts_ms / 1000
    day = math.sin(2 * math.pi * t_s / 86_400 + phase)
    hour = math.sin(2 * math.pi * t_s / 3_600 + 2 * phase)
    noise = (zlib.crc32(f"{key}{ts_ms}".encode()) % 1000) / 1000 - 0.5
    return min(1.0, max(0.0, 0.5 + 0.3 * day + 0.1 * hour + 0.15 * noise))


def _value(metric: str, host: str, tags: str, ts_ms: int) -> float:
    x = _shape(ts_ms, f"{host}{metric}{tags}")
    if metric.endswith("_percent") or metric == "memory_usage" or metric.startswith("cpu_usage_"):
        return round(5 + 80 * x, 2)
    if metric.startswith("load_"):
        return round(0.1 + 3 * x, 2)
    if "errors" in metric:
        return 0.0
    return round(1e4 + 5e6 * x**3, 1)  # bytes and bytes/s: mostly quiet, with bursts


def rows(host: str, first_ms: int, last_ms: int) -> list[Row]:
    """Every metric of HOST at every tick from FIRST_MS to LAST_MS (inclusive)."""
    out: list[Row] = []
    step_ms = INTERVAL_S * 1000
    for ts in range(first_ms, last_ms + 1, step_ms):
        out.extend((m, host, "", ts, _value(m, host, "", ts)) for m in HOST_METRICS)
        for key, (values, metrics) in TAGGED.items():
            for tag in values:
                tags = metricsdb.encode_tags(((key, tag),))
                out.extend((m, host, tags, ts, _value(m, host, tags, ts)) for m in metrics)
    return out


def load(store_path: Path, alerts_log: Path, now_ms: int) -> list[HostData]:
    """Fill the store at STORE_PATH and write one firing alert for web2 to ALERTS_LOG."""
    tick_ms = INTERVAL_S * 1000
    end_ms = now_ms - now_ms % tick_ms
    hosts = [
        HostData("web1", end_ms - WEB1_HOURS * 3_600_000, end_ms),
        HostData("web2", end_ms - 3_600_000, end_ms),
        HostData("old1", end_ms - (OLD1_SILENT_H + 1) * 3_600_000, end_ms - OLD1_SILENT_H * 3_600_000),
    ]
    for h in hosts:
        write_rows(store_path, rows(h.host, h.first_ms, h.last_ms))
    event = AlertEvent(
        time_ms=end_ms - 120_000,
        host="web2",
        rule="cpu_high",
        severity="warning",
        state="FIRING",
        value=93.5,
        op=">",
        threshold=90.0,
        message="cpu_usage_overall is 93.5, > 90 for at least 60 s",
    )
    alerts_log.parent.mkdir(parents=True, exist_ok=True)
    alerts_log.write_text(format_line(event) + "\n")
    return hosts
