"""Collector: field names, percents from CPU-time deltas, rates over the real interval, resets."""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psutil
import pytest

from monitor.collector import (
    Collector,
    CpuTimes,
    DiskCounters,
    FsUsage,
    IoBytes,
    Mount,
    NicCounters,
    PsutilStats,
    SwapUsage,
    SystemStats,
    _cpu,
)
from monitor.config import CollectorsConfig
from monitor.lineprotocol import decode, encode


@dataclass
class FakeStats:
    """Counters the test sets by hand between samples."""

    cpu: CpuTimes = field(default_factory=lambda: CpuTimes(0.0, 0.0))
    cores: list[CpuTimes] = field(default_factory=lambda: [CpuTimes(0.0, 0.0), CpuTimes(0.0, 0.0)])
    memory: float = 0.0
    disks: dict[str, IoBytes] = field(default_factory=dict)
    nics: dict[str, IoBytes] = field(default_factory=dict)

    def cpu_times(self) -> CpuTimes:
        return self.cpu

    def cpu_times_per_core(self) -> Sequence[CpuTimes]:
        return list(self.cores)

    def memory_percent(self) -> float:
        return self.memory

    def disk_bytes(self) -> Mapping[str, IoBytes]:
        return dict(self.disks)

    def net_bytes(self) -> Mapping[str, IoBytes]:
        return dict(self.nics)

    load: tuple[float, float, float] = (0.5, 0.25, 0.125)
    swap_usage: SwapUsage = field(default_factory=lambda: SwapUsage(0.0, 0))
    mount_table: list[Mount] = field(default_factory=list)
    usage: dict[str, FsUsage | OSError] = field(default_factory=dict)
    whole: set[str] = field(default_factory=set)
    block: dict[str, DiskCounters] = field(default_factory=dict)
    interfaces: dict[str, NicCounters] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # methods that raise OSError (a bare container)

    def _check(self, name: str) -> None:
        if name in self.broken:
            raise OSError(2, f"{name}: No such file or directory")

    def load_average(self) -> tuple[float, float, float]:
        self._check("load_average")
        return self.load

    def swap(self) -> SwapUsage:
        self._check("swap")
        return self.swap_usage

    def mounts(self) -> Sequence[Mount]:
        self._check("mounts")
        return list(self.mount_table)

    def fs_usage(self, mountpoint: str) -> FsUsage:
        got = self.usage.get(mountpoint)
        if got is None:
            raise FileNotFoundError(2, "No such file or directory", mountpoint)
        if isinstance(got, OSError):
            raise got
        return got

    def whole_disks(self) -> frozenset[str]:
        return frozenset(self.whole)

    def disk_counters(self) -> Mapping[str, DiskCounters]:
        self._check("disk_counters")
        return dict(self.block)

    def nic_counters(self) -> Mapping[str, NicCounters]:
        self._check("nic_counters")
        return dict(self.interfaces)


def _pair(stats: FakeStats, change, elapsed_s: float = 10.0):  # type: ignore[no-untyped-def]
    collector = Collector("web1", stats)
    collector.prime(100.0)
    change(stats)
    return collector.sample(1_700_000_010_000, 100.0 + elapsed_s)[0].fields


def test_fake_stats_satisfy_the_protocol() -> None:
    stats: SystemStats = FakeStats()
    assert Collector("h", stats).host == "h"


def test_fields_are_exactly_the_original_names_with_every_core_one_based() -> None:
    stats = FakeStats(cores=[CpuTimes(0.0, 0.0)] * 5)
    collector = Collector("web1", stats)
    collector.prime(0.0)
    sample = collector.sample(10_000, 10.0)[0]
    assert list(sample.fields) == [
        "cpu_usage_overall",
        "cpu_usage_1",
        "cpu_usage_2",
        "cpu_usage_3",
        "cpu_usage_4",
        "cpu_usage_5",
        "memory_usage",
        "disk_read",
        "disk_write",
        "network_sent",
        "network_recv",
        "load_1",
        "load_5",
        "load_15",
        "swap_used_percent",
        "swap_used_bytes",
    ]
    assert sample.host == "web1"
    assert sample.ts_ms == 10_000


