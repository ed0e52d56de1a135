"""Collector: one sample of CPU, memory, disk and network per tick, on wall-clock-aligned ticks.

Fields of every sample (one measurement, tagged ``host``)::

    cpu_usage_overall, cpu_usage_1 .. cpu_usage_N   percent 0-100, every core, 1-based
    memory_usage                                    percent 0-100 of virtual memory in use
    disk_read, disk_write                           bytes per second, summed over all disks
    network_sent, network_recv                      bytes per second, summed over all NICs but ``lo``

CPU percent comes from deltas of cumulative CPU times between two samples: busy = total - idle -
iowait, divided by the total, clamped to 0..100 (the kernel's idle/iowait counters can step back a
little; that never shows as a negative value). Disk and network rates are counter deltas divided by
the real elapsed time between the two samples (``now_s`` minus the previous ``now_s``).

Counter resets and wraps. Cumulative counters can go down: a NIC is reset or re-created, a 32-bit
counter wraps, a disk disappears and the sum over disks shrinks. A counter that decreased is
treated as a reset and contributes 0 for that interval (it is impossible to know how much moved
between the last reading and the reset, and a guess could be absurdly large). Counters are compared
per device: a device that appears contributes 0 in its first interval (its counters are lifetime
totals, not this interval's traffic) and a device that vanished contributes nothing. A core that
appears (CPU hotplug) reports 0 in its first interval. If no time elapsed, rates are 0.

Timestamps and precision. A sample is stamped with its tick's time in integer milliseconds
(:mod:`monitor.ticker`), on exact multiples of the interval; values are rounded to 2 decimals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from monitor.lineprotocol import Sample

log = logging.getLogger(__name__)


class CpuTimes(NamedTuple):
    """Cumulative CPU seconds since boot for one core (or all cores together).

    A NamedTuple rather than a frozen dataclass: one is built per core per tick, and a tuple is
    several times cheaper to build; it is just as immutable.
    """

    total_s: float  # every state, including idle and iowait (Linux: without guest, already in user)
    idle_s: float
    iowait_s: float = 0.0


class IoBytes(NamedTuple):
    """Cumulative byte counters of one device: (read, written) for a disk, (sent, received) for a NIC."""

    out_bytes: int  # disk: read; NIC: sent
    in_bytes: int  # disk: written; NIC: received


class SystemStats(Protocol):
    """The OS readings the collector needs; :class:`PsutilStats` is the real one, tests pass a fake."""

    def cpu_times(self) -> CpuTimes: ...

    def cpu_times_per_core(self) -> Sequence[CpuTimes]: ...

    def memory_percent(self) -> float: ...

    def disk_bytes(self) -> Mapping[str, IoBytes]:
        """Per disk (or one total entry): out_bytes = read, in_bytes = written. {} when unknown."""
        ...

    def net_bytes(self) -> Mapping[str, IoBytes]:
        """Per NIC without loopback: out_bytes = sent, in_bytes = received."""
        ...


class PsutilStats:
    """:class:`SystemStats` backed by psutil, the only place the package imports psutil."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil

    def cpu_times(self) -> CpuTimes:
        return _cpu(self._psutil.cpu_times())

    def cpu_times_per_core(self) -> Sequence[CpuTimes]:
        return [_cpu(t) for t in self._psutil.cpu_times(percpu=True)]

    def memory_percent(self) -> float:
        return float(self._psutil.virtual_memory().percent)

    def disk_bytes(self) -> Mapping[str, IoBytes]:
        # perdisk=False sums whole disks only (no partitions); None in some containers.
        counters = self._psutil.disk_io_counters(perdisk=False)
        if counters is None:
            return {}
        return {"all": IoBytes(counters.read_bytes, counters.write_bytes)}

    def net_bytes(self) -> Mapping[str, IoBytes]:
        nics = self._psutil.net_io_counters(pernic=True)
        return {name: IoBytes(c.bytes_sent, c.bytes_recv) for name, c in nics.items() if name != "lo"}


