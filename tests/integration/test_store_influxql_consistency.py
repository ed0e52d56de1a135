"""Same data, same questions, same answers: the SQLite store and InfluxDB 1.6.7 (via InfluxQL).

Two hours of 1-second samples from two hosts (one with a core the other lacks, gaps, values
with many digits, timestamps off the second) are loaded into both; then a query set of raw
windows, epoch-aligned buckets, counts and every aggregate runs through both Store
implementations and through the API on top of each, and the answers are compared.
"""

from __future__ import annotations

import math
import random
import statistics
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from monitor import metricsdb, tiers
from monitor.api import make_app
from monitor.api.stores import AGGREGATES, Query, Series
from monitor.api.stores.influxql import InfluxQLStore
from monitor.api.stores.sqlite import SQLiteStore
from monitor.config import parse
from monitor.lineprotocol import Sample, encode
from monitor.sinks.sqlite import to_rows
from tests.store_helpers import write_rows
from tests.unit.test_api import call

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
HOURS = 2
NOW_S = (T0 + HOURS * 3_600_000) / 1000
ALL = ("cpu_usage_overall", "cpu_usage_1", "cpu_usage_2", "memory_usage", "disk_read", "network_recv")


def samples() -> list[Sample]:
    rnd = random.Random(42)
    out = []
    for i in range(HOURS * 3600):
        for host in ("a", "b"):
            if (i // 300) % 7 == 3 and host == "b":
                continue  # a five-minute gap every 35 minutes on host b
            fields = {m: rnd.uniform(0, 100) for m in ALL if not (m == "cpu_usage_2" and host == "b")}
            if i % 11 == 0:
                fields.pop("memory_usage")  # a field missing now and then
            out.append(Sample(T0 + i * 1000 + (i * 37) % 1000, host, fields))
    return out


@pytest.fixture(scope="module")
def stores(influxdb1, tmp_path_factory) -> tuple[SQLiteStore, InfluxQLStore]:
    data = samples()
    path = tmp_path_factory.mktemp("consistency") / "metrics.db"
    return load_both(influxdb1.url, "consistency", path, [encode(s, "system") for s in data])


def load_both(url: str, db: str, path: Path, rows: list[str]) -> tuple[SQLiteStore, InfluxQLStore]:
    """The same spool rows (one or more lines each) stored by the SQLite sink's decoding and
    written to InfluxDB."""
    stored, problems = to_rows(rows)
    assert not problems
    write_rows(path, stored)
    urllib.request.urlopen(
        urllib.request.Request(f"{url}/query?q=CREATE+DATABASE+{db}", method="POST")
    ).close()
    for i in range(0, len(rows), 5000):
        body = "\n".join(rows[i : i + 5000]).encode()
        req = urllib.request.Request(f"{url}/write?db={db}&precision=ms", data=body, method="POST")
        urllib.request.urlopen(req, timeout=30).close()
    return SQLiteStore(path), InfluxQLStore(url, db, timeout_s=30)


WINDOWS = [
    (T0, T0 + HOURS * 3_600_000),  # everything
    (T0 + 1234, T0 + 3_600_000 - 77),  # edges off every bucket boundary
    (T0 + 5_037, T0 + 5_037 + 1),  # one sample exactly at start: included
    (T0 + 4_000, T0 + 5_037),  # a sample exactly at end: excluded
    (T0 + 1_500_000, T0 + 2_100_000),  # across one of b's gaps
    (T0 - 3_600_000, T0),  # before any data
]
METRIC_SETS = [ALL, ("cpu_usage_2",), ("memory_usage", "disk_read")]
HOSTS = [None, "a", "b", "nobody"]
STEPS = [None, 1000, 7000, 60_000, 3_600_000, 86_400_000]


def assert_same_series(left: list[Series], right: list[Series]) -> None:
    assert [(s.host, s.tags) for s in left] == [(s.host, s.tags) for s in right]
    for a, b in zip(left, right, strict=True):
        assert [ts for ts, _ in a.rows] == [ts for ts, _ in b.rows], a.host
        for (ts, va), (_, vb) in zip(a.rows, b.rows, strict=True):
            assert same(va, vb), (a.host, ts, va, vb)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("metrics", METRIC_SETS)
@pytest.mark.parametrize("host", HOSTS)
def test_counts_and_rows_match(stores, window, metrics, host):
    sqlite, influx = stores
    query = Query(metrics, *window, host)
    assert sqlite.counts(query) == influx.counts(query)
    for step in STEPS:
        assert_same_series(sqlite.rows(query, step), influx.rows(query, step))


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("metrics", METRIC_SETS)
@pytest.mark.parametrize("host", HOSTS)
def test_one_raw_read_gives_the_same_counts_and_rows_or_declines_a_window_over_the_cap(
    stores, window, metrics, host
):
    sqlite, influx = stores
    query = Query(metrics, *window, host)
    counts = sqlite.counts(query)
    for max_points in (10, 3599, 7200, 20_000):
        read = influx.raw_window(query, max_points)
        if read is None:
            assert sum(counts.values()) > max_points, max_points
        else:
            assert read[0] == counts, max_points
            assert_same_series(read[1], sqlite.rows(query))


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("fn", AGGREGATES)
def test_aggregates_match(stores, window, host, fn):
    sqlite, influx = stores
    for metric in ("cpu_usage_overall", "cpu_usage_2", "memory_usage"):
        a = sqlite.aggregate(metric, fn, *window, host)
        b = influx.aggregate(metric, fn, *window, host)
        assert (a.samples, a.hosts, a.value_host) == (b.samples, b.hosts, b.value_host), (metric, fn)
        assert same(a.value, b.value), (metric, fn, a.value, b.value)


@pytest.mark.parametrize("fn", AGGREGATES)
def test_without_a_host_both_stores_pool_every_host_and_name_the_selected_one(stores, fn):
    window = (T0, T0 + HOURS * 3_600_000)
    for store in stores:
        pooled = store.aggregate("cpu_usage_overall", fn, *window, None)
        a, b = (store.aggregate("cpu_usage_overall", fn, *window, h) for h in ("a", "b"))
        assert pooled.samples == a.samples + b.samples and pooled.hosts == 2, store.name
        if fn == "count":
            assert pooled.value == a.value + b.value
        elif fn == "mean":
            assert same(pooled.value, (a.value * a.samples + b.value * b.samples) / pooled.samples)
        else:
            pick = {"min": min, "max": max, "last": max}[fn]
            keyed = {"a": a, "b": b}
            assert pooled.value_host in keyed and pooled.value == keyed[pooled.value_host].value
            if fn != "last":
                assert pooled.value == pick(a.value, b.value)


def test_names_match(stores):
    sqlite, influx = stores
    assert sqlite.names() == influx.names() == ["cpu_usage_overall", "cpu_usage_1", "cpu_usage_2", *ALL[3:]]


def apps(stores, tmp_path, max_points: int = 1000) -> list[Any]:
    config = parse({"agent": {"state_dir": str(tmp_path)}, "api": {"max_points": max_points}}, environ={})
    return [make_app(config, store, clock=lambda: NOW_S, spool_status=lambda: None) for store in stores]


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "store"}