def test_cpu_percent_is_busy_share_of_total_time_excluding_idle_and_iowait() -> None:
    def change(s: FakeStats) -> None:
        # 100 s total: 60 idle, 15 iowait -> 25 % busy overall.
        s.cpu = CpuTimes(100.0, 60.0, 15.0)
        s.cores = [CpuTimes(50.0, 50.0), CpuTimes(50.0, 10.0, 15.0)]

    fields = _pair(FakeStats(), change)
    assert fields["cpu_usage_overall"] == 25.0
    assert fields["cpu_usage_1"] == 0.0
    assert fields["cpu_usage_2"] == 50.0


def test_cpu_percent_is_clamped_when_idle_counter_steps_back() -> None:
    def change(s: FakeStats) -> None:
        s.cpu = CpuTimes(10.0, -5.0)  # idle went down: busy would exceed total
        s.cores = [CpuTimes(10.0, 30.0), CpuTimes(0.0, 0.0)]  # idle grew more than total

    fields = _pair(FakeStats(cpu=CpuTimes(0.0, 0.0)), change)
    assert fields["cpu_usage_overall"] == 100.0
    assert fields["cpu_usage_1"] == 0.0
    assert fields["cpu_usage_2"] == 0.0  # no time passed on that core


def test_a_core_that_appears_reports_zero_in_its_first_interval() -> None:
    def change(s: FakeStats) -> None:
        s.cores = [CpuTimes(10.0, 5.0), CpuTimes(10.0, 5.0), CpuTimes(1e6, 0.0)]

    fields = _pair(FakeStats(), change)
    assert fields["cpu_usage_1"] == 50.0
    assert fields["cpu_usage_3"] == 0.0


def test_memory_percent_passes_through_clamped() -> None:
    assert _pair(FakeStats(), lambda s: setattr(s, "memory", 42.5))["memory_usage"] == 42.5
    assert _pair(FakeStats(), lambda s: setattr(s, "memory", 130.0))["memory_usage"] == 100.0


def test_disk_and_network_are_bytes_per_second_over_the_real_elapsed_time() -> None:
    stats = FakeStats(
        disks={"sda": IoBytes(1000, 2000), "sdb": IoBytes(0, 0)},
        nics={"eth0": IoBytes(500, 700), "eth1": IoBytes(0, 0)},
    )

    def change(s: FakeStats) -> None:
        s.disks = {"sda": IoBytes(1000 + 4000, 2000 + 8000), "sdb": IoBytes(4000, 0)}
        s.nics = {"eth0": IoBytes(500 + 2000, 700 + 3000), "eth1": IoBytes(6000, 1000)}

    fields = _pair(stats, change, elapsed_s=4.0)
    assert fields["disk_read"] == 2000.0  # (4000 + 4000) / 4 s
    assert fields["disk_write"] == 2000.0
    assert fields["network_sent"] == 2000.0  # (2000 + 6000) / 4 s
    assert fields["network_recv"] == 1000.0


def test_counter_that_goes_down_counts_as_reset_and_reports_zero_not_negative() -> None:
    stats = FakeStats(disks={"all": IoBytes(10**9, 10**9)}, nics={"eth0": IoBytes(2**32 - 10, 500)})

    def change(s: FakeStats) -> None:
        s.disks = {"all": IoBytes(5, 10**9 + 100)}  # read counter reset, write grew
        s.nics = {"eth0": IoBytes(20, 400)}  # 32-bit wrap on sent, reset on recv

    fields = _pair(stats, change, elapsed_s=10.0)
    assert fields["disk_read"] == 0.0
    assert fields["disk_write"] == 10.0
    assert fields["network_sent"] == 0.0
    assert fields["network_recv"] == 0.0


def test_nic_that_appears_or_vanishes_adds_no_spike_and_no_negative() -> None:
    stats = FakeStats(nics={"eth0": IoBytes(100, 100), "old0": IoBytes(10**12, 10**12)})

    def change(s: FakeStats) -> None:
        s.nics = {"eth0": IoBytes(200, 300), "new0": IoBytes(10**12, 10**12)}

    fields = _pair(stats, change, elapsed_s=1.0)
    assert fields["network_sent"] == 100.0
    assert fields["network_recv"] == 200.0


