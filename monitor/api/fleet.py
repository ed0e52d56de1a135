"""The fleet at a glance: /hosts (status and the newest values per host) and /alerts.

A host is ``silent`` when its newest sample is older than ``api.silent_after_s`` by the API's
clock, else ``alerting`` when a rule or system condition fires for it in the alert log, else
``ok``. Its "now" values (:data:`NOW_METRICS`, and the fullest filesystem) are the newest
sample within ``silent_after_s`` before its newest sample. The embedded store keeps each
series' newest sample beside its name, so a fleet is one read there; over InfluxDB, hosts whose
newest samples lie close together (every live host; hosts that went silent together) share one
window, so a fleet costs one query per family per such group, not per host: the windows are
disjoint and read oldest first, and a host's values come from the last window holding any of
its samples, the one that holds its newest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from monitor.alerts.history import Firing, Record
from monitor.alerts.log import FIRING
from monitor.alerts.silent import RULE as SILENT_RULE
from monitor.api.stores import HostSeen, Newest, NewestSamples, Query, Series, Store, Tags
from monitor.formats import iso_ms, iso_ms_each

NOW_METRICS = ("cpu_usage_overall", "memory_usage")
FILESYSTEM_METRIC = "filesystem_used_percent"


@dataclass(frozen=True)
class Now:
    """A host's newest values; None where the store holds no such sample."""

    cpu_usage_overall: float | None = None
    memory_usage: float | None = None
    filesystem_used_percent: float | None = None
    filesystem_mount: str | None = None


def newest_values(store: Store, seen: Sequence[HostSeen], silent_after_s: float) -> dict[str, Now]:
    """Every host's :class:`Now`: from the newest sample the store keeps per series where it
    can (:class:`NewestSamples`, the embedded store: one read), else from the windows of the
    module docstring."""
    lookback_ms = round(silent_after_s * 1000)
    metrics = (*NOW_METRICS, FILESYSTEM_METRIC)
    if isinstance(store, NewestSamples):
        samples = store.newest(metrics)
    else:
        samples = _newest_in_windows(store, seen, lookback_ms)
    return _now(seen, samples, lookback_ms)


def _newest_in_windows(store: Store, seen: Sequence[HostSeen], lookback_ms: int) -> list[Newest]:
    """The newest sample of every series in the windows around the hosts' newest samples."""
    windows: list[tuple[int, int]] = []  # ascending, disjoint: a later window has newer samples
    for h in sorted(seen, key=lambda h: h.last_ms):
        joins = windows and h.last_ms - lookback_ms < windows[-1][1]
        if joins and h.last_ms - windows[-1][0] <= 2 * lookback_ms:
            windows[-1] = (windows[-1][0], h.last_ms + 1)
        else:
            windows.append((max(h.last_ms - lookback_ms, windows[-1][1] if windows else 0), h.last_ms + 1))
    newest: dict[tuple[str, str, Tags], Newest] = {}
    for start_ms, end_ms in windows:
        for metrics in (NOW_METRICS, (FILESYSTEM_METRIC,)):
            for s in store.rows(Query(metrics, start_ms, end_ms)):
                for metric, sample in zip(metrics, _last_samples(s, len(metrics)), strict=True):
                    if sample is not None:
                        newest[(metric, s.host, s.tags)] = Newest(metric, s.host, s.tags, *sample)
    return sorted(newest.values())  # in (metric, host, tags) order, as NewestSamples gives them


def _last_samples(series: Series, width: int) -> list[tuple[int, float] | None]:
    """Per metric, its newest (ts_ms, value) in SERIES (rows in time order)."""
    out: list[tuple[int, float] | None] = [None] * width
    for ts_ms, row in series.rows:
        for i, value in enumerate(row):
            if value is not None:
                out[i] = (ts_ms, value)
    return out


