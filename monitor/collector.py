"""Collector: one host sample plus one sample per mount, disk and interface, per tick.

Fields of the host sample (measurement ``sink.measurement``, tagged ``host``)::

    cpu_usage_overall, cpu_usage_1 .. cpu_usage_N   percent 0-100, every core, 1-based
    memory_usage                                    percent 0-100 of virtual memory in use
    disk_read, disk_write                           bytes per second, summed over all disks
    network_sent, network_recv                      bytes per second, summed over all NICs but ``lo``
    load_1, load_5, load_15                         load average (collector ``load``)
    swap_used_percent, swap_used_bytes              swap in use (collector ``swap``)

The original setup guide's fields come first, exactly as they always were, whatever the
collectors' switches say. Then one sample per series of the tagged families
(:mod:`monitor.catalog`), each family sorted by its tag value:

- ``filesystem`` (tag ``mount``): ``filesystem_used_percent`` as df computes it, used / (used +
  available), where used = total - free; ``filesystem_free_bytes``, the space available to
  unprivileged users (``f_bavail``); ``filesystem_total_bytes``; ``filesystem_inodes_used_percent``
  (0 on filesystems without inode counts: btrfs, vfat). One ``statvfs`` per mount gives all four.
  Mounts come from the whole mount table (``psutil.disk_partitions(all=True)``; mount points
  that are not directories, such as a container's bind-mounted ``/etc/hosts``, left out), minus
  the types in ``filesystem_exclude_types`` (pseudo filesystems, tmpfs, overlay, squashfs, and
  network filesystems, whose ``statvfs`` blocks while their server is away) and, as df does,
  filesystems of zero size. The type list alone decides: a container's overlay ``/`` is sampled
  once ``overlay`` is taken off the list. Bind mounts are
  deduplicated: a device mounted at several places is reported once, at its shortest mount
  point (``/`` rather than ``/srv/chroot/etc``; in a container, the host disk's bind-mounted
  ``/etc/hosts`` counts once); the same space would otherwise be counted — and alerted — twice.
- ``disk`` (tag ``device``): ``disk_read_bytes_per_s``, ``disk_write_bytes_per_s`` and
  ``disk_busy_percent`` (the device's busy time over the elapsed time, 0-100) per whole disk:
  only the names ``/sys/block`` lists (no partitions), ``loop*`` and ``ram*`` excluded by default.
- ``network`` (tag ``interface``): ``network_sent_bytes_per_s``, ``network_recv_bytes_per_s``,
  ``network_errors_in_per_s``, ``network_errors_out_per_s``, ``network_drops_in_per_s``,
  ``network_drops_out_per_s``; ``lo`` and virtual interfaces (veth, docker, bridges...) excluded
  by default.

Names are chosen by include/exclude glob patterns (:mod:`fnmatch`, case-sensitive): a name is
kept when it matches an include pattern (or the include list is empty) and no exclude pattern.
A tag value the line protocol cannot carry unchanged (a backslash or control character in a
mount point) is skipped. Each collector can be switched off (:class:`CollectorsConfig`).

CPU percent comes from deltas of cumulative CPU times between two samples: busy = total - idle -
iowait, divided by the total, clamped to 0..100 (the kernel's idle/iowait counters can step back a
little; that never shows as a negative value). Disk and network rates are counter deltas divided by
the real elapsed time between the two samples (``now_s`` minus the previous ``now_s``).

Counter resets and wraps. Cumulative counters can go down: a NIC is reset or re-created, a 32-bit
counter wraps, a disk disappears and the sum over disks shrinks. A counter that decreased is
treated as a reset and contributes 0 for that interval (it is impossible to know how much moved
between the last reading and the reset, and a guess could be absurdly large). Counters are compared
per device: a device that appears contributes 0 in its first interval (its counters are lifetime
totals, not this interval's traffic; its own series reports 0 rates that interval) and a device
that vanished contributes nothing (its series is absent). A core that appears (CPU hotplug) reports
0 in its first interval. If no time elapsed, rates are 0. A mount that vanished is absent; one
whose ``statvfs`` fails between listing and reading (unmounted meanwhile, a dead NFS server
answering EIO) is skipped for that tick; a collector that cannot read at all (no /sys/block, no
/proc/diskstats in a container) reports no series. No collector ever fails the tick.

Timestamps and precision. A sample is stamped with its tick's time in integer milliseconds
(:mod:`monitor.ticker`), on exact multiples of the interval; values are rounded to 2 decimals.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from monitor.config import CollectorsConfig
from monitor.lineprotocol import Sample, text_problem

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


class SwapUsage(NamedTuple):
    used_percent: float
    used_bytes: int


class Mount(NamedTuple):
    """One line of the mount table: what is mounted (a device path), where, and its type."""

    device: str
    mountpoint: str
    fstype: str


class FsUsage(NamedTuple):
    """A filesystem's ``statvfs``, in bytes and inodes."""

    total_bytes: int  # f_blocks * f_frsize
    free_bytes: int  # f_bfree * f_frsize: free, including the blocks reserved for root
    avail_bytes: int  # f_bavail * f_frsize: available to unprivileged users
    inodes_total: int  # f_files
    inodes_free: int  # f_ffree


