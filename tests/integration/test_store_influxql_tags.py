"""The InfluxQL store reads tagged families (filesystem, disk, network) from real InfluxDB 1.6.7.

Samples are written as the agent writes them: line protocol from :func:`monitor.lineprotocol.encode`,
one measurement per family, a series per (host, mount/device/interface).
"""

from __future__ import annotations

import pytest

from monitor.api.stores import Aggregate, HostSeen, MetricInfo, Query, Series
from monitor.api.stores.influxql import InfluxQLStore
from monitor.errors import QueryFailed
from monitor.lineprotocol import Sample, encode
from tests.integration.test_store_influxql import INJECTIONS, T0, write

pytestmark = pytest.mark.integration

FS = ("filesystem_used_percent", "filesystem_free_bytes")
SAMPLES = [
    Sample(T0, "a", {"cpu_usage_overall": 10.0, "load_1": 0.5}),
    Sample(
        T0,
        "a",
        {"filesystem_used_percent": 40.0, "filesystem_free_bytes": 6e9},
        (("mount", "/"),),
        "filesystem",
    ),
    Sample(
        T0,
        "a",
        {"filesystem_used_percent": 91.0, "filesystem_free_bytes": 1e8},
        (("mount", "/var lib,x=y"),),
        "filesystem",
    ),
    Sample(T0 + 1000, "a", {"filesystem_used_percent": 42.0}, (("mount", "/"),), "filesystem"),
    Sample(
        T0 + 1000,
        "b",
        {"filesystem_used_percent": 70.0, "filesystem_free_bytes": 3e9},
        (("mount", "/"),),
        "filesystem",
    ),
    Sample(T0 + 2000, "b", {"disk_read_bytes_per_s": 100.0}, (("device", "sda"),), "disk"),
    Sample(T0 + 2000, "b", {"disk_read_bytes_per_s": 300.0}, (("device", "nvme0n1"),), "disk"),
    Sample(T0 + 3000, "c", {"network_sent_bytes_per_s": 5.0}, (("interface", "eth0"),), "network"),
]


@pytest.fixture
def store(influxdb1, influx_db) -> InfluxQLStore:
    write(influxdb1.url, influx_db, [encode(s, "system") for s in SAMPLES])
    return InfluxQLStore(influxdb1.url, influx_db, timeout_s=5)


def test_one_series_per_host_and_mount_sorted_by_host_then_tags(store):
    assert store.rows(Query(FS, T0, T0 + 60_000)) == [
        Series("a", [(T0, [40.0, 6e9]), (T0 + 1000, [42.0, None])], (("mount", "/"),)),
        Series("a", [(T0, [91.0, 1e8])], (("mount", "/var lib,x=y"),)),
        Series("b", [(T0 + 1000, [70.0, 3e9])], (("mount", "/"),)),
    ]


def test_a_tag_filter_picks_one_series_exactly(store):
    only = Query(FS, T0, T0 + 60_000, "a", (("mount", "/var lib,x=y"),))
    assert store.rows(only) == [Series("a", [(T0, [91.0, 1e8])], (("mount", "/var lib,x=y"),))]
    assert store.counts(Query(FS, T0, T0 + 60_000, tags=(("mount", "/"),))) == {
        ("a", (("mount", "/"),)): 2,
        ("b", (("mount", "/"),)): 1,
    }


def test_buckets_per_series(store):
    rows = store.rows(Query(("filesystem_used_percent",), T0, T0 + 60_000, "a"), step_ms=10_000)
    assert rows == [
        Series("a", [(T0, [41.0])], (("mount", "/"),)),
        Series("a", [(T0, [91.0])], (("mount", "/var lib,x=y"),)),
    ]


def test_aggregates_pool_every_series_and_name_the_one_a_selector_picked(store):
    agg = store.aggregate("filesystem_used_percent", "max", T0, T0 + 60_000, None)
    assert agg == Aggregate(91.0, 4, 2, "a", (("mount", "/var lib,x=y"),))
    mean = store.aggregate("filesystem_used_percent", "mean", T0, T0 + 60_000, None, tags=(("mount", "/"),))
    assert mean == Aggregate((40.0 + 42.0 + 70.0) / 3, 3, 2)
    last = store.aggregate("disk_read_bytes_per_s", "last", T0, T0 + 60_000, "b")
    # a timestamp tie: the larger value wins (InfluxDB's rule), whichever device holds it
    assert last == Aggregate(300.0, 2, 1, "b", (("device", "nvme0n1"),))
    assert store.aggregate(
        "filesystem_used_percent", "count", T0, T0 + 60_000, "a", tags=(("mount", "/home"),)
    ) == Aggregate(0.0, 0)


def test_the_host_family_reads_as_before(store):
    assert store.rows(Query(("cpu_usage_overall", "load_1"), T0, T0 + 60_000)) == [
        Series("a", [(T0, [10.0, 0.5])])
    ]
    assert store.counts(Query(("cpu_usage_overall",), T0, T0 + 60_000)) == {("a", ()): 1}


def test_describe_names_every_metric_with_its_family_and_tag_values(store):
    assert store.describe() == [
        MetricInfo("cpu_usage_overall", "host", {}),
        MetricInfo("load_1", "host", {}),
        MetricInfo("filesystem_used_percent", "filesystem", {"mount": ["/", "/var lib,x=y"]}),
        MetricInfo("filesystem_free_bytes", "filesystem", {"mount": ["/", "/var lib,x=y"]}),
        MetricInfo("disk_read_bytes_per_s", "disk", {"device": ["nvme0n1", "sda"]}),
        MetricInfo("network_sent_bytes_per_s", "network", {"interface": ["eth0"]}),
    ]
    assert store.names() == [m.name for m in store.describe()]


def test_hosts_with_their_newest_sample_over_every_family(store):
    assert store.hosts() == [HostSeen("a", T0 + 1000), HostSeen("b", T0 + 2000), HostSeen("c", T0 + 3000)]


def test_an_empty_database_describes_nothing(influxdb1):
    store = InfluxQLStore(influxdb1.url, "never_created_tags")
    assert store.describe() == [] and store.hosts() == []


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_attempts_in_a_tag_value_match_nothing_and_change_nothing(store, value):
    query = Query(FS, T0, T0 + 60_000, tags=(("mount", value),))
    assert store.rows(query) == [] and store.counts(query) == {}
    assert store.aggregate(
        "filesystem_used_percent", "count", T0, T0 + 60_000, None, tags=query.tags
    ) == Aggregate(0.0, 0)
    assert store.aggregate("filesystem_used_percent", "count", T0, T0 + 60_000, None).samples == 4


@pytest.mark.parametrize("key", ["device", "host", "mount\" = '/' OR \"x", "time"])
def test_tag_keys_outside_the_family_never_reach_the_database(store, key):
    with pytest.raises(QueryFailed, match="not a tag of the filesystem family"):
        store.rows(Query(FS, T0, T0 + 60_000, tags=((key, "/"),)))


def test_a_query_mixing_families_is_refused(store):
    with pytest.raises(QueryFailed, match="more than one family"):
        store.rows(Query(("cpu_usage_overall", "filesystem_used_percent"), T0, T0 + 60_000))
