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

MODES = ("pass", "refuse", "reset", "hang", "slow", "status")
_POLL_S = 0.05


@dataclass(frozen=True)
class CapturedRequest:
    """One request answered in mode "status" (body as received, e.g. still gzip-compressed)."""

    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True)
class _Mode:
    name: str = "pass"
    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


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
        with self._lock:
            self._mode = _Mode(mode, status, data, dict(headers or {}), delay_s)
            if mode == "refuse" and self._listener is not None:
                self._listener.close()
                self._listener = None
            elif mode != "refuse" and self._listener is None:
                self._listener = self._listen(self.port)
        self._drop_all()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._drop_all()
        self._thread.join(5)

    # -- internals ---------------------------------------------------------------------------

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
            if mode.name == "reset":
                _abort(client)
            elif mode.name == "hang":
                _drain_until_closed(client, dropped)
            elif mode.name == "status":
                self._answer(client, mode)
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
        request = _read_request(client)
        if request is None:
            return
        with self._lock:
            self.requests.append(request)
        reason = http.client.responses.get(mode.status, "Status")
        head = [f"HTTP/1.1 {mode.status} {reason}", f"Content-Length: {len(mode.body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in mode.headers.items()]
        client.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + mode.body)
        client.shutdown(socket.SHUT_WR)

    def _pipe(self, client: socket.socket, dropped: threading.Event) -> None:
        upstream = socket.create_connection(self.upstream, timeout=10)
        upstream.settimeout(None)
        with self._lock:
            self._open[upstream] = dropped
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


def _drain_until_closed(client: socket.socket, dropped: threading.Event) -> None:
    client.settimeout(_POLL_S)
    while not dropped.is_set():
        try:
            if not client.recv(65536):
                return
        except TimeoutError:
            continue


def _read_request(client: socket.socket, timeout_s: float = 10.0) -> CapturedRequest | None:
    """One HTTP/1.1 request (Content-Length or chunked body); None if the client went away."""
    client.settimeout(timeout_s)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = client.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _read_chunked(client, rest)
    else:
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = client.recv(65536)
            if not chunk:
                break
            rest += chunk
        body = rest[:length]
    return CapturedRequest(method, target, headers, body)


def _read_chunked(client: socket.socket, buf: bytes) -> bytes:
    body = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if b"\r\n" in buf:
            size_text, _, after = buf.partition(b"\r\n")
            size = int(size_text.split(b";")[0], 16)
            if size == 0:
                return body
            if len(after) >= size + 2:
                body += after[:size]
                buf = after[size + 2 :]
                continue
        chunk = client.recv(65536)
        if not chunk:
            break
        buf += chunk
    return body
