"""A fault-injecting TCP/HTTP proxy on 127.0.0.1 in front of a real server, for tests.

    with FaultProxy(influxdb1.url) as proxy:        # starts in mode "pass"
        sink = make_sink(SinkConfig(kind="influxdb_v1", url=proxy.url, ...), ...)
        proxy.set_mode("status", status=503, headers={"Retry-After": "7"}, body=b"busy")
        proxy.set_mode("slow", delay_s=3)            # forwards after 3 s: a client timeout test
        proxy.set_mode("pass")

Modes (``set_mode`` first drops every open connection, so the very next request sees it):

    pass     forward bytes both ways to the upstream server
    refuse   close the listening socket: connections are refused (ECONNREFUSED), as when the
             server is down; leaving the mode listens again on the same port
    reset    accept, then reset the connection at once (RST)
    hang     accept and read, never answer (until the client gives up or the mode changes)
    slow     wait ``delay_s`` seconds, then forward as in "pass"
    status   read one HTTP request, answer ``status`` with ``body`` and ``headers`` without
             forwarding (Connection: close); the request is kept in ``proxy.requests``
    hold     ``hold(nth=N)``: relay HTTP/1.1 requests one by one (keep-alive kept), counting
             them from the call on, across all connections; forward requests 1..N-1, read the
             Nth and hold it: ``held`` is set and ``held_request`` is it. ``release()``
             forwards it (even if its client has gone meanwhile) and returns the upstream's
             status; ``release(status=400, body=...)`` answers it without forwarding;
             ``release(forward=False)`` or any mode change drops it. Requests after the Nth
             are forwarded.
    record   ``record()``: relay HTTP/1.1 requests one by one as "hold" does, holding none;
             each request is kept in ``proxy.requests`` (e.g. to check which queries a client sent)

A test that must act while a request is provably in flight holds it:

    proxy.hold(nth=4)                    # requests 1-3 reach the server and are answered
    assert proxy.held.wait(20)           # request 4 is here, and the server has not seen it
    ...                                  # kill the client, read its state
    assert proxy.release() == 204        # now the server has it

``proxy.accepted`` counts accepted connections (e.g. to check keep-alive reuse).
"""

from __future__ import annotations

import contextlib
import http.client
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MODES = (
    "pass",
    "refuse",
    "reset",
    "hang",
    "slow",
    "status",
)  # and "hold", "record", through hold(), record()
_POLL_S = 0.05


@dataclass(frozen=True)
class CapturedRequest:
    """One request answered in mode "status" (body as received, e.g. still gzip-compressed)."""

    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # names lower-cased
    body: bytes
    received_s: float = 0.0  # time.monotonic() once the whole request was read (before any answer)


@dataclass(frozen=True)
class _Message:
    """One HTTP/1.1 message as read off a socket."""

    start_line: str  # "POST /write?db=x HTTP/1.1" or "HTTP/1.1 204 No Content"
    headers: dict[str, str]  # names lower-cased
    raw: bytes  # exactly the bytes received (head and body framing): forwarded unchanged
    body: bytes  # the body, chunked framing removed
    keep_alive: bool  # the connection may carry another message after this one

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ", 2)[1])

    def captured(self) -> CapturedRequest:
        method, target, _ = self.start_line.split(" ", 2)
        return CapturedRequest(method, target, self.headers, self.body, time.monotonic())


@dataclass
class _Hold:
    """Mode "hold": the Nth HTTP request from now on is held until ``release()``."""

    nth: int
    seen: int = 0  # requests read so far (under the proxy's lock)
    held: threading.Event = field(default_factory=threading.Event)
    request: CapturedRequest | None = None
    forward: bool = True
    answer: _Mode | None = None  # release(status=...): answered by the proxy instead
    released: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    status: int | None = None  # the upstream's answer to the held request, once forwarded


@dataclass(frozen=True)
class _Mode:
    name: str = "pass"
    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hold: _Hold | None = None


