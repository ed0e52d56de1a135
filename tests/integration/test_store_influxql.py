"""The InfluxQL store against the real InfluxDB 1.6.7, a stopped one and a fault proxy."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from monitor.api.stores import Aggregate, Query, Series, make_store
from monitor.api.stores.influxql import InfluxQLStore, ident, literal
from monitor.config import parse
from monitor.errors import QueryFailed, StoreUnavailable
from tests import servers
from tests.faultproxy import FaultProxy
from tests.helpers import ADMIN

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
CPU_MEM = ("cpu_usage_overall", "memory_usage")
LINES = [
    f"system,host=a cpu_usage_overall=10,memory_usage=50 {T0}",
    f"system,host=a cpu_usage_overall=20 {T0 + 1000}",
    f"system,host=b cpu_usage_overall=30,memory_usage=70 {T0 + 1000}",
    f"system,host=b memory_usage=71 {T0 + 12_000}",
    f"system,host=b cpu_usage_overall=99 {T0 + 20_000}",
    f'system,host=o\'brien\\ "db" cpu_usage_overall=5 {T0}',
]


def write(url: str, db: str, lines: list[str], auth: tuple[str, str] | None = None) -> None:
    query = urllib.parse.urlencode(
        {"db": db, "precision": "ms", **({"u": auth[0], "p": auth[1]} if auth else {})}
    )
    req = urllib.request.Request(f"{url}/write?{query}", data="\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


@pytest.fixture
def store(influxdb1, influx_db) -> InfluxQLStore:
    write(influxdb1.url, influx_db, LINES)
    return InfluxQLStore(influxdb1.url, influx_db, timeout_s=5)


def test_raw_rows_per_host_with_null_for_missing_fields_and_half_open_window(store):
    assert store.rows(Query(CPU_MEM, T0, T0 + 20_000, "a")) == [
        Series("a", [(T0, [10.0, 50.0]), (T0 + 1000, [20.0, None])])
    ]
    assert store.rows(Query(CPU_MEM, T0 + 1, T0 + 20_000, "b")) == [
        Series("b", [(T0 + 1000, [30.0, 70.0]), (T0 + 12_000, [None, 71.0])])
    ]


def test_epoch_aligned_bucket_means(store):
    rows = store.rows(Query(CPU_MEM, T0 + 500, T0 + 20_000), step_ms=10_000)
    assert rows == [
        Series("a", [(T0, [20.0, None])]),
        Series("b", [(T0, [30.0, 70.0]), (T0 + 10_000, [None, 71.0])]),
    ]


def test_counts_and_aggregates(store):
    assert store.counts(Query(CPU_MEM, T0 + 1, T0 + 20_000)) == {("a", ()): 1, ("b", ()): 2}
    assert store.aggregate("cpu_usage_overall", "mean", T0 + 1, T0 + 20_000, None) == Aggregate(25.0, 2, 2)
    assert store.aggregate("cpu_usage_overall", "last", T0, T0 + 20_001, "b") == Aggregate(99.0, 2, 1, "b")
    assert store.aggregate("cpu_usage_overall", "count", T0, T0 + 1, "nobody") == Aggregate(0.0, 0)
    assert store.aggregate("memory_usage", "max", T0, T0 + 1, "nobody") == Aggregate(None, 0)


def test_names_are_the_allow_listed_field_keys(store, influxdb1, influx_db):
    write(influxdb1.url, influx_db, [f"system,host=a cpu_usage_2=1,cpu_usage_10=1,not_ours=1 {T0}"])
    assert store.names() == ["cpu_usage_overall", "cpu_usage_2", "cpu_usage_10", "memory_usage"]


def test_a_host_with_quotes_and_spaces_is_matched_exactly(store):
    assert store.aggregate("cpu_usage_overall", "mean", T0, T0 + 1, 'o\'brien "db"') == Aggregate(5.0, 1, 1)


INJECTIONS = [
    "x' OR 1=1",
    "x' OR '1'='1",
    "a' OR host =~ /.*/ --",
    "a\\' OR 1=1 --",
    "a\\",
    "b'; DROP DATABASE x; --",
    "a\nb",
    "\\\\' OR ''='",
]


@pytest.mark.parametrize("host", INJECTIONS)
def test_injection_attempts_in_host_match_nothing_and_change_nothing(store, host):
    assert store.rows(Query(CPU_MEM, T0, T0 + 60_000, host)) == []
    assert store.counts(Query(CPU_MEM, T0, T0 + 60_000, host)) == {}
    assert store.aggregate("cpu_usage_overall", "count", T0, T0 + 60_000, host) == Aggregate(0.0, 0)
    assert store.aggregate("cpu_usage_overall", "count", T0, T0 + 60_000, None).samples == 5


@pytest.mark.parametrize(
    "metric", ['cpu_usage_overall"; DROP MEASUREMENT system', 'cpu_usage_overall" OR 1=1', "time"]
)
def test_metrics_outside_the_allow_list_never_reach_the_database(store, metric):
    with pytest.raises(QueryFailed, match="allow-listed"):
        store.aggregate(metric, "mean", T0, T0 + 1, None)
    with pytest.raises(QueryFailed, match="allow-listed"):
        store.rows(Query((metric,), T0, T0 + 1))


def test_quoting_helpers():
    assert ident('a"b\\c') == '"a\\"b\\\\c"'
    assert literal("o'b\\r\nx") == "'o\\'b\\\\r\\nx'"


def test_a_database_that_does_not_exist_yet_is_an_empty_store(influxdb1):
    store = InfluxQLStore(influxdb1.url, "never_created")
    assert store.names() == [] and store.rows(Query(CPU_MEM, T0, T0 + 1)) == []
    assert "not found" in store.ping()


def test_retention_policy_qualifies_the_measurement(influxdb1, influx_db):
    servers.influx_query(
        influxdb1.url, f'CREATE RETENTION POLICY "week" ON "{influx_db}" DURATION 0s REPLICATION 1'
    )
    req = urllib.request.Request(
        f"{influxdb1.url}/write?db={influx_db}&rp=week&precision=ms",
        data=f"system,host=a disk_read=7 {T0}".encode(),
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).close()
    store = InfluxQLStore(influxdb1.url, influx_db, retention_policy="week")
    assert store.aggregate("disk_read", "last", T0, T0 + 1, "a") == Aggregate(7.0, 1, 1, "a")
    assert (
        InfluxQLStore(influxdb1.url, influx_db).aggregate("disk_read", "last", T0, T0 + 1, "a").value is None
    )


# -- credentials ---------------------------------------------------------------------------


def test_v1_read_credentials_from_the_config_are_used(influxdb1_auth, tmp_path):
    admin = ADMIN
    servers.influx_query(influxdb1_auth.url, 'CREATE DATABASE "authdb"', auth=admin)
    servers.influx_query(influxdb1_auth.url, "CREATE USER api_reader WITH PASSWORD 'reader-pw'", auth=admin)
    servers.influx_query(influxdb1_auth.url, 'GRANT READ ON "authdb" TO api_reader', auth=admin)
    write(influxdb1_auth.url, "authdb", [f"system,host=a memory_usage=42 {T0}"], auth=admin)
    raw = {
        "agent": {"state_dir": str(tmp_path)},
        "sink": {
            "kind": "influxdb_v1",
            "url": influxdb1_auth.url,
            "database": "authdb",
            "username": "writer",
        },
        "api": {"store_username": "api_reader", "store_password_env": "PW"},
    }
    store = make_store(parse(raw, environ={"PW": "reader-pw"}))
    assert store.aggregate("memory_usage", "mean", T0, T0 + 1, None) == Aggregate(42.0, 1, 1)
    bad = make_store(parse(raw, environ={"PW": "wrong"}))
    with pytest.raises(StoreUnavailable, match="refused the API's credentials"):
        bad.ping()


def test_v2_queries_influxql_on_the_bucket_with_a_token_never_flux(tmp_path):
    answer = {
        "results": [
            {
                "statement_id": 0,
                "series": [
                    {
                        "name": "system",
                        "tags": {"host": "h"},
                        "columns": ["time", "value", "samples"],
                        "values": [[0, 7.0, 2]],  # the sum: the mean is pooled from per-host sums
                    }
                ],
            }
        ]
    }
    with FaultProxy("http://127.0.0.1:9") as proxy:
        proxy.set_mode(
            "status", status=200, body=json.dumps(answer), headers={"Content-Type": "application/json"}
        )
        raw = {
            "agent": {"state_dir": str(tmp_path)},
            "sink": {
                "kind": "influxdb_v2",
                "url": proxy.url,
                "org": "o",
                "bucket": "rhtest",
                "token_env": "W",
            },
            "api": {"store_token_env": "R"},
        }
        store = make_store(parse(raw, environ={"W": "write-token", "R": "read-token"}))
        assert store.aggregate("cpu_usage_overall", "mean", T0, T0 + 1, "h") == Aggregate(3.5, 2, 1)
        requests = list(proxy.requests)
    statements = []
    for request in requests:  # the sum and the count, asked at once
        assert request.method == "GET"
        assert request.headers["authorization"] == "Token read-token"
        path, _, query = request.target.partition("?")
        params = dict(urllib.parse.parse_qsl(query))
        assert path == "/query" and params["db"] == "rhtest" and params["epoch"] == "ms"
        assert "from(bucket" not in params["q"] and "\"host\" = 'h'" in params["q"]
        statements.append(params["q"])
    assert sorted(q.split("(")[0] for q in statements) == ["SELECT count", "SELECT sum"]


# -- the database down, slow or failing ----------------------------------------------------


def test_a_stopped_server_is_store_unavailable_at_once(tmp_path):
    server = servers.start_influxdb1(tmp_path / "influx")
    store = InfluxQLStore(server.url, "x", timeout_s=5)
    assert "InfluxDB" in store.ping()
    server.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="connection refused"):
        store.names()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("mode", ["slow", "hang"])
def test_a_slow_or_silent_server_is_store_unavailable_after_the_timeout_not_a_hang(
    influxdb1, influx_db, mode
):
    with FaultProxy(influxdb1.url) as proxy:
        store = InfluxQLStore(proxy.url, influx_db, timeout_s=0.5)
        proxy.set_mode(mode, delay_s=5)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"no answer within 0\.5 s"):
            store.counts(Query(CPU_MEM, T0, T0 + 1))
        assert 0.4 < time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("status", "body", "error", "match"),
    [
        (503, "", StoreUnavailable, "HTTP 503"),
        (429, "", StoreUnavailable, "HTTP 429"),
        (401, '{"error":"authorization failed"}', StoreUnavailable, "credentials"),
        (403, '{"error":"forbidden"}', StoreUnavailable, "credentials"),
        (400, '{"error":"error parsing query: found EOF"}', QueryFailed, "error parsing query"),
        (200, "<html>proxy login</html>", StoreUnavailable, "not an InfluxDB answer"),
        (
            200,
            '{"results":[{"statement_id":0,"error":"max-select-point limit exceeded"}]}',
            QueryFailed,
            "limit",
        ),
    ],
)
def test_http_failures_are_translated(status, body, error, match):
    with FaultProxy("http://127.0.0.1:9") as proxy:
        proxy.set_mode("status", status=status, body=body)
        with pytest.raises(error, match=match):
            InfluxQLStore(proxy.url, "db", timeout_s=2).names()


def test_a_refused_connection_through_the_proxy(influxdb1):
    with FaultProxy(influxdb1.url) as proxy:
        proxy.set_mode("refuse")  # refused from the very next connection on
        with pytest.raises(StoreUnavailable, match="connection refused"):
            InfluxQLStore(proxy.url, "db", timeout_s=2).ping()