def test_the_next_interval_after_a_reset_measures_from_the_reset_value() -> None:
    stats = FakeStats(nics={"eth0": IoBytes(1000, 1000)})
    collector = Collector("h", stats)
    collector.prime(0.0)
    stats.nics = {"eth0": IoBytes(10, 10)}
    assert collector.sample(1000, 1.0)[0].fields["network_sent"] == 0.0
    stats.nics = {"eth0": IoBytes(60, 10)}
    assert collector.sample(2000, 2.0)[0].fields["network_sent"] == 50.0


def test_no_disk_counters_in_a_container_report_zero() -> None:
    fields = _pair(FakeStats(disks={}), lambda s: None)
    assert fields["disk_read"] == 0.0
    assert fields["disk_write"] == 0.0


def test_zero_or_negative_elapsed_time_reports_zero_rates() -> None:
    stats = FakeStats(nics={"eth0": IoBytes(0, 0)})
    fields = _pair(stats, lambda s: setattr(s, "nics", {"eth0": IoBytes(500, 500)}), elapsed_s=0.0)
    assert fields["network_sent"] == 0.0
    fields = _pair(stats, lambda s: setattr(s, "nics", {"eth0": IoBytes(900, 900)}), elapsed_s=-3.0)
    assert fields["network_recv"] == 0.0


def test_sample_without_prime_reports_zero_cpu_and_rates() -> None:
    stats = FakeStats(cpu=CpuTimes(500.0, 100.0), nics={"eth0": IoBytes(10**9, 10**9)}, memory=12.0)
    fields = Collector("h", stats).sample(0, 5.0)[0].fields
    assert fields["cpu_usage_overall"] == 0.0
    assert fields["network_sent"] == 0.0
    assert fields["memory_usage"] == 12.0


def test_sample_encodes_to_line_protocol_with_the_tick_timestamp() -> None:
    stats = FakeStats(cores=[CpuTimes(0.0, 0.0)])
    collector = Collector("web 1", stats)
    collector.prime(0.0)
    stats.cpu = CpuTimes(3.0, 2.0)
    line = encode(collector.sample(1_700_000_010_000, 10.0)[0], "system")
    measurement, back = decode(line)
    assert measurement == "system"
    assert back.host == "web 1"
    assert back.ts_ms == 1_700_000_010_000
    assert back.fields["cpu_usage_overall"] == pytest.approx(33.33)


def test_psutil_stats_reads_this_machine_without_loopback() -> None:
    stats = PsutilStats()
    cpu = stats.cpu_times()
    assert cpu.total_s >= cpu.idle_s >= 0
    assert len(stats.cpu_times_per_core()) >= 1
    assert 0.0 <= stats.memory_percent() <= 100.0
    assert "lo" not in stats.net_bytes()
    for io in [*stats.disk_bytes().values(), *stats.net_bytes().values()]:
        assert io.out_bytes >= 0
        assert io.in_bytes >= 0


def test_real_collector_produces_every_core_and_sane_ranges() -> None:
    collector = Collector("h")
    collector.prime(0.0)
    fields = collector.sample(1000, 1.0)[0].fields
    cores = [k for k in fields if k.startswith("cpu_usage_") and k != "cpu_usage_overall"]
    assert cores == [f"cpu_usage_{i}" for i in range(1, len(PsutilStats().cpu_times_per_core()) + 1)]
    for name, value in fields.items():
        assert value >= 0.0, name
        if name.startswith(("cpu", "memory")):
            assert value <= 100.0, name


def test_psutil_cpu_times_sum_every_state_but_guest_which_user_and_nice_already_hold() -> None:
    linux = namedtuple(  # the shape of psutil's scputimes on Linux
        "linux", "user nice system idle iowait irq softirq steal guest guest_nice"
    )
    other = namedtuple("other", "user system idle")  # a platform without iowait or guest
    assert _cpu(linux(10.0, 1.0, 5.0, 100.0, 4.0, 0.5, 0.5, 0.0, 3.0, 0.5)) == CpuTimes(121.0, 100.0, 4.0)
    assert _cpu(other(10.0, 5.0, 100.0)) == CpuTimes(115.0, 100.0, 0.0)


# -- load, swap, filesystems, disks, interfaces ---------------------------------------------

ALL_OFF = CollectorsConfig(load=False, swap=False, filesystem=False, disk=False, network=False)
GIB = 1024**3


def _series(samples, family: str) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    return {s.tags[0][1]: dict(s.fields) for s in samples if s.family == family}