class FaultProxy:
    """See the module docstring. Threads are daemons; ``close()`` stops everything it started."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: list[CapturedRequest] = []
        self.accepted = 0
        self._mode = _Mode()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._open: dict[socket.socket, threading.Event] = {}
        self._listener: socket.socket | None = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_mode(
        self,
        mode: str,
        *,
        status: int = 500,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        data = body.encode() if isinstance(body, str) else body
        self._switch(_Mode(mode, status, data, dict(headers or {}), delay_s))

    def hold(self, nth: int) -> None:
        """Mode "hold" (module docstring): forward requests 1..NTH-1 from now on, hold the NTH."""
        if nth < 1:
            raise ValueError(f"nth must be at least 1, got {nth!r}")
        self._switch(_Mode("hold", hold=_Hold(nth)))

    def record(self) -> None:
        """Mode "record" (module docstring): relay every request and keep it in ``requests``."""
        self._switch(_Mode("record", hold=_Hold(0)))

    @property
    def held(self) -> threading.Event:
        """Set once the request ``hold()`` waits for is held (a fresh event per ``hold()``)."""
        hold = self._mode.hold
        if hold is None:
            raise RuntimeError("the proxy is not in mode 'hold'")
        return hold.held

    @property
    def held_request(self) -> CapturedRequest:
        hold = self._mode.hold
        if hold is None or hold.request is None:
            raise RuntimeError("no request is held")
        return hold.request

    def release(
        self,
        *,
        forward: bool = True,
        status: int | None = None,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> int | None:
        """Let the held request go. Forwarded, it returns the upstream's status once it answered
        (the answer goes to the client, if it is still there). With STATUS, the proxy answers it
        itself (BODY, HEADERS, as mode "status" does) and returns STATUS. With
        ``forward=False`` it is dropped (the connection reset) and None returned."""
        hold = self._mode.hold
        if hold is None or not hold.held.is_set():
            raise RuntimeError("no request is held")
        if status is not None:
            data = body.encode() if isinstance(body, str) else body
            hold.answer = _Mode("status", status, data, dict(headers or {}))
        hold.forward = forward
        hold.released.set()
        if not forward:
            return None
        if not hold.answered.wait(timeout_s):
            raise TimeoutError(f"the released request was not answered within {timeout_s}s")
        return hold.status

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._drop_all()
        self._thread.join(5)

    # -- internals ---------------------------------------------------------------------------

    def _switch(self, mode: _Mode) -> None:
        with self._lock:
            self._mode = mode
            if mode.name == "refuse" and self._listener is not None:
                # shutdown() stops listening at once (close() alone leaves the socket listening
                # until the accept loop's pending accept() returns): refused from now on
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            elif mode.name != "refuse" and self._listener is None:
                self._listener = self._listen(self.port)
        self._drop_all()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.settimeout(_POLL_S)
        return sock

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._closed.wait(_POLL_S)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            client.settimeout(None)
            with self._lock:
                mode = self._mode
                self.accepted += 1
                dropped = threading.Event()
                self._open[client] = dropped
            threading.Thread(target=self._handle, args=(client, mode, dropped), daemon=True).start()

    def _drop_all(self) -> None:
        with self._lock:
            conns, self._open = self._open, {}
        for sock, dropped in conns.items():
            dropped.set()
            _abort(sock)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)

    def _handle(self, client: socket.socket, mode: _Mode, dropped: threading.Event) -> None:
        try:
            if mode.name in ("reset", "refuse"):  # "refuse": accepted just before the switch
                _abort(client)
            elif mode.name == "hang":
                _drain_until_closed(client, dropped)
            elif mode.name == "status":
                self._answer(client, mode)
            elif mode.hold is not None:
                self._relay(client, mode.hold, dropped)
            else:
                if mode.name == "slow" and dropped.wait(mode.delay_s):
                    return
                self._pipe(client, dropped)
        except OSError:
            pass
        finally:
            self._forget(client)
            with contextlib.suppress(OSError):
                client.close()

    def _answer(self, client: socket.socket, mode: _Mode) -> None:
        client.settimeout(10.0)
        message = HttpReader(client).read()
        if message is None:
            return
        with self._lock:
            self.requests.append(message.captured())
        _send_answer(client, mode)

    def _relay(self, client: socket.socket, hold: _Hold, dropped: threading.Event) -> None:
        """Mode "hold": one request at a time, client to upstream, its answer back."""
        from_client = HttpReader(client)
        upstream: socket.socket | None = None
        from_upstream: HttpReader | None = None
        try:
            while (request := from_client.read()) is not None:
                with self._lock:
                    hold.seen += 1
                    is_held = hold.seen == hold.nth
                    if hold.nth == 0:  # mode "record"
                        self.requests.append(request.captured())
                if is_held and not self._held_until_released(hold, request, dropped):
                    _abort(client)
                    return
                if is_held and hold.answer is not None:
                    _send_answer(client, hold.answer)
                    hold.status = hold.answer.status
                    hold.answered.set()
                    return
                if upstream is None or from_upstream is None:
                    upstream = self._connect_upstream(dropped)
                    from_upstream = HttpReader(upstream)
                upstream.sendall(request.raw)
                answer = from_upstream.read(head_request=request.start_line.startswith("HEAD "))
                if answer is None:
                    return
                if is_held:
                    hold.status = answer.status
                    hold.answered.set()
                client.sendall(answer.raw)
                if not (request.keep_alive and answer.keep_alive):
                    return
        finally:
            if upstream is not None:
                self._forget(upstream)
                with contextlib.suppress(OSError):
                    upstream.close()

    def _held_until_released(self, hold: _Hold, request: _Message, dropped: threading.Event) -> bool:
        """Hold REQUEST until release() (True: forward it) or a mode change (False: drop it)."""
        hold.request = request.captured()
        hold.held.set()
        while not hold.released.wait(_POLL_S):
            if dropped.is_set() or self._closed.is_set():
                return False
        return hold.forward

    def _connect_upstream(self, dropped: threading.Event) -> socket.socket:
        upstream = socket.create_connection(self.upstream, timeout=10)
        upstream.settimeout(None)
        with self._lock:
            self._open[upstream] = dropped
        return upstream

    def _pipe(self, client: socket.socket, dropped: threading.Event) -> None:
        upstream = self._connect_upstream(dropped)
        peers = {client: upstream, upstream: client}
        try:
            with selectors.DefaultSelector() as sel:
                for sock in peers:
                    sel.register(sock, selectors.EVENT_READ)
                while not dropped.is_set() and not self._closed.is_set():
                    for key, _ in sel.select(_POLL_S):
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        data = sock.recv(65536)
                        if not data:
                            return
                        peers[sock].sendall(data)
        finally:
            self._forget(upstream)
            with contextlib.suppress(OSError):
                upstream.close()


def _abort(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), waking any thread blocked on the socket."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _send_answer(client: socket.socket, mode: _Mode) -> None:
    """Answer MODE's status, headers and body (Connection: close), then end the sending side."""
    reason = http.client.responses.get(mode.status, "Status")
    head = [f"HTTP/1.1 {mode.status} {reason}", f"Content-Length: {len(mode.body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in mode.headers.items()]
    client.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + mode.body)
    client.shutdown(socket.SHUT_WR)


