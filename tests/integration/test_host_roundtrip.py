"""Every host the config accepts is stored as written by every sink and found by the API's host filter.

Against the real servers: InfluxDB 1.6.7 through the v1 sink, VictoriaMetrics through the v2
sink (read back from its ``/api/v1/export``) and the SQLite sink; then ``/metrics/aggregate
?host=`` through the API on the InfluxQL store and on the SQLite store. Hosts are drawn with
the line protocol's special characters (space, comma, equals, quotes, ``#``, a backslash)
over-represented; the ones the config refuses are not drawn again (``assume``). A modest
example count: every example is a write and a read on real servers.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from monitor.api import make_app
from monitor.api.stores.influxql import InfluxQLStore
from monitor.api.stores.sqlite import SQLiteStore
from monitor.config import Config, parse
from monitor.errors import ConfigError
from monitor.lineprotocol import Sample, encode
from monitor.sinks import make_sink
from tests import servers
from tests.store_helpers import stored
from tests.unit.test_api import call

pytestmark = pytest.mark.integration

DB = "host_roundtrip"
_ticks = itertools.count()
hosts = st.text(
    alphabet=st.one_of(st.characters(blacklist_categories=["Cs"]), st.sampled_from(" ,=\\\"'#{}")),
    min_size=1,
    max_size=24,
)


@pytest.fixture(scope="module")
def targets(influxdb1, victoriametrics, tmp_path_factory) -> Iterator[dict[str, Any]]:
    servers.influx_query(influxdb1.url, f'CREATE DATABASE "{DB}"')
    yield {"influx": influxdb1.url, "vm": victoriametrics.url, "dir": tmp_path_factory.mktemp("hosts")}


def accepted(host: str, state_dir: Path) -> Config | None:
    try:
        return parse({"agent": {"host": host, "state_dir": str(state_dir)}}, environ={})
    except ConfigError:
        return None


def influx_hosts(url: str, ts_ms: int) -> list[str]:
    q = f'SELECT "memory_usage", "host" FROM "system" WHERE time = {ts_ms}ms'
    series = servers.influx_query(url, q, DB)["results"][0].get("series", [])
    return [row[2] for s in series for row in s["values"]]


def vm_hosts(url: str, ts_ms: int, timeout_s: float = 15.0) -> list[str]:
    """The host label of every series VictoriaMetrics exports with a sample at TS_MS."""
    match = urllib.parse.quote('{__name__="system_memory_usage"}')
    window = f"start={ts_ms / 1000 - 1}&end={ts_ms / 1000 + 1}"
    deadline = time.monotonic() + timeout_s
    while True:
        urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10).read()
        with urllib.request.urlopen(f"{url}/api/v1/export?match[]={match}&{window}", timeout=10) as resp:
            # One JSON object per "\n": splitlines() would also split inside a host holding
            # U+2028 or U+0085, which VictoriaMetrics writes unescaped.
            items = [json.loads(line) for line in resp.read().decode().split("\n") if line]
        found = [i["metric"].get("host") for i in items if ts_ms in i["timestamps"]]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def api_count(config: Config, store: Any, host: str, ts_ms: int) -> int:
    app = make_app(config, store, clock=lambda: (ts_ms + 1) / 1000, spool_status=lambda: None)
    # A window of exactly TS_MS ([ts_ms, ts_ms + 1)): hypothesis may draw one host again a few
    # milliseconds later into the same database, and that point must not be counted here.
    start = "0.00001"  # minutes: rounds to 1 ms
    target = f"/metrics/aggregate?metric=memory_usage&fn=count&start={start}&host={urllib.parse.quote(host)}"
    body = call(app, target).json()
    assert "error" not in body, body
    assert body["host"] == host
    return int(body["value"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=hosts)
def test_every_accepted_host_round_trips_through_every_sink_and_the_host_filter(targets, host):
    config = accepted(host, targets["dir"])
    assume(config is not None)
    assert config is not None
    # Recent (VictoriaMetrics drops samples beyond its retention) and unique per example.
    ts_ms = (int(time.time()) - 300) * 1000 + next(_ticks)
    line = encode(Sample(ts_ms, config.agent.host, {"memory_usage": 42.0}), "system")
    sqlite_path = targets["dir"] / f"metrics-{ts_ms}.db"
    sinks = {
        "v1": parse(
            {"sink": {"kind": "influxdb_v1", "url": targets["influx"], "database": DB}}, environ={}
        ).sink,
        "v2": parse(
            {
                "sink": {
                    "kind": "influxdb_v2",
                    "url": targets["vm"],
                    "org": "o",
                    "bucket": "b",
                    "token_env": "T",
                }
            },
            environ={"T": "vm-ignores-it"},
        ).sink,
        "sqlite": parse({"sink": {"kind": "sqlite", "path": str(sqlite_path)}}, environ={}).sink,
    }
    for sink_config in sinks.values():
        sink = make_sink(sink_config, config.shipper)
        try:
            sink.write([line])
        finally:
            sink.close()

    assert influx_hosts(targets["influx"], ts_ms) == [host]
    assert vm_hosts(targets["vm"], ts_ms) == [host]
    assert [row[1] for row in stored(sqlite_path) if row[3] == ts_ms] == [host]
    assert api_count(config, InfluxQLStore(targets["influx"], DB), host, ts_ms) == 1
    assert api_count(config, SQLiteStore(sqlite_path), host, ts_ms) == 1


def test_the_property_draws_hosts_with_the_special_characters(tmp_path):
    """Guards the test above against going vacuous: such hosts are accepted and drawn."""
    for host in ("a b", "a,b", "a=b", 'o\'brien "db"', "#1", "ünï-{x}"):
        assert accepted(host, tmp_path) is not None
    for host in ("back\\slash", "trail\\", "two\nlines"):
        assert accepted(host, tmp_path) is None