def _now(seen: Sequence[HostSeen], samples: Sequence[Newest], lookback_ms: int) -> dict[str, Now]:
    """Each host's values: the newest samples of its series no older than LOOKBACK_MS before its
    newest sample (a filesystem unmounted an hour ago is not its fullest); the fullest
    filesystem is the highest of them, on a tie the first mount in order (SAMPLES come in
    (metric, host, tags) order)."""
    since = {h.host: h.last_ms - lookback_ms for h in seen}
    values: dict[str, dict[str, float]] = {metric: {} for metric in NOW_METRICS}  # per metric, per host
    fullest: dict[str, tuple[float, Tags]] = {}
    for metric, host, tags, ts_ms, value in samples:
        cut = since.get(host)
        if cut is None or ts_ms < cut:
            continue
        if metric == FILESYSTEM_METRIC:
            best = fullest.get(host)
            if best is None or value > best[0]:
                fullest[host] = (value, tags)
        else:
            values[metric][host] = value
    cpu, memory = values["cpu_usage_overall"], values["memory_usage"]
    out = {}
    for h in seen:
        fs = fullest.get(h.host)
        if fs is None:
            out[h.host] = Now(cpu.get(h.host), memory.get(h.host))
        else:
            out[h.host] = Now(cpu.get(h.host), memory.get(h.host), fs[0], dict(fs[1]).get("mount", ""))
    return out


def status(age_s: float, silent_after_s: float, firing_rules: Sequence[str]) -> str:
    """``silent`` by the age of the newest sample, else ``alerting`` while another rule fires
    (``host_silent`` itself is the age's business: it may resolve a few seconds after the
    samples come back), else ``ok``."""
    if age_s > silent_after_s:
        return "silent"
    return "alerting" if firing_rules and any(r != SILENT_RULE for r in firing_rules) else "ok"


def hosts_body(
    kind: str,
    seen: Sequence[HostSeen],
    now_ms: int,
    *,
    silent_after_s: float,
    firing: Sequence[Firing] = (),
    now: dict[str, Now] | None = None,
) -> dict[str, Any]:
    """/hosts: every host the store holds, its newest sample's time, age, status and values."""
    rules: dict[str, set[str]] = {}
    for f in firing:
        rules.setdefault(f.last.host, set()).add(f.last.rule)
    values_of, none = now or {}, Now()
    hosts = []
    for h, last_sample in zip(seen, iso_ms_each([h.last_ms for h in seen]), strict=True):
        age_s = round((now_ms - h.last_ms) / 1000, 3)
        own = rules.get(h.host)
        firing_rules = sorted(own) if own else []
        values = values_of.get(h.host, none)
        hosts.append(
            {
                "host": h.host,
                "last_sample": last_sample,
                "last_sample_ms": h.last_ms,
                "age_s": age_s,
                "status": status(age_s, silent_after_s, firing_rules),
                "silent_after_s": silent_after_s,
                "firing": firing_rules,
                "now": values,  # orjson writes a dataclass as an object of its fields
            }
        )
    return {"store": kind, "time": iso_ms(now_ms), "silent_after_s": silent_after_s, "hosts": hosts}


def _record_common(r: Record) -> dict[str, Any]:
    return {"rule": r.rule, "host": r.host, "tags": dict(r.tags), "value": r.value, "message": r.message}


def alerts_body(now_ms: int, recent: Sequence[Record], firing: Sequence[Firing]) -> dict[str, Any]:
    """/alerts: what fires now (since the fire that began it) and RECENT (oldest first) newest first."""
    return {
        "time": iso_ms(now_ms),
        "firing": [
            {**_record_common(f.last), "since": iso_ms(f.since.time_ms), "since_ms": f.since.time_ms}
            for f in firing
        ],
        "history": [
            {
                "time": iso_ms(r.time_ms),
                "time_ms": r.time_ms,
                **_record_common(r),
                "state": "fire" if r.state == FIRING else "resolve",
            }
            for r in reversed(recent)
        ],
    }