def _drain_until_closed(client: socket.socket, dropped: threading.Event) -> None:
    client.settimeout(_POLL_S)
    while not dropped.is_set():
        try:
            if not client.recv(65536):
                return
        except TimeoutError:
            continue


class HttpReader:
    """Reads HTTP/1.1 messages off one socket in turn; bytes past a message stay for the next.

    Bodies framed by Content-Length or chunked encoding; an answer with neither runs to the
    end of the connection. No ``Expect: 100-continue`` (the clients tested here never send it).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def read(self, *, head_request: bool = False) -> _Message | None:
        """The next message; None if the peer closed the connection before or inside it.
        HEAD_REQUEST: this is the answer to a HEAD request (no body)."""
        try:
            if not self._buf and not self._fill():
                return None
            head = self._until(b"\r\n\r\n")
            start_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            is_answer = start_line.startswith("HTTP/")
            no_body = is_answer and (head_request or _bodiless(int(start_line.split(" ", 2)[1])))
            raw, body, to_close = (b"", b"", False) if no_body else self._body(headers, is_answer)
        except EOFError:
            return None
        version = start_line.split(" ", 1)[0] if is_answer else start_line.rsplit(" ", 1)[-1]
        connection = headers.get("connection", "").lower()
        persistent = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"
        return _Message(start_line, headers, head + raw, body, persistent and not to_close)

    def _body(self, headers: dict[str, str], is_answer: bool) -> tuple[bytes, bytes, bool]:
        """(the body's bytes as received, the body, whether it ran to the end of the connection)."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._chunked()
        if "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
            return body, body, False
        if not is_answer:  # a request without either has no body
            return b"", b"", False
        while self._fill():
            pass
        body, self._buf = self._buf, b""
        return body, body, True

    def _chunked(self) -> tuple[bytes, bytes, bool]:
        raw, body = b"", b""
        while True:
            size_line = self._until(b"\r\n")
            raw += size_line
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while (trailer := self._until(b"\r\n")) != b"\r\n":
                    raw += trailer
                return raw + trailer, body, False
            chunk = self._exactly(size + 2)
            raw += chunk
            body += chunk[:-2]

    def _fill(self) -> bool:
        data = self._sock.recv(65536)
        self._buf += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while (end := self._buf.find(marker)) < 0:
            if not self._fill():
                raise EOFError
        out, self._buf = self._buf[: end + len(marker)], self._buf[end + len(marker) :]
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not self._fill():
                raise EOFError
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _bodiless(status: int) -> bool:
    """An answer with this status never has a body (RFC 9112, section 6.3)."""
    return status < 200 or status in (204, 304)