@pytest.mark.parametrize(
    "target",
    [
        "/metrics?start=120&end=100",
        "/metrics?start=100&end=92&host=a",  # fits the cap: one raw read on InfluxDB
        "/metrics?start=119&end=115&metrics=memory_usage,disk_read",  # fits; memory_usage sparse
        "/metrics?start=60&end=51&metrics=cpu_usage_2,disk_read",  # fits per host, not in all
        "/metrics?start=120&end=0&metrics=cpu_usage_2,disk_read",  # over the cap: downsampled
        "/metrics?start=61.5&end=33.3&step=90&host=b",
        "/metrics/names",
        *(f"/metrics/aggregate?metric=memory_usage&start=100&end=7.7&fn={fn}" for fn in AGGREGATES),
    ],
)
def test_the_api_answers_the_same_on_both_stores(stores, tmp_path, target):
    sqlite_app, influx_app = apps(stores, tmp_path)
    left, right = call(sqlite_app, target).json(), call(influx_app, target).json()
    left.pop("store", None), right.pop("store", None)
    assert left.get("series", left.get("metrics", left.get("value"))), left  # not vacuously equal
    assert same(left, right)


def same(a: Any, b: Any) -> bool:
    """Equal, with floats compared to 12 significant digits (summation order differs)."""
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("window", [(120, 0), (90.25, 45.5), (5, 4.99), (61, 59)])
def test_aggregate_mean_equals_the_mean_of_the_raw_samples_on_influxdb(stores, tmp_path, window):
    _, influx_app = apps(stores, tmp_path, max_points=20_000)
    start, end = window
    raw = call(influx_app, f"/metrics?start={start}&end={end}&metrics=cpu_usage_1").json()
    agg = call(influx_app, f"/metrics/aggregate?metric=cpu_usage_1&start={start}&end={end}").json()
    assert not raw["downsampled"]
    values = [p["cpu_usage_1"] for s in raw["series"] for p in s["points"]]
    assert agg["samples"] == len(values) > 0
    assert agg["value"] == pytest.approx(statistics.fmean(values), rel=1e-12)