class DiskCounters(NamedTuple):
    """Cumulative counters of one block device."""

    read_bytes: int
    write_bytes: int
    busy_ms: int  # time spent doing I/O (/proc/diskstats io_ticks)


class NicCounters(NamedTuple):
    """Cumulative counters of one network interface."""

    sent_bytes: int
    recv_bytes: int
    errin: int
    errout: int
    dropin: int
    dropout: int


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

    def load_average(self) -> tuple[float, float, float]: ...

    def swap(self) -> SwapUsage: ...

    def mounts(self) -> Sequence[Mount]:
        """Every mounted filesystem whose mount point is a directory; [] when unknown."""
        ...

    def fs_usage(self, mountpoint: str) -> FsUsage:
        """The filesystem's usage; raises OSError when it cannot be read (unmounted meanwhile)."""
        ...

    def whole_disks(self) -> frozenset[str]:
        """Names of whole block devices (``/sys/block``), not partitions; empty when unknown."""
        ...

    def disk_counters(self) -> Mapping[str, DiskCounters]:
        """Per block device, partitions included; {} when unknown."""
        ...

    def nic_counters(self) -> Mapping[str, NicCounters]:
        """Per network interface, loopback included."""
        ...


class PsutilStats:
    """:class:`SystemStats` backed by psutil, the only place the package imports psutil."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._mount_table = ""  # /proc/self/mounts as last parsed
        self._mounts: list[Mount] = []

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

    def load_average(self) -> tuple[float, float, float]:
        one, five, fifteen = self._psutil.getloadavg()
        return float(one), float(five), float(fifteen)

    def swap(self) -> SwapUsage:
        # /proc/meminfo's two lines, as psutil computes them (used = total - free), without the
        # /proc/vmstat read psutil adds for swap-in/out counts nobody here uses.
        try:
            with open("/proc/meminfo", "rb") as fh:
                kib = {k: int(v) for k, v, *_ in (ln.split() for ln in fh) if k.startswith(b"Swap")}
            total, free = kib[b"SwapTotal:"] * 1024, kib[b"SwapFree:"] * 1024
        except (OSError, KeyError, ValueError):
            swap = self._psutil.swap_memory()
            return SwapUsage(float(swap.percent), int(swap.used))
        used = total - free
        return SwapUsage(used / total * 100.0 if total > 0 else 0.0, used)

    def mounts(self) -> Sequence[Mount]:
        # psutil parses the mount table and /proc/filesystems; that is done again only when the
        # table changed (one read of /proc/self/mounts a tick tells).
        try:
            with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
                table = fh.read()
        except OSError:
            table = ""  # not Linux: ask psutil every tick
        if table and table == self._mount_table:
            return self._mounts
        try:
            parts = self._psutil.disk_partitions(all=True)
        except OSError:
            return []
        # all=True: the type list decides what is a real filesystem, not psutil's "backed by a
        # device" rule (which drops an overlay / even when the user asked for it).
        mounts = [Mount(p.device, p.mountpoint, p.fstype) for p in parts if os.path.isdir(p.mountpoint)]
        self._mount_table, self._mounts = table, mounts
        return self._mounts

    def fs_usage(self, mountpoint: str) -> FsUsage:
        st = os.statvfs(mountpoint)
        size = st.f_frsize
        return FsUsage(st.f_blocks * size, st.f_bfree * size, st.f_bavail * size, st.f_files, st.f_ffree)

    def whole_disks(self) -> frozenset[str]:
        try:
            # /sys/block/<name> uses "!" where the device name has "/" (cciss!c0d0).
            return frozenset(name.replace("!", "/") for name in os.listdir("/sys/block"))
        except OSError:
            return frozenset()

    def disk_counters(self) -> Mapping[str, DiskCounters]:
        # nowrap=False: the collector handles a counter that went down itself (psutil's wrap
        # bookkeeping is a third of the cost of this call).
        counters = self._psutil.disk_io_counters(perdisk=True, nowrap=False)
        if not counters:
            return {}
        return {
            name: DiskCounters(c.read_bytes, c.write_bytes, getattr(c, "busy_time", 0))
            for name, c in counters.items()
        }

    def nic_counters(self) -> Mapping[str, NicCounters]:
        nics = self._psutil.net_io_counters(pernic=True, nowrap=False)
        return {
            name: NicCounters(c.bytes_sent, c.bytes_recv, c.errin, c.errout, c.dropin, c.dropout)
            for name, c in nics.items()
        }


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
    block: Mapping[str, DiskCounters]  # whole disks the disk collector keeps
    interfaces: Mapping[str, NicCounters]  # interfaces the network collector keeps


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


class _Chooser:
    """Whether a name is kept: it matches an include pattern (or there is none) and no exclude one.

    Answers are remembered per name (the same few names come every tick).
    """

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self._include = tuple(include)
        self._exclude = tuple(exclude)
        self._known: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        kept = self._known.get(name)
        if kept is None:
            kept = (
                not self._include or any(fnmatch.fnmatchcase(name, p) for p in self._include)
            ) and not any(fnmatch.fnmatchcase(name, p) for p in self._exclude)
            kept = kept and text_problem(name) is None
            if len(self._known) < 10_000:  # names churn (veth pairs): keep the memo bounded
                self._known[name] = kept
        return kept


def _rate(before: int, after: int, elapsed_s: float) -> float:
    """Per second; a counter that went down (reset, wrap) contributes 0."""
    return round(max(0, after - before) / elapsed_s, 2) if elapsed_s > 0 else 0.0


def _used_percent(used: int, of: int) -> float:
    return _percent(used / of * 100.0) if of > 0 else 0.0


class Collector:
    """Turns two readings of cumulative counters into the tick's :class:`Sample` list (host first)."""

    def __init__(
        self, host: str, stats: SystemStats | None = None, config: CollectorsConfig | None = None
    ) -> None:
        self.host = host
        self._stats: SystemStats = stats if stats is not None else PsutilStats()
        self.config = c = config if config is not None else CollectorsConfig()
        self._previous: _Reading | None = None
        self._names: list[str] = []  # cpu_usage_1 .. cpu_usage_N, built once, not per tick
        self._fs_types = _Chooser((), c.filesystem_exclude_types)
        self._mounts = _Chooser(c.filesystem_include, c.filesystem_exclude)
        self._disks = _Chooser(c.disk_include, c.disk_exclude)
        self._nics = _Chooser(c.network_include, c.network_exclude)

    def _core_names(self, n: int) -> list[str]:
        if len(self._names) != n:
            self._names = [f"cpu_usage_{i + 1}" for i in range(n)]
        return self._names

    def _read(self, now_s: float) -> _Reading:
        s, c = self._stats, self.config
        block: Mapping[str, DiskCounters] = {}
        if c.disk:
            whole = s.whole_disks()
            block = {n: v for n, v in _safely(s.disk_counters, {}).items() if n in whole and self._disks(n)}
        interfaces: Mapping[str, NicCounters] = {}
        if c.network:
            interfaces = {n: v for n, v in _safely(s.nic_counters, {}).items() if self._nics(n)}
        return _Reading(
            now_s,
            s.cpu_times(),
            list(s.cpu_times_per_core()),
            s.disk_bytes(),
            s.net_bytes(),
            block,
            interfaces,
        )

    def prime(self, now_s: float) -> None:
        """Take the first counters; the next :meth:`sample` reports rates since this moment."""
        self._previous = self._read(now_s)

    def sample(self, ts_ms: int, now_s: float) -> list[Sample]:
        """The tick's samples: the host's first, then filesystems, disks, interfaces (each sorted).

        Rates and percents over ``now_s`` minus the previous ``now_s``, stamped ``ts_ms``. Without
        a previous reading (no :meth:`prime`), CPU and rates are 0 for this one tick.
        """
        current = self._read(now_s)
        previous = self._previous or current
        self._previous = current
        elapsed_s = current.now_s - previous.now_s
        samples = [Sample(ts_ms, self.host, self._host_fields(previous, current, elapsed_s))]
        if self.config.filesystem:
            samples.extend(self._filesystems(ts_ms))
        for name in sorted(current.block):
            now, old = current.block[name], previous.block.get(name, current.block[name])
            busy = (now.busy_ms - old.busy_ms) / (elapsed_s * 10.0) if elapsed_s > 0 else 0.0
            fields = {
                "disk_read_bytes_per_s": _rate(old.read_bytes, now.read_bytes, elapsed_s),
                "disk_write_bytes_per_s": _rate(old.write_bytes, now.write_bytes, elapsed_s),
                "disk_busy_percent": _percent(busy),
            }
            samples.append(Sample(ts_ms, self.host, fields, (("device", name),), "disk"))
        for name in sorted(current.interfaces):
            n, o = current.interfaces[name], previous.interfaces.get(name, current.interfaces[name])
            fields = {
                "network_sent_bytes_per_s": _rate(o.sent_bytes, n.sent_bytes, elapsed_s),
                "network_recv_bytes_per_s": _rate(o.recv_bytes, n.recv_bytes, elapsed_s),
                "network_errors_in_per_s": _rate(o.errin, n.errin, elapsed_s),
                "network_errors_out_per_s": _rate(o.errout, n.errout, elapsed_s),
                "network_drops_in_per_s": _rate(o.dropin, n.dropin, elapsed_s),
                "network_drops_out_per_s": _rate(o.dropout, n.dropout, elapsed_s),
            }
            samples.append(Sample(ts_ms, self.host, fields, (("interface", name),), "network"))
        return samples

    def _host_fields(self, previous: _Reading, current: _Reading, elapsed_s: float) -> dict[str, float]:
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
        if self.config.load:
            load = _safely(self._stats.load_average, None)
            if load is not None:
                fields["load_1"], fields["load_5"], fields["load_15"] = (round(v, 2) for v in load)
        if self.config.swap:
            swap = _safely(self._stats.swap, None)
            if swap is not None:
                fields["swap_used_percent"] = _percent(swap.used_percent)
                fields["swap_used_bytes"] = float(swap.used_bytes)
        return fields

    def _filesystems(self, ts_ms: int) -> list[Sample]:
        """One sample per kept mount; a device mounted more than once counts at its shortest mount point."""
        chosen: dict[str, Mount] = {}
        for m in _safely(self._stats.mounts, []):
            if not self._fs_types(m.fstype) or not self._mounts(m.mountpoint):
                continue
            seen = chosen.get(m.device)
            if seen is None or (len(m.mountpoint), m.mountpoint) < (len(seen.mountpoint), seen.mountpoint):
                chosen[m.device] = m
        samples = []
        for m in sorted(chosen.values(), key=lambda m: m.mountpoint):
            try:
                u = self._stats.fs_usage(m.mountpoint)
            except OSError as exc:
                log.debug("skipping %s this tick: %s", m.mountpoint, exc)
                continue
            if u.total_bytes <= 0:
                continue  # a pseudo filesystem the type list does not know (df hides these too)
            used = u.total_bytes - u.free_bytes
            fields = {
                "filesystem_used_percent": _used_percent(used, used + u.avail_bytes),
                "filesystem_free_bytes": float(u.avail_bytes),
                "filesystem_total_bytes": float(u.total_bytes),
                "filesystem_inodes_used_percent": _used_percent(
                    u.inodes_total - u.inodes_free, u.inodes_total
                ),
            }
            samples.append(Sample(ts_ms, self.host, fields, (("mount", m.mountpoint),), "filesystem"))
        return samples


def _safely(read: Callable[[], Any], fallback: Any) -> Any:
    """READ(), or FALLBACK when the OS refuses (a container without /proc/diskstats, ...)."""
    try:
        return read()
    except (OSError, RuntimeError, NotImplementedError) as exc:
        log.debug("%s failed: %s", getattr(read, "__name__", read), exc)
        return fallback