def _cpu(times: Any) -> CpuTimes:
    """psutil's per-platform namedtuple of CPU times (a tuple of floats) as :class:`CpuTimes`."""
    # Linux counts guest time inside user/nice as well; psutil and htop subtract it the same way.
    # Attribute access and sum() over the tuple itself: no dict per core per tick.
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return CpuTimes(total, getattr(times, "idle", 0.0), getattr(times, "iowait", 0.0))


class _Reading(NamedTuple):
    now_s: float
    cpu: CpuTimes
    cores: Sequence[CpuTimes]
    disks: Mapping[str, IoBytes]
    nics: Mapping[str, IoBytes]


def _cpu_percent(before: CpuTimes | None, after: CpuTimes) -> float:
    if before is None:
        return 0.0
    total = after.total_s - before.total_s
    if total <= 0:
        return 0.0
    idle = (after.idle_s + after.iowait_s) - (before.idle_s + before.iowait_s)
    return min(100.0, max(0.0, (total - idle) / total * 100.0))


def _delta(before: Mapping[str, IoBytes], after: Mapping[str, IoBytes]) -> tuple[int, int]:
    """Summed per-device increases; a device whose counter went down (reset, wrap) adds 0."""
    out_total = in_total = 0
    for name, now in after.items():
        old = before.get(name)
        if old is None:
            continue
        out_total += max(0, now.out_bytes - old.out_bytes)
        in_total += max(0, now.in_bytes - old.in_bytes)
    return out_total, in_total


def _percent(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 2) if math.isfinite(value) else 0.0


class Collector:
    """Turns two readings of cumulative counters into one :class:`Sample` of percents and rates."""

    def __init__(self, host: str, stats: SystemStats | None = None) -> None:
        self.host = host
        self._stats: SystemStats = stats if stats is not None else PsutilStats()
        self._previous: _Reading | None = None
        self._names: list[str] = []  # cpu_usage_1 .. cpu_usage_N, built once, not per tick

    def _core_names(self, n: int) -> list[str]:
        if len(self._names) != n:
            self._names = [f"cpu_usage_{i + 1}" for i in range(n)]
        return self._names

    def _read(self, now_s: float) -> _Reading:
        s = self._stats
        return _Reading(now_s, s.cpu_times(), list(s.cpu_times_per_core()), s.disk_bytes(), s.net_bytes())

    def prime(self, now_s: float) -> None:
        """Take the first counters; the next :meth:`sample` reports rates since this moment."""
        self._previous = self._read(now_s)

    def sample(self, ts_ms: int, now_s: float) -> Sample:
        """Percents and rates over ``now_s`` minus the previous ``now_s``, stamped ``ts_ms``.

        Without a previous reading (no :meth:`prime`), CPU and rates are 0 for this one sample.
        """
        current = self._read(now_s)
        previous = self._previous or current
        self._previous = current
        elapsed_s = current.now_s - previous.now_s
        fields: dict[str, float] = {
            "cpu_usage_overall": round(_cpu_percent(previous.cpu, current.cpu), 2),
        }
        before_cores = previous.cores
        n_before = len(before_cores)
        for i, (name, core) in enumerate(
            zip(self._core_names(len(current.cores)), current.cores, strict=True)
        ):
            fields[name] = round(_cpu_percent(before_cores[i] if i < n_before else None, core), 2)
        fields["memory_usage"] = _percent(self._stats.memory_percent())
        disk_read, disk_write = _delta(previous.disks, current.disks)
        sent, recv = _delta(previous.nics, current.nics)
        if elapsed_s > 0:
            fields["disk_read"] = round(disk_read / elapsed_s, 2)
            fields["disk_write"] = round(disk_write / elapsed_s, 2)
            fields["network_sent"] = round(sent / elapsed_s, 2)
            fields["network_recv"] = round(recv / elapsed_s, 2)
        else:
            fields["disk_read"] = fields["disk_write"] = fields["network_sent"] = fields["network_recv"] = 0.0
        return Sample(ts_ms, self.host, fields)
