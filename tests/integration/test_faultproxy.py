"""The fault proxy itself (tests/faultproxy.py), in front of a tiny local HTTP server.

Mode "hold" counts HTTP requests, not connections, forwards the ones before the Nth, holds the
Nth without forwarding it until the test releases or drops it; mode "refuse" refuses at once.
"""

from __future__ import annotations

import http.client
import queue
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faultproxy import FaultProxy, HttpReader
from tests.helpers import FakeServer

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


@pytest.fixture
def proxy(server: FakeServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as p:
        yield p


def post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str] | None = None) -> int:
    conn.request("POST", "/write?db=x", body=body, headers=headers or {})
    response = conn.getresponse()
    response.read()
    return response.status


def post_in_thread(conn: http.client.HTTPConnection, body: bytes) -> queue.Queue[int | BaseException]:
    """POST BODY on a thread; the queue gets its status or the error it raised."""
    outcome: queue.Queue[int | BaseException] = queue.Queue()

    def send() -> None:
        try:
            outcome.put(post(conn, body))
        except (OSError, http.client.HTTPException) as exc:
            outcome.put(exc)

    threading.Thread(target=send, daemon=True).start()
    return outcome


def bodies(server: FakeServer) -> list[bytes]:
    return [seen.body for seen in server.seen]


def test_hold_forwards_the_requests_before_the_nth_on_one_keep_alive_connection_and_holds_the_nth(
    server, proxy
):
    proxy.hold(nth=3)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    assert post(conn, b"one") == 204
    assert post(conn, b"two") == 204
    third = post_in_thread(conn, b"three")
    assert proxy.held.wait(10)
    assert proxy.held_request.body == b"three" and proxy.held_request.target == "/write?db=x"
    assert bodies(server) == [b"one", b"two"]  # held, not forwarded
    assert third.empty()  # the client has no answer yet
    server.answer(200, b"stored")
    assert proxy.release() == 200
    assert third.get(timeout=10) == 200
    assert post(conn, b"four") == 200  # after the Nth: forwarded
    assert bodies(server) == [b"one", b"two", b"three", b"four"]
    assert proxy.accepted == 1  # one connection carried all four
    conn.close()


def test_hold_counts_requests_across_connections(server, proxy):
    proxy.hold(nth=2)
    first = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    assert post(first, b"one", {"Connection": "close"}) == 204
    second = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    outcome = post_in_thread(second, b"two")
    assert proxy.held.wait(10)
    assert proxy.held_request.body == b"two" and bodies(server) == [b"one"]
    assert proxy.release() == 204
    assert outcome.get(timeout=10) == 204
    assert proxy.accepted == 2
    first.close()
    second.close()


def test_a_held_request_whose_client_went_away_still_reaches_the_server_on_release(server, proxy):
    proxy.hold(nth=1)
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    client.sendall(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nlate")
    assert proxy.held.wait(10)
    client.close()
    assert proxy.release() == 204
    assert bodies(server) == [b"late"]


def test_a_held_request_can_be_answered_by_the_proxy_and_the_next_ones_are_forwarded(server, proxy):
    proxy.hold(nth=1)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    outcome = post_in_thread(conn, b"bad data")
    assert proxy.held.wait(10)
    assert proxy.release(status=400, body=b'{"error":"unable to parse"}') == 400
    assert outcome.get(timeout=10) == 400
    assert bodies(server) == []
    conn.close()
    assert post(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10), b"good data") == 204
    assert bodies(server) == [b"good data"]


def test_requests_are_stamped_when_they_were_read(proxy):
    proxy.set_mode("status", status=503)
    before = time.monotonic()
    assert post(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10), b"x") == 503
    after = time.monotonic()
    assert before <= proxy.requests[0].received_s <= after


@pytest.mark.parametrize("how", ["release(forward=False)", "set_mode"])
def test_a_held_request_is_dropped_by_release_without_forwarding_or_a_mode_change(server, proxy, how):
    proxy.hold(nth=1)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    outcome = post_in_thread(conn, b"dropped")
    assert proxy.held.wait(10)
    if how == "set_mode":
        proxy.set_mode("pass")
    else:
        assert proxy.release(forward=False) is None
    assert isinstance(outcome.get(timeout=10), OSError | http.client.HTTPException)
    assert bodies(server) == []
    conn.close()


def test_hold_relays_a_chunked_request_and_a_gzip_body_unchanged(server, proxy):
    proxy.hold(nth=2)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("POST", "/write", body=iter([b"chunk one, ", b"chunk two"]), encode_chunked=True)
    response = conn.getresponse()
    response.read()
    assert response.status == 204
    outcome = post_in_thread(conn, b"\x1f\x8b not really gzip \r\n\r\n")
    assert proxy.held.wait(10)
    assert proxy.held_request.body == b"\x1f\x8b not really gzip \r\n\r\n"
    assert proxy.release() == 204
    assert outcome.get(timeout=10) == 204
    assert bodies(server) == [b"chunk one, chunk two", b"\x1f\x8b not really gzip \r\n\r\n"]
    conn.close()


def test_hold_rejects_a_count_below_one_and_release_without_a_held_request(proxy):
    with pytest.raises(ValueError, match="nth"):
        proxy.hold(nth=0)
    proxy.hold(nth=1)
    with pytest.raises(RuntimeError, match="no request is held"):
        proxy.release()


def test_refuse_refuses_the_very_next_connection_and_pass_listens_again(server, proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    assert post(conn, b"before") == 204
    proxy.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    proxy.set_mode("pass")
    assert post(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10), b"after") == 204
    assert bodies(server) == [b"before", b"after"]
    conn.close()


# -- the HTTP framing the hold mode relays by (over a socket pair, both ends here) --------------


@pytest.mark.parametrize(
    ("wire", "body", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\nT: 1\r\n\r\n",
            b"hello",
            True,
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", b"until the end", False),
    ],
    ids=["content-length", "chunked", "204", "connection-close", "close-delimited"],
)
def test_the_reader_frames_each_kind_of_answer_and_keeps_what_follows(wire, body, keep_alive):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        follows = b"" if not keep_alive else b"HTTP/1.1 204 No Content\r\n\r\n"
        theirs.sendall(wire + follows)
        theirs.shutdown(socket.SHUT_WR)
        reader = HttpReader(ours)
        message = reader.read()
        assert message is not None
        assert (message.raw, message.body, message.keep_alive) == (wire, body, keep_alive)
        after = reader.read()
        assert (after.raw if after else b"") == follows
