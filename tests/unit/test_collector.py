"""Collector: field names, percents from CPU-time deltas, rates over the real interval, resets."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from monitor.collector import Collector, CpuTimes, IoBytes, PsutilStats, SystemStats, _cpu
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


def _pair(stats: FakeStats, change, elapsed_s: float = 10.0):  # type: ignore[no-untyped-def]
    collector = Collector("web1", stats)
    collector.prime(100.0)
    change(stats)
    return collector.sample(1_700_000_010_000, 100.0 + elapsed_s).fields


def test_fake_stats_satisfy_the_protocol() -> None:
    stats: SystemStats = FakeStats()
    assert Collector("h", stats).host == "h"


def test_fields_are_exactly_the_original_names_with_every_core_one_based() -> None:
    stats = FakeStats(cores=[CpuTimes(0.0, 0.0)] * 5)
    collector = Collector("web1", stats)
    collector.prime(0.0)
    sample = collector.sample(10_000, 10.0)
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
    assert collector.sample(1000, 1.0).fields["network_sent"] == 0.0
    stats.nics = {"eth0": IoBytes(60, 10)}
    assert collector.sample(2000, 2.0).fields["network_sent"] == 50.0


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
    fields = Collector("h", stats).sample(0, 5.0).fields
    assert fields["cpu_usage_overall"] == 0.0
    assert fields["network_sent"] == 0.0
    assert fields["memory_usage"] == 12.0


def test_sample_encodes_to_line_protocol_with_the_tick_timestamp() -> None:
    stats = FakeStats(cores=[CpuTimes(0.0, 0.0)])
    collector = Collector("web 1", stats)
    collector.prime(0.0)
    stats.cpu = CpuTimes(3.0, 2.0)
    line = encode(collector.sample(1_700_000_010_000, 10.0), "system")
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
    fields = collector.sample(1000, 1.0).fields
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