# Tagged families: 30 minutes of ticks as the agent spools them (the host line, then a line per
# mount, device and interface, joined by newlines), with a mount that vanishes and one whose
# name needs line-protocol escapes.
TAGGED_S = 1800
FS = ("filesystem_used_percent", "filesystem_free_bytes")
MOUNTS = {"a": ("/", "/var lib,x=y", "/mnt/usb"), "b": ("/",)}


def ticks() -> list[str]:
    rnd = random.Random(7)
    out = []
    for i in range(TAGGED_S):
        for host, mounts in MOUNTS.items():
            ts = T0 + i * 1000 + (i * 37) % 1000
            lines = [encode(Sample(ts, host, {"cpu_usage_overall": rnd.uniform(0, 100)}), "system")]
            for mount in mounts:
                if mount == "/mnt/usb" and i >= TAGGED_S // 3:
                    continue  # unplugged a third of the way in
                fields = {
                    "filesystem_used_percent": rnd.uniform(0, 100),
                    "filesystem_free_bytes": rnd.uniform(0, 1e12),
                }
                if i % 13 == 0:
                    fields.pop("filesystem_free_bytes")
                lines.append(encode(Sample(ts, host, fields, (("mount", mount),), "filesystem"), "system"))
            for device in ("sda", "nvme0n1") if host == "b" else ("sda",):
                disk = Sample(
                    ts, host, {"disk_busy_percent": rnd.uniform(0, 100)}, (("device", device),), "disk"
                )
                lines.append(encode(disk, "system"))
            out.append("\n".join(lines))
    return out


@pytest.fixture(scope="module")
def tagged(influxdb1, tmp_path_factory) -> tuple[SQLiteStore, InfluxQLStore]:
    path = tmp_path_factory.mktemp("consistency_tags") / "metrics.db"
    return load_both(influxdb1.url, "consistency_tags", path, ticks())


TAGGED_WINDOWS = [
    (T0, T0 + TAGGED_S * 1000),
    (T0 + 1234, T0 + 900_000 - 77),
    (T0 + 590_000, T0 + 610_000),  # across the unplugging
    (T0 - 3_600_000, T0),
]
TAG_FILTERS = [
    (),
    (("mount", "/"),),
    (("mount", "/var lib,x=y"),),
    (("mount", "/mnt/usb"),),
    (("mount", "/no"),),
]


@pytest.mark.parametrize("window", TAGGED_WINDOWS)
@pytest.mark.parametrize("host", [None, "a", "b"])
@pytest.mark.parametrize("tags", TAG_FILTERS)
def test_tagged_counts_and_rows_match(tagged, window, host, tags):
    sqlite, influx = tagged
    for metrics in (FS, ("filesystem_free_bytes",)):
        query = Query(metrics, *window, host, tags)
        assert sqlite.counts(query) == influx.counts(query)
        read = influx.raw_window(query, 5000)
        if read is not None:
            assert read[0] == sqlite.counts(query)
            assert_same_series(read[1], sqlite.rows(query))
        for step in (None, 7000, 60_000, 3_600_000):
            assert_same_series(sqlite.rows(query, step), influx.rows(query, step))


@pytest.mark.parametrize("window", TAGGED_WINDOWS[:3])
@pytest.mark.parametrize("host", [None, "a", "b"])
@pytest.mark.parametrize("fn", AGGREGATES)
def test_tagged_aggregates_match_and_name_the_same_series(tagged, window, host, fn):
    sqlite, influx = tagged
    for metric, tags in [*(("filesystem_used_percent", t) for t in TAG_FILTERS), ("disk_busy_percent", ())]:
        a = sqlite.aggregate(metric, fn, *window, host, tags=tags)
        b = influx.aggregate(metric, fn, *window, host, tags=tags)
        assert (a.samples, a.hosts, a.value_host, a.value_tags) == (
            b.samples,
            b.hosts,
            b.value_host,
            b.value_tags,
        )
        assert same(a.value, b.value), (metric, fn, tags, a.value, b.value)