def _ticks(stats: FakeStats, changes, config: CollectorsConfig | None = None):  # type: ignore[no-untyped-def]
    """Prime at 100 s, then one tick every 10 s after each change; the ticks' sample lists."""
    collector = Collector("web1", stats, config)
    collector.prime(100.0)
    out = []
    for i, change in enumerate(changes, 1):
        change(stats)
        out.append(collector.sample(1_700_000_000_000 + i * 10_000, 100.0 + i * 10.0))
    return out


def test_switched_off_collectors_leave_exactly_the_original_fields_and_one_sample() -> None:
    stats = FakeStats(
        mount_table=[Mount("/dev/vda", "/", "ext4")],
        usage={"/": FsUsage(10 * GIB, 4 * GIB, 3 * GIB, 100, 40)},
        whole={"vda"},
        block={"vda": DiskCounters(0, 0, 0)},
        interfaces={"eth0": NicCounters(0, 0, 0, 0, 0, 0)},
    )
    collector = Collector("web1", stats, ALL_OFF)
    collector.prime(0.0)
    samples = collector.sample(10_000, 10.0)
    assert len(samples) == 1
    assert list(samples[0].fields)[-4:] == ["disk_read", "disk_write", "network_sent", "network_recv"]


def test_load_and_swap_are_host_fields() -> None:
    stats = FakeStats(load=(1.234, 0.5, 0.25), swap_usage=SwapUsage(12.345, 512 * 1024**2))
    host = _ticks(stats, [lambda s: None])[0][0]
    assert host.family == "host" and host.tags == ()
    assert (host.fields["load_1"], host.fields["load_5"], host.fields["load_15"]) == (1.23, 0.5, 0.25)
    assert host.fields["swap_used_percent"] == 12.35
    assert host.fields["swap_used_bytes"] == 512 * 1024**2


def test_filesystem_used_percent_is_dfs_used_over_used_plus_available() -> None:
    # 10 GiB, 4 GiB free of which 3 GiB available (1 GiB reserved): used 6, df: 6 / (6 + 3).
    stats = FakeStats(
        mount_table=[Mount("/dev/vda", "/", "ext4")],
        usage={"/": FsUsage(10 * GIB, 4 * GIB, 3 * GIB, 1000, 250)},
    )
    fs = _series(_ticks(stats, [lambda s: None])[0], "filesystem")
    assert fs == {
        "/": {
            "filesystem_used_percent": 66.67,
            "filesystem_free_bytes": 3 * GIB,
            "filesystem_total_bytes": 10 * GIB,
            "filesystem_inodes_used_percent": 75.0,
        }
    }


def test_filesystems_without_inode_counts_report_zero_not_an_error() -> None:
    stats = FakeStats(
        mount_table=[Mount("/dev/sdb1", "/boot/efi", "vfat")],
        usage={"/boot/efi": FsUsage(512 * 2**20, 256 * 2**20, 256 * 2**20, 0, 0)},
    )
    fs = _series(_ticks(stats, [lambda s: None])[0], "filesystem")
    assert fs["/boot/efi"]["filesystem_used_percent"] == 50.0
    assert fs["/boot/efi"]["filesystem_inodes_used_percent"] == 0.0


def test_a_filesystem_of_zero_size_is_left_out_as_df_does() -> None:
    # A pseudo filesystem the type list does not name (a new kernel's) has no blocks at all.
    stats = FakeStats(
        mount_table=[Mount("/dev/vda", "/", "ext4"), Mount("none", "/sys/fs/newfs", "newfs")],
        usage={"/": FsUsage(10 * GIB, 5 * GIB, 5 * GIB, 10, 5), "/sys/fs/newfs": FsUsage(0, 0, 0, 0, 0)},
    )
    assert list(_series(_ticks(stats, [lambda s: None])[0], "filesystem")) == ["/"]


