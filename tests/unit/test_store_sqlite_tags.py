"""The SQLite store reads tagged families (filesystem, disk, network) as the SQLite sink stores them.

The samples are the ones tests/integration/test_store_influxql_tags.py writes to InfluxDB 1.6.7,
here stored through the sink's own decoding (:func:`monitor.sinks.sqlite.to_rows`) of the lines
:func:`monitor.lineprotocol.encode` writes, one tick per spool row: the answers below are the
InfluxQL store's.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor import metricsdb
from monitor.api.stores import Aggregate, HostSeen, MetricInfo, Query, Series
from monitor.api.stores.sqlite import _SERIES_SQL, SQLiteStore
from monitor.errors import QueryFailed
from monitor.lineprotocol import encode
from monitor.sinks.sqlite import to_rows
from tests.integration.test_store_influxql import INJECTIONS, T0
from tests.integration.test_store_influxql_tags import FS, SAMPLES
from tests.store_helpers import write_rows


def store_lines(path: Path, lines: list[str]) -> None:
    rows, problems = to_rows(lines)
    assert not problems
    write_rows(path, rows)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    ticks: dict[tuple[int, str], list[str]] = {}
    for sample in SAMPLES:  # one spool row per (tick, host): its lines joined by newlines
        ticks.setdefault((sample.ts_ms, sample.host), []).append(encode(sample, "system"))
    store_lines(tmp_path / "m.db", ["\n".join(lines) for lines in ticks.values()])
    return SQLiteStore(tmp_path / "m.db")


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
    assert store.rows(Query(FS, T0, T0 + 60_000, "c", (("mount", "/"),))) == []


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


def test_an_empty_or_missing_store_describes_nothing(tmp_path):
    assert SQLiteStore(tmp_path / "absent.db").describe() == []
    assert SQLiteStore(tmp_path / "absent.db").hosts() == []
    sqlite3.connect(tmp_path / "empty.db").close()
    assert SQLiteStore(tmp_path / "empty.db").describe() == []
    assert SQLiteStore(tmp_path / "empty.db").hosts() == []


@pytest.mark.parametrize("value", [*INJECTIONS, "/,mount=/", "/\\", ""])
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


def test_a_tag_filter_on_the_host_family_is_refused(store):
    with pytest.raises(QueryFailed, match="not a tag of the host family"):
        store.rows(Query(("cpu_usage_overall",), T0, T0 + 60_000, tags=(("mount", "/"),)))


def test_a_query_mixing_families_is_refused(store):
    with pytest.raises(QueryFailed, match="more than one family"):
        store.rows(Query(("cpu_usage_overall", "filesystem_used_percent"), T0, T0 + 60_000))


def test_a_tag_filter_seeks_the_series_key(store):
    conn = metricsdb.connect(store.path)
    sql = _SERIES_SQL + " AND host = :host AND tags = :tags"
    params = {"metric": "filesystem_used_percent", "host": "a", "tags": "mount=/"}
    text = " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "SEARCH series USING INDEX sqlite_autoindex_series_1 (metric=? AND host=? AND tags=?)" in text
    conn.close()
