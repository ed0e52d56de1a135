"""The API's tag filters, tagged series, CSV tag columns and /metrics/names over real InfluxDB 1.6.7."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from monitor.api import make_app
from monitor.api.stores.influxql import InfluxQLStore
from monitor.lineprotocol import Sample, encode
from tests.integration.test_store_influxql import write
from tests.unit.test_api import NOW_MS, NOW_S, call, make_config

pytestmark = pytest.mark.integration

T = NOW_MS - 5 * 60_000  # inside the default window (the last ten minutes)
SAMPLES = [
    Sample(T, "web1", {"cpu_usage_overall": 10.0, "load_1": 0.25}),
    Sample(T, "web1", {"filesystem_used_percent": 40.0}, (("mount", "/"),), "filesystem"),
    Sample(T, "web1", {"filesystem_used_percent": 93.0}, (("mount", "/var"),), "filesystem"),
    Sample(T + 10_000, "web1", {"filesystem_used_percent": 41.0}, (("mount", "/"),), "filesystem"),
    Sample(T, "web2", {"filesystem_used_percent": 60.0}, (("mount", "/"),), "filesystem"),
    Sample(T, "web2", {"network_recv_bytes_per_s": 7.0}, (("interface", "eth0"),), "network"),
]


@pytest.fixture
def app(influxdb1, influx_db, tmp_path) -> Any:
    write(influxdb1.url, influx_db, [encode(s, "system") for s in SAMPLES])
    return make_app(
        make_config(tmp_path), InfluxQLStore(influxdb1.url, influx_db, timeout_s=5), clock=lambda: NOW_S
    )


def test_series_per_mount_carry_their_tags_and_a_filter_picks_one(app):
    body = call(app, "/metrics?metrics=filesystem_used_percent").json()
    assert [(s["host"], s["tags"]) for s in body["series"]] == [
        ("web1", {"mount": "/"}),
        ("web1", {"mount": "/var"}),
        ("web2", {"mount": "/"}),
    ]
    one = call(app, "/metrics?metrics=filesystem_used_percent&mount=/&host=web1").json()
    assert [[p["filesystem_used_percent"] for p in s["points"]] for s in one["series"]] == [[40.0, 41.0]]


def test_without_metrics_the_answer_is_the_host_family_as_before(app):
    body = call(app, "/metrics").json()
    assert body["metrics"] == ["cpu_usage_overall", "load_1"]
    assert [(s["host"], s["tags"]) for s in body["series"]] == [("web1", {})]


def test_csv_has_the_tag_column_after_host(app):
    text = call(app, "/metrics?metrics=filesystem_used_percent&host=web2&format=csv").body.decode()
    assert list(csv.reader(io.StringIO(text))) == [
        ["host", "mount", "time", "ts_ms", "filesystem_used_percent"],
        ["web2", "/", "2023-11-14T22:08:20.000Z", str(T), "60.0"],
    ]
    host_csv = call(app, "/metrics?format=csv").body.decode()
    assert host_csv.splitlines()[0] == "host,time,ts_ms,cpu_usage_overall,load_1"


def test_aggregate_pools_every_mount_and_names_the_picked_series(app):
    top = call(app, "/metrics/aggregate?metric=filesystem_used_percent&fn=max").json()
    assert (top["value"], top["value_host"], top["value_tags"], top["tags"]) == (
        93.0,
        "web1",
        {"mount": "/var"},
        {},
    )
    root = call(app, "/metrics/aggregate?metric=filesystem_used_percent&fn=mean&mount=/").json()
    assert (root["value"], root["samples"], root["hosts"], root["value_tags"]) == (47.0, 3, 2, None)
    none = call(app, "/metrics/aggregate?metric=filesystem_used_percent&mount=/home").json()
    assert (
        none["value"] is None
        and none["reason"] == "no samples of filesystem_used_percent with mount '/home' in the window"
    )
    host = call(app, "/metrics/aggregate?metric=cpu_usage_overall&fn=last").json()
    assert (host["value_host"], host["value_tags"], host["tags"]) == ("web1", {}, {})


def test_names_lists_every_metric_with_family_unit_and_tag_values(app):
    body = call(app, "/metrics/names").json()
    assert body["metrics"] == [
        "cpu_usage_overall",
        "load_1",
        "filesystem_used_percent",
        "network_recv_bytes_per_s",
    ]
    by_name = {d["name"]: d for d in body["details"]}
    assert by_name["filesystem_used_percent"] == {
        "name": "filesystem_used_percent",
        "family": "filesystem",
        "unit": "percent",
        "description": "space in use, as df shows it",
        "tag_key": "mount",
        "tags": {"mount": ["/", "/var"]},
    }
    assert by_name["network_recv_bytes_per_s"]["tags"] == {"interface": ["eth0"]}
    assert by_name["load_1"]["tags"] == {} and by_name["load_1"]["unit"] == "load"


@pytest.mark.parametrize(
    ("target", "parameter"),
    [
        ("/metrics?metrics=cpu_usage_overall&mount=/", "mount"),
        ("/metrics?mount=/", "mount"),
        ("/metrics?metrics=filesystem_used_percent&device=sda", "device"),
        ("/metrics?metrics=filesystem_used_percent&mount=", "mount"),
        ("/metrics?metrics=filesystem_used_percent&mount=" + "x" * 256, "mount"),
        ("/metrics?metrics=filesystem_used_percent&mount=/a%0Ab", "mount"),
        ("/metrics?metrics=cpu_usage_overall,filesystem_used_percent", "metrics"),
        ("/metrics/aggregate?metric=disk_busy_percent&interface=eth0", "interface"),
        ("/metrics/aggregate?metric=memory_usage&mount=/", "mount"),
        ("/metrics/aggregate?metric=filesystem_used_percent&mount=%7F", "mount"),
    ],
)
def test_bad_tag_filters_are_a_400_naming_the_parameter(app, target, parameter):
    response = call(app, target)
    assert response.status == 400
    assert response.json()["error"]["parameter"] == parameter