def test_pseudo_filesystems_are_excluded_and_bind_mounts_count_once_at_the_shortest_path() -> None:
    usage = FsUsage(10 * GIB, 5 * GIB, 5 * GIB, 10, 5)
    stats = FakeStats(
        mount_table=[
            Mount("/dev/vda", "/srv/chroot/etc", "ext4"),
            Mount("/dev/vda", "/", "ext4"),
            Mount("tmpfs", "/run", "tmpfs"),
            Mount("overlay", "/var/lib/containers/x", "overlay"),
            Mount("/dev/loop0", "/snap/core/1", "squashfs"),
            Mount("cgroup2", "/sys/fs/cgroup", "cgroup2"),
            Mount("nas:/export", "/mnt/nas", "nfs4"),  # network: its statvfs can hang
            Mount("/dev/vdb", "/data", "xfs"),
        ],
        usage=dict.fromkeys(
            [
                "/",
                "/srv/chroot/etc",
                "/run",
                "/var/lib/containers/x",
                "/snap/core/1",
                "/sys/fs/cgroup",
                "/mnt/nas",
                "/data",
            ],
            usage,
        ),
    )
    samples = _ticks(stats, [lambda s: None])[0]
    assert [s.tags for s in samples[1:]] == [(("mount", "/"),), (("mount", "/data"),)]


def test_mount_patterns_include_and_exclude() -> None:
    usage = FsUsage(10, 5, 5, 10, 5)
    table = [
        Mount(f"/dev/vd{c}", m, "ext4")
        for c, m in zip("abcd", ["/", "/data", "/data/scratch", "/home"], strict=True)
    ]
    stats = FakeStats(mount_table=table, usage={m.mountpoint: usage for m in table})
    config = CollectorsConfig(filesystem_include=("/", "/data*"), filesystem_exclude=("*/scratch",))
    assert sorted(_series(_ticks(stats, [lambda s: None], config)[0], "filesystem")) == ["/", "/data"]


def test_a_mount_that_vanishes_between_ticks_is_absent_and_one_failing_statvfs_is_skipped() -> None:
    usage = FsUsage(10 * GIB, 5 * GIB, 5 * GIB, 10, 5)
    stats = FakeStats(
        mount_table=[
            Mount("/dev/vda", "/", "ext4"),
            Mount("/dev/vdb", "/data", "xfs"),
            Mount("nas:/x", "/nfs", "nfs4"),
        ],
        usage={"/": usage, "/data": usage, "/nfs": usage},
    )

    def unmount_data(s: FakeStats) -> None:
        s.mount_table = [m for m in s.mount_table if m.mountpoint != "/data"]

    def nfs_dies(s: FakeStats) -> None:  # listed, but statvfs fails: EIO from a dead server
        s.usage["/nfs"] = OSError(5, "Input/output error")

    def unmounted_after_listing(s: FakeStats) -> None:  # still in the table, gone when read
        del s.usage["/"]

    # NFS is off the default type list (a hung server blocks statvfs); this host opted in.
    opted_in = CollectorsConfig(
        filesystem_exclude_types=tuple(t for t in CollectorsConfig().filesystem_exclude_types if t != "nfs4")
    )
    ticks = _ticks(stats, [lambda s: None, unmount_data, nfs_dies, unmounted_after_listing], opted_in)
    assert [sorted(_series(t, "filesystem")) for t in ticks] == [
        ["/", "/data", "/nfs"],
        ["/", "/nfs"],
        ["/"],
        [],
    ]
    assert all(t[0].family == "host" for t in ticks)  # the host sample is never lost


def test_disks_are_whole_disks_only_with_rates_and_busy_percent() -> None:
    stats = FakeStats(
        whole={"vda", "loop0", "ram0", "nvme0n1"},
        block={
            "vda": DiskCounters(1000, 2000, 100),
            "vda1": DiskCounters(1000, 2000, 100),
            "loop0": DiskCounters(0, 0, 0),
            "ram0": DiskCounters(0, 0, 0),
            "nvme0n1": DiskCounters(0, 0, 0),
        },
    )

    def work(s: FakeStats) -> None:
        s.block["vda"] = DiskCounters(11_000, 42_000, 2_600)  # 2.5 s busy of 10 s
        s.block["vda1"] = DiskCounters(11_000, 42_000, 2_600)
        s.block["nvme0n1"] = DiskCounters(0, 0, 20_000)  # busy more than elapsed: clamped

    disks = _series(_ticks(stats, [work])[0], "disk")
    assert disks == {
        "nvme0n1": {"disk_read_bytes_per_s": 0.0, "disk_write_bytes_per_s": 0.0, "disk_busy_percent": 100.0},
        "vda": {"disk_read_bytes_per_s": 1000.0, "disk_write_bytes_per_s": 4000.0, "disk_busy_percent": 25.0},
    }


