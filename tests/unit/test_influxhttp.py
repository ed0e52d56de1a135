"""One rule for the agent's writes and the API's queries: the Authorization header and the URL shown.

The sink and the store are pointed at the same local answering proxy (mode "status"), which
keeps every request, so each test reads the header that actually went over the wire.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator

import pytest

from monitor.api.stores.influxql import InfluxQLStore
from monitor.config import ShipperConfig, SinkConfig, parse
from monitor.influxhttp import Endpoint, authorization, describe, display_url
from monitor.sinks.influx_v1 import InfluxV1Sink
from tests.faultproxy import FaultProxy

LINES = ["system,host=web-1 cpu_usage_overall=12.5 1700000000000"]
EMPTY_ANSWER = json.dumps({"results": [{"statement_id": 0}]})
BASIC_WRITER = "Basic " + base64.b64encode(b"writer:pw-1234").decode()


@pytest.fixture
def answering() -> Iterator[FaultProxy]:
    """A local server that answers 200 with an empty InfluxQL result and keeps every request."""
    with FaultProxy("http://127.0.0.1:9") as proxy:
        proxy.set_mode("status", status=200, body=EMPTY_ANSWER, headers={"Content-Type": "application/json"})
        yield proxy


def write_once(url: str, **credentials: str) -> None:
    sink = InfluxV1Sink(
        SinkConfig(kind="influxdb_v1", url=url, database="db", **credentials), ShipperConfig()
    )
    try:
        sink.write(LINES)
    finally:
        sink.close()


def query_once(url: str, **credentials: str) -> None:
    InfluxQLStore(url, "db", timeout_s=5, **credentials).names()


def test_the_rule_is_token_first_else_basic_else_nothing():
    assert authorization("tok", "writer", "pw-1234") == {"Authorization": "Token tok"}
    assert authorization("", "writer", "pw-1234") == {"Authorization": BASIC_WRITER}
    assert authorization("", "", "") == {}


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ({"token": "tok-abcdef", "username": "writer", "password": "pw-1234"}, "Token tok-abcdef"),
        ({"username": "writer", "password": "pw-1234"}, BASIC_WRITER),
        ({}, None),
    ],
)
def test_sink_and_store_send_the_same_authorization_token_winning(answering, credentials, expected):
    write_once(answering.url, **credentials)
    query_once(answering.url, **credentials)
    write, query = answering.requests
    assert (write.method, query.method) == ("POST", "GET")
    assert write.headers.get("authorization") == query.headers.get("authorization") == expected


def test_the_store_reads_with_the_apis_own_credentials_before_the_sinks(answering, tmp_path):
    raw = {
        "agent": {"state_dir": str(tmp_path)},
        "sink": {"kind": "influxdb_v1", "url": answering.url, "database": "db", "token_env": "W"},
        "api": {"store_username": "writer", "store_password_env": "R"},
    }
    config = parse(raw, environ={"W": "write-token", "R": "pw-1234"})
    InfluxQLStore.from_config(config).names()
    raw["api"] = {"store_token_env": "T", "store_username": "writer", "store_password_env": "R"}
    config = parse(raw, environ={"W": "write-token", "R": "pw-1234", "T": "read-token"})
    InfluxQLStore.from_config(config).names()
    first, second = answering.requests
    assert first.headers["authorization"] == BASIC_WRITER  # not the sink's write token
    assert second.headers["authorization"] == "Token read-token"  # the API's token over its user


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://[::1]:8086/", "http://[::1]:8086"),
        ("http://[fd00::2]", "http://[fd00::2]"),
        ("https://db.example", "https://db.example"),
        ("https://db.example:443/influx/", "https://db.example:443/influx"),
        ("http://user:pw@127.0.0.1:8086?u=a&p=b", "http://127.0.0.1:8086"),
    ],
)
def test_sink_and_store_name_the_database_by_the_same_url(url, shown):
    sink = InfluxV1Sink(SinkConfig(kind="influxdb_v1", url=url, database="db"), ShipperConfig())
    store = InfluxQLStore(url, "db")
    assert display_url(url) == shown
    assert sink.name == f"influxdb_v1 {shown} db=db"
    assert store.name == f"influxdb_v1 {shown} db=db"


def test_an_endpoint_defaults_the_port_by_scheme_and_refuses_other_urls():
    assert Endpoint.parse("https://[::1]/x/").port == 443
    assert Endpoint.parse("http://db.example/").base_path == ""
    for url in ("ftp://db.example", "http://", "db.example:8086"):
        with pytest.raises(ValueError, match="not an http"):
            Endpoint.parse(url)


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused (is the database running?)"),
        (TimeoutError(), "timed out"),
        (TimeoutError("read\ntimeout"), "timed out: read timeout"),
        (ssl.SSLError(1, "bad"), "TLS error: "),
        (ConnectionResetError(104, "Connection reset by peer"), "ConnectionResetError: [Errno 104]"),
    ],
)
def test_a_connection_failure_reads_the_same_for_sink_and_store(exc, text):
    assert describe(exc).startswith(text)
    assert "\n" not in describe(exc)