def test_tagged_describe_and_hosts_match(tagged):
    sqlite, influx = tagged
    described = sqlite.describe()
    assert described == influx.describe()
    assert {m.name: m.tags for m in described}["filesystem_used_percent"] == {
        "mount": ["/", "/mnt/usb", "/var lib,x=y"]
    }
    assert sqlite.hosts() == influx.hosts()
    assert [h.host for h in sqlite.hosts()] == ["a", "b"]


# Tiered windows: three days of 10-second samples (two decimals, as the agent rounds them) from
# two hosts; the SQLite store then loses its raw data older than a day, as raw retention does,
# so older windows are answered from its minute and hour rollups alone, newer ones from raw
# samples and rollups together. InfluxDB keeps every raw sample: the answers must still agree
# wherever the windows are aligned to the rollups' minutes.
TIERED_DAYS = 3
TIERED_END_MS = 1_700_006_400_000  # a whole minute: the API's minute-relative windows stay aligned
TIERED_START_MS = TIERED_END_MS - TIERED_DAYS * 86_400_000
RAW_KEPT_MS = TIERED_END_MS - 86_400_000
TIERED = ("cpu_usage_overall", "memory_usage", "disk_read")


@pytest.fixture(scope="module")
def tiered(influxdb1, tmp_path_factory) -> tuple[SQLiteStore, InfluxQLStore]:
    rnd = random.Random(5)
    data = [
        Sample(ts, host, {m: round(rnd.uniform(0, 100), 2) for m in TIERED})
        for ts in range(TIERED_START_MS, TIERED_END_MS, 10_000)
        for host in ("a", "b")
        if not (host == "b" and (ts // 3_600_000) % 9 == 4)  # an hour's gap now and then on b
    ]
    path = tmp_path_factory.mktemp("tiered") / "metrics.db"
    pair = load_both(influxdb1.url, "tiered", path, [encode(s, "system") for s in data])
    conn = metricsdb.connect(path)
    with conn:
        tiers.seal_idle(conn)
        assert tiers.delete_before(conn, "raw", RAW_KEPT_MS) > 0
    conn.close()
    return pair


TIERED_WINDOWS = [
    (TIERED_START_MS, TIERED_END_MS),  # everything: rollups, then raw samples
    (TIERED_START_MS + 7 * 60_000, RAW_KEPT_MS - 13 * 60_000),  # rollups only, off the hours
    (RAW_KEPT_MS - 3 * 3_600_000 + 60_000, TIERED_END_MS - 4_321),  # across the raw boundary
]


@pytest.mark.parametrize("window", TIERED_WINDOWS)
@pytest.mark.parametrize("host", [None, "b"])
def test_tiered_windows_count_bucket_and_aggregate_as_influxdb_does_on_raw_data(tiered, window, host):
    sqlite, influx = tiered
    query = Query(TIERED, *window, host)
    assert sqlite.counts(query) == influx.counts(query)
    for step in (60_000, 300_000, 3_600_000, 7_200_000, 86_400_000):
        assert_same_series(sqlite.rows(query, step), influx.rows(query, step))
    for fn in AGGREGATES:
        a, b = (
            sqlite.aggregate("memory_usage", fn, *window, host),
            influx.aggregate("memory_usage", fn, *window, host),
        )
        assert (a.samples, a.hosts, a.value_host) == (b.samples, b.hosts, b.value_host), fn
        assert same(a.value, b.value), (fn, a.value, b.value)


@pytest.mark.parametrize(
    "target",
    [
        "/metrics?start=4320&end=0",  # three days, downsampled: rollups and raw
        "/metrics?start=4000&end=2000&host=b&step=600",  # rollups only
        *(f"/metrics/aggregate?metric=disk_read&start=4320&end=60&fn={fn}" for fn in AGGREGATES),
    ],
)
def test_the_api_answers_tiered_windows_the_same_on_both_stores(tiered, tmp_path, target):
    config = parse({"agent": {"state_dir": str(tmp_path)}}, environ={})
    left, right = (
        call(
            make_app(config, store, clock=lambda: TIERED_END_MS / 1000, spool_status=lambda: None), target
        ).json()
        for store in tiered
    )
    left.pop("store", None), right.pop("store", None)
    assert left.get("series") or left.get("samples"), left  # not vacuously equal
    assert same(left, right)