def test_disk_reset_appearing_and_vanishing_devices() -> None:
    stats = FakeStats(whole={"sda", "sdb"}, block={"sda": DiskCounters(5000, 5000, 5000)})

    def reset_and_hotplug(s: FakeStats) -> None:
        s.block["sda"] = DiskCounters(100, 100, 10)  # went down: a reset
        s.block["sdb"] = DiskCounters(10**12, 10**12, 10**9)  # new: lifetime totals, not this interval

    def steady(s: FakeStats) -> None:
        s.block["sda"] = DiskCounters(1100, 100, 10)
        s.block["sdb"] = DiskCounters(10**12 + 500, 10**12, 10**9)

    def sdb_unplugged(s: FakeStats) -> None:
        del s.block["sdb"]
        s.whole.discard("sdb")

    ticks = _ticks(stats, [reset_and_hotplug, steady, sdb_unplugged])
    zero = {"disk_read_bytes_per_s": 0.0, "disk_write_bytes_per_s": 0.0, "disk_busy_percent": 0.0}
    assert _series(ticks[0], "disk") == {"sda": zero, "sdb": zero}
    assert _series(ticks[1], "disk")["sda"]["disk_read_bytes_per_s"] == 100.0
    assert _series(ticks[1], "disk")["sdb"]["disk_read_bytes_per_s"] == 50.0
    assert sorted(_series(ticks[2], "disk")) == ["sda"]


def test_disk_patterns() -> None:
    stats = FakeStats(
        whole={"sda", "sdb", "loop0"}, block={n: DiskCounters(0, 0, 0) for n in ["sda", "sdb", "loop0"]}
    )
    assert sorted(
        _series(
            _ticks(stats, [lambda s: None], CollectorsConfig(disk_include=("sd*",), disk_exclude=("sdb",)))[
                0
            ],
            "disk",
        )
    ) == ["sda"]
    assert sorted(_series(_ticks(stats, [lambda s: None], CollectorsConfig(disk_exclude=()))[0], "disk")) == [
        "loop0",
        "sda",
        "sdb",
    ]


def test_network_per_interface_rates_errors_and_drops_without_virtual_interfaces() -> None:
    names = [
        "lo",
        "eth0",
        "veth12ab",
        "docker0",
        "br-1234",
        "virbr0",
        "cni0",
        "flannel.1",
        "podman0",
        "wlan0",
    ]
    stats = FakeStats(interfaces={n: NicCounters(0, 0, 0, 0, 0, 0) for n in names})

    def traffic(s: FakeStats) -> None:
        s.interfaces["eth0"] = NicCounters(10_000, 20_000, 10, 20, 30, 40)

    nics = _series(_ticks(stats, [traffic])[0], "network")
    assert sorted(nics) == ["eth0", "wlan0"]
    assert nics["eth0"] == {
        "network_sent_bytes_per_s": 1000.0,
        "network_recv_bytes_per_s": 2000.0,
        "network_errors_in_per_s": 1.0,
        "network_errors_out_per_s": 2.0,
        "network_drops_in_per_s": 3.0,
        "network_drops_out_per_s": 4.0,
    }


def test_network_wrap_new_and_vanished_interfaces() -> None:
    stats = FakeStats(interfaces={"eth0": NicCounters(2**32 - 10, 500, 5, 5, 5, 5)})

    def wrap_and_new(s: FakeStats) -> None:
        s.interfaces["eth0"] = NicCounters(90, 600, 5, 5, 5, 5)  # sent wrapped: 0, recv grew
        s.interfaces["eth1"] = NicCounters(10**9, 10**9, 100, 100, 100, 100)

    def eth0_gone(s: FakeStats) -> None:
        del s.interfaces["eth0"]

    ticks = _ticks(stats, [wrap_and_new, eth0_gone])
    first = _series(ticks[0], "network")
    assert first["eth0"]["network_sent_bytes_per_s"] == 0.0
    assert first["eth0"]["network_recv_bytes_per_s"] == 10.0
    assert set(first["eth1"].values()) == {0.0}
    assert sorted(_series(ticks[1], "network")) == ["eth1"]


def test_network_patterns_replace_the_default_excludes() -> None:
    stats = FakeStats(interfaces={n: NicCounters(0, 0, 0, 0, 0, 0) for n in ["lo", "eth0", "eth1", "bond0"]})
    config = CollectorsConfig(network_include=("eth*", "lo"), network_exclude=("eth1",))
    assert sorted(_series(_ticks(stats, [lambda s: None], config)[0], "network")) == ["eth0", "lo"]


