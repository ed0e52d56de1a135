"""The InfluxQL store keeps its connections alive: one TCP connection carries request after
request, and one the server closed while idle is replaced without the caller noticing.

A FaultProxy in front of a real InfluxDB 1.6.7 counts the connections it accepts.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator

import pytest

from monitor.api import make_app
from monitor.api.stores import Query
from monitor.api.stores.influxql import InfluxQLStore
from monitor.config import parse
from tests import servers
from tests.faultproxy import FaultProxy
from tests.unit.test_api import call

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
DB = "connections"
WINDOW = Query(("cpu_usage_overall",), T0, T0 + 60_000)


def load(url: str) -> None:
    servers.influx_query(url, f"CREATE DATABASE {DB}")
    lines = "\n".join(
        f"system,host=a cpu_usage_overall={i},memory_usage=50 {T0 + i * 1000}" for i in range(60)
    )
    req = urllib.request.Request(f"{url}/write?db={DB}&precision=ms", data=lines.encode(), method="POST")
    urllib.request.urlopen(req, timeout=30).close()


@pytest.fixture(scope="module")
def loaded(influxdb1: servers.Server) -> servers.Server:
    load(influxdb1.url)
    return influxdb1


@pytest.fixture
def proxied(loaded: servers.Server) -> Iterator[tuple[FaultProxy, InfluxQLStore]]:
    with FaultProxy(loaded.url) as proxy:
        store = InfluxQLStore(proxy.url, DB, timeout_s=20)
        yield proxy, store
        store.close()


def test_twenty_sequential_queries_travel_on_one_tcp_connection(proxied):
    proxy, store = proxied
    for _ in range(10):
        assert store.names() == ["cpu_usage_overall", "memory_usage"]
        assert [len(s.rows) for s in store.rows(WINDOW)] == [60]
    assert proxy.accepted == 1


def test_an_aggregate_asks_its_two_statements_on_two_connections_kept_for_the_next(proxied):
    proxy, store = proxied
    for _ in range(10):
        assert store.aggregate("cpu_usage_overall", "mean", T0, T0 + 60_000, None).samples == 60
    assert proxy.accepted == 2


def test_api_requests_reuse_the_stores_connections(proxied, tmp_path):
    proxy, store = proxied
    config = parse(
        {
            "agent": {"state_dir": str(tmp_path)},
            "sink": {"kind": "influxdb_v1", "url": proxy.url, "database": DB},
        },
        environ={},
    )
    app = make_app(config, store, clock=lambda: (T0 + 60_000) / 1000, spool_status=lambda: None)
    for _ in range(10):
        answer = call(app, "/metrics?start=1&end=0").json()
        assert answer["points"] == 60 and answer["raw_samples"] == 60
    # names, then the window's raw read (it fits: no count first), its two halves of the
    # metrics asked at once on two connections, both kept for the next request
    assert proxy.accepted == 2


def test_connections_the_server_closed_while_idle_are_replaced_transparently(proxied):
    proxy, store = proxied
    assert store.aggregate("cpu_usage_overall", "count", T0, T0 + 60_000, None).samples == 60
    assert proxy.accepted == 1
    proxy.set_mode("pass")  # closes every open connection: the store's idle one among them
    assert store.aggregate("cpu_usage_overall", "count", T0, T0 + 60_000, None).samples == 60
    assert proxy.accepted == 2


def test_a_kept_alive_connection_dropped_with_the_request_in_it_is_retried_once_on_a_new_one(proxied):
    proxy, store = proxied
    proxy.hold(nth=2)  # the first request is answered; the second, on the same connection, held
    assert store.names()
    assert proxy.accepted == 1
    answers: list[list[str]] = []
    asking = threading.Thread(target=lambda: answers.append(store.names()))
    asking.start()
    assert proxy.held.wait(20)
    assert proxy.accepted == 1  # it came on the kept-alive connection...
    proxy.release(forward=False)  # ...which is reset without an answer, as a closing server does
    asking.join(20)
    assert answers == [["cpu_usage_overall", "memory_usage"]]  # a SELECT is safe to ask again
    assert proxy.accepted == 2


def test_a_restarted_database_closes_the_idle_connection_and_the_next_query_opens_a_new_one(tmp_path):
    server = servers.start_influxdb1(tmp_path / "influx")
    try:
        load(server.url)
        with FaultProxy(server.url) as proxy:
            store = InfluxQLStore(proxy.url, DB, timeout_s=20)
            assert [len(s.rows) for s in store.rows(WINDOW)] == [60]
            server.start("/ping")  # the real server goes away and comes back on the same port
            assert [len(s.rows) for s in store.rows(WINDOW)] == [60]
            store.close()
    finally:
        server.stop()


def test_threads_asking_at_once_each_get_a_connection_of_their_own_and_right_answers(proxied):
    proxy, store = proxied
    answers: list[list[int]] = []
    lock = threading.Lock()

    def ask() -> None:
        for _ in range(5):
            got = [len(s.rows) for s in store.rows(WINDOW)]
            with lock:
                answers.append(got)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == [[60]] * 40
    assert 1 <= proxy.accepted <= 8  # never more connections than threads asking at once
