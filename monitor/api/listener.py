"""The API's listening sockets: waitress, bounded against idle and slow clients, optionally TLS.

waitress reads every request in its one event-loop thread and hands only complete requests
to the worker threads, so a client that trickles its headers costs a socket, never a worker.
On top of waitress's total ``connection_limit`` and idle timeout this adds:

- a cap on connections per client address (past it, a new connection gets a 503 and is
  closed at once), so one client cannot take every slot;
- a deadline for each request (and each TLS handshake) from its first byte to its last,
  so a client that sends a header line a second is closed too, not only an idle one;
- TLS (``api.tls_cert_file``/``api.tls_key_file``), its handshake driven by the same event
  loop, non-blocking: a client that stalls mid-handshake holds nothing but its socket.

:func:`problems` is the API's start-up check: it refuses to serve beyond loopback without
a token and TLS unless ``api.allow_insecure`` says to.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import ssl
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from monitor.api.views import error_body
from monitor.config import ApiConfig, Config
from monitor.errors import ConfigError

log = logging.getLogger(__name__)

MAX_REQUEST_HEADER_BYTES = 32 * 1024  # a GET's headers; bounds memory per slow client
MAX_REQUEST_BODY_BYTES = 64 * 1024  # every endpoint is a GET: a body is never read
CLEANUP_INTERVAL_S = 1  # how often idle and overdue connections are looked for


def _refusal() -> bytes:
    """The whole answer to a connection over the per-client cap, in the API's error shape."""
    message = "too many connections from this address (api.max_connections_per_client)"
    body = json.dumps(error_body(503, message), separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Retry-After: 5\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_REFUSED = _refusal()


def is_loopback(host: str) -> bool:
    """True when HOST (``api.host``) can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def problems(config: Config) -> list[str]:
    """Why the API must not start with CONFIG (exposure, unreadable TLS files); [] when it may."""
    api, where = config.api, str(config.source or "<defaults>")
    try:
        tls_context(api, where)
    except ConfigError as exc:
        return exc.problems
    tls = api.tls_cert_file is not None
    if is_loopback(api.host) or api.allow_insecure or (api.token and tls):
        return []
    missing = " and ".join(
        text
        for text, absent in (
            ("no token (api.token_file)", not api.token),
            ("no TLS (api.tls_cert_file)", not tls),
        )
        if absent
    )
    return [
        f"{where}: api.host: {api.host!r} is reachable from other machines but the API has {missing}; "
        "set them, or api.allow_insecure = true to serve it anyway (e.g. behind a TLS proxy)"
    ]


def tls_context(api: ApiConfig, where: str = "<defaults>") -> ssl.SSLContext | None:
    """The server TLS context of API's certificate and key, None without them."""
    if api.tls_cert_file is None or api.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(api.tls_cert_file, api.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            [f"{where}: api.tls_cert_file: cannot load {api.tls_cert_file} with {api.tls_key_file}: {reason}"]
        ) from exc
    return context


def make_servers(
    app: Any,
    api: ApiConfig,
    sockets: dict[int, Any],
    *,
    tls: ssl.SSLContext | None = None,
    connection_limit: int | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> list[Server]:
    """One server per address ``api.host`` resolves to, registered in SOCKETS, sharing one
    pool of ``api.threads`` workers. CONNECTION_LIMIT overrides ``api.connection_limit``."""
    adj = Adjustments(
        host=api.host,
        port=api.port,
        threads=api.threads,
        ident="hostmon",
        url_scheme="https" if tls else "http",
        connection_limit=connection_limit or api.connection_limit,
        channel_timeout=max(1, math.ceil(api.idle_timeout_s)),
        cleanup_interval=CLEANUP_INTERVAL_S,
        max_request_header_size=MAX_REQUEST_HEADER_BYTES,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    return [
        Server(app, api, tls, monotonic, map=sockets, dispatcher=dispatcher, adj=adj, sockinfo=info)
        for info in adj.listen
    ]


class Server(TcpWSGIServer):  # type: ignore[misc]  # waitress is untyped
    """waitress's TCP server with a per-client cap and per-request deadlines."""

    def __init__(
        self,
        app: Any,
        api: ApiConfig,
        tls: ssl.SSLContext | None,
        monotonic: Callable[[], float],
        **kw: Any,
    ) -> None:
        self.per_client = api.max_connections_per_client
        self.request_timeout_s = api.request_timeout_s
        self.tls = tls
        self.monotonic = monotonic
        self.clients: Counter[str] = Counter()
        self.refusing: set[str] = set()
        self.channel_class = TlsChannel if tls else Channel
        super().__init__(app, **kw)

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
            if accepted is None:
                return
            conn, addr = accepted
            self.set_socket_options(conn)
        except OSError as exc:  # the peer may be gone already; EMFILE: the next loop retries
            log.debug("accept failed: %s", exc)
            return
        client = str(addr[0]) if isinstance(addr, tuple) else ""
        if self.per_client and self.clients[client] >= self.per_client:
            self._refuse(conn, client)
            return
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)

    def _refuse(self, conn: Any, client: str) -> None:
        if client not in self.refusing:  # once each time the client reaches its cap
            self.refusing.add(client)
            log.warning(
                "refusing connections from %s: it holds %d (api.max_connections_per_client)",
                client,
                self.per_client,
            )
        try:
            if self.tls is None:
                conn.setblocking(False)
                conn.send(_REFUSED)
        except OSError:
            pass
        finally:
            conn.close()

    def released(self, client: str) -> None:
        """A channel of CLIENT closed."""
        self.clients[client] -= 1
        if self.clients[client] <= 0:
            del self.clients[client]
        if self.clients[client] < self.per_client:
            self.refusing.discard(client)

    def maintenance(self, now: float) -> None:
        """waitress closes idle channels; this also closes those past their deadline."""
        super().maintenance(now)
        mono = self.monotonic()
        for channel in list(self.active_channels.values()):
            deadline = getattr(channel, "deadline", None)
            if deadline is not None and mono > deadline and not channel.requests:
                log.debug(
                    "closing %s: request or handshake unfinished after %g s",
                    channel.client,
                    self.request_timeout_s,
                )
                channel.will_close = True


class Channel(HTTPChannel):  # type: ignore[misc]  # waitress is untyped
    """One client connection, counted against its address, with a deadline while a request arrives."""

    deadline: float | None = None

    def __init__(self, server: Server, sock: Any, addr: Any, adj: Adjustments, map: Any = None) -> None:
        self.client = str(addr[0]) if isinstance(addr, tuple) else ""
        server.clients[self.client] += 1
        self._released = False
        super().__init__(server, sock, addr, adj, map)

    def received(self, data: bytes) -> bool:
        idle = self.request is None
        result = bool(super().received(data))
        if self.request is None:
            self.deadline = None  # complete (or nothing pending): the idle timeout applies
        elif idle or self.deadline is None:
            self.deadline = self.server.monotonic() + self.server.request_timeout_s
        return result

    def del_channel(self, map: Any = None) -> None:
        if not self._released:
            self._released = True
            self.server.released(self.client)
        super().del_channel(map)


class TlsChannel(Channel):
    """A Channel over TLS: the handshake and every read and write are non-blocking."""

    def __init__(self, server: Server, sock: Any, addr: Any, adj: Adjustments, map: Any = None) -> None:
        assert server.tls is not None
        tls_sock = server.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._handshaking = True
        self._want_write = False
        super().__init__(server, tls_sock, addr, adj, map)
        self.deadline = server.monotonic() + server.request_timeout_s

    def readable(self) -> bool:
        return not self._want_write if self._handshaking else bool(super().readable())

    def writable(self) -> bool:
        return self._want_write if self._handshaking else bool(super().writable())

    def handle_write(self) -> None:
        if self._handshaking:
            self._handshake()
        else:
            super().handle_write()

    def handle_read(self) -> None:
        if self._handshaking:
            self._handshake()
            return
        while self.socket is not None:  # drain what TLS decrypted: poll() cannot see it
            try:
                data = self.socket.recv(self.adj.recv_bytes)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as exc:  # ssl.SSLError included: a broken or closed session
                log.debug("TLS read from %s failed: %s", self.client, exc)
                self.handle_close()
                return
            if not data:
                self.handle_close()
                return
            self.last_activity = time.time()
            self.received(data)
            if not self.socket.pending():
                return

    def send(self, data: bytes, do_close: bool = True) -> int:
        try:
            return int(super().send(data, do_close))
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0  # waitress offers the same bytes again when the socket is writable

    def _handshake(self) -> None:
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            self._want_write = False
            return
        except ssl.SSLWantWriteError:
            self._want_write = True
            return
        except OSError as exc:  # not TLS, a bad certificate on the client's side, a reset
            log.debug("TLS handshake with %s failed: %s", self.client, exc)
            self.handle_close()
            return
        self._handshaking = self._want_write = False
        self.deadline = None
        self.last_activity = time.time()
        self.handle_read()  # the request may already be in TLS's buffer


def describe_limits(api: ApiConfig, connection_limit: int) -> str:
    """The limits in one line for the start-up log."""
    per_client = api.max_connections_per_client or "no cap"
    return (
        f"{connection_limit} connections, {per_client} per client, idle {api.idle_timeout_s:g} s, "
        f"request {api.request_timeout_s:g} s"
    )


__all__ = ["Server", "describe_limits", "is_loopback", "make_servers", "problems", "tls_context"]