def test_a_bare_container_reports_what_exists_and_never_fails_the_tick() -> None:
    # One overlay root, no block devices, no /proc/diskstats, no swap, loadavg unreadable.
    stats = FakeStats(
        mount_table=[Mount("overlay", "/", "overlay")],
        usage={"/": FsUsage(10, 5, 5, 10, 5)},
        interfaces={"lo": NicCounters(0, 0, 0, 0, 0, 0), "eth0": NicCounters(0, 0, 0, 0, 0, 0)},
        broken={"disk_counters", "load_average"},
    )
    ticks = _ticks(stats, [lambda s: None])
    assert [(s.family, s.tags) for s in ticks[0]] == [("host", ()), ("network", (("interface", "eth0"),))]
    assert "load_1" not in ticks[0][0].fields
    assert ticks[0][0].fields["swap_used_percent"] == 0.0
    stats.broken = {"mounts", "nic_counters", "swap"}
    assert [s.family for s in _ticks(stats, [lambda s: None])[0]] == ["host"]


def test_a_containers_overlay_root_is_reported_once_overlay_is_off_the_type_list() -> None:
    mounts = [
        Mount("overlay", "/", "overlay"),
        Mount("proc", "/proc", "proc"),
        Mount("tmpfs", "/dev", "tmpfs"),
    ]
    usage = {m.mountpoint: FsUsage(10 * GIB, 5 * GIB, 5 * GIB, 10, 5) for m in mounts}

    def filesystems(config: CollectorsConfig) -> dict:
        stats = FakeStats(mount_table=mounts, usage=usage)
        return _series(_ticks(stats, [lambda s: None], config)[0], "filesystem")

    assert filesystems(CollectorsConfig()) == {}
    types = tuple(t for t in CollectorsConfig().filesystem_exclude_types if t != "overlay")
    fs = filesystems(CollectorsConfig(filesystem_exclude_types=types))
    assert list(fs) == ["/"]
    assert fs["/"]["filesystem_used_percent"] == 50.0


def test_psutil_stats_list_the_whole_mount_table_but_only_directories() -> None:
    # /proc is a nodev filesystem psutil's all=False would drop: its presence shows the type
    # list, not psutil, decides; a bind-mounted file (a container's /etc/hosts) is no mount here.
    mounts = PsutilStats().mounts()
    assert any(m.mountpoint == "/proc" and m.fstype == "proc" for m in mounts)
    assert mounts and all(os.path.isdir(m.mountpoint) for m in mounts)


def test_a_mount_point_the_line_protocol_cannot_carry_is_skipped() -> None:
    usage = FsUsage(10, 5, 5, 10, 5)
    stats = FakeStats(
        mount_table=[Mount("/dev/a", "/mnt/back\\slash", "ext4"), Mount("/dev/b", "/mnt/with space", "ext4")],
        usage={"/mnt/back\\slash": usage, "/mnt/with space": usage},
    )
    samples = _ticks(stats, [lambda s: None])[0]
    assert [s.tags for s in samples[1:]] == [(("mount", "/mnt/with space"),)]
    _, back = decode(encode(samples[1], "system"))
    assert back.tags == (("mount", "/mnt/with space"),) and back.family == "filesystem"


def test_psutil_stats_reads_the_new_counters_of_this_machine() -> None:
    stats = PsutilStats()
    assert all(v >= 0 for v in stats.load_average())
    swap, theirs = stats.swap(), psutil.swap_memory()  # read from /proc/meminfo as psutil does
    assert 0.0 <= swap.used_percent <= 100.0
    assert swap.used_bytes == pytest.approx(theirs.used, abs=max(theirs.total, 1) * 0.01)
    root = [m for m in stats.mounts() if m.mountpoint == "/"]
    usage = stats.fs_usage("/")
    assert usage.total_bytes >= usage.free_bytes >= usage.avail_bytes >= 0
    assert all(isinstance(n, str) for n in stats.whole_disks())
    assert "lo" in stats.nic_counters()
    assert root == [] or root[0].fstype
    with pytest.raises(OSError):
        stats.fs_usage("/nonexistent/hostmon-test")
