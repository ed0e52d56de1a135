"""HTTP plumbing shared by everything that talks to InfluxDB: the sinks and the InfluxQL store.

One rule each for where a URL points (:class:`Endpoint`), how it is shown in logs and
errors (:func:`display_url`), the TLS context, the ``Authorization`` header, and how a
connection-level failure reads (:func:`describe`), which failures mean a kept-alive
connection was closed by the server while idle (:data:`STALE_CONNECTION`), and a small
thread-safe pool of kept-alive connections (:class:`ConnectionPool`).
"""

from __future__ import annotations

import base64
import http.client
import select
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from monitor.formats import one_line


def display_url(url: str) -> str:
    """``scheme://host[:port]/path`` as configured, without user info, query or fragment.

    Safe for logs and error messages. An IPv6 host is bracketed; the port is shown when the
    URL gives one (a default port is not added).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class Endpoint:
    """Where an InfluxDB URL points: scheme, host, port (80/443 by default), base path."""

    https: bool
    host: str
    port: int
    base_path: str  # without a trailing slash; "" for the root
    display: str  # display_url() of the URL

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """The endpoint of an ``http://`` or ``https://`` URL; raises ValueError for any other."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        https = parts.scheme == "https"
        return cls(
            https,
            parts.hostname,
            parts.port or (443 if https else 80),
            parts.path.rstrip("/"),
            display_url(url),
        )

    def connection(self, timeout_s: float, tls: ssl.SSLContext | None) -> http.client.HTTPConnection:
        """A new connection, not yet connected: HTTPS with the context TLS when ``https``."""
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout_s, context=tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)


STALE_CONNECTION = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.BadStatusLine)
"""What a request on a kept-alive connection raises when the server closed it while idle:
one retry on a fresh connection is safe (nothing of the request was processed)."""


class ConnectionPool:
    """Kept-alive connections to one endpoint, each used by one thread at a time.

    ``take()`` hands out an idle connection (newest first) or a new, unconnected one, and says
    which; ``give()`` returns a connection whose answer was read to the end, ``discard()`` one
    in an unknown state. An idle connection the server has closed meanwhile (readable: EOF or
    stray bytes) is dropped at ``take()``; the caller still retries once on
    :data:`STALE_CONNECTION` for a close that lands between the check and the request.
    """

    def __init__(
        self, endpoint: Endpoint, timeout_s: float, tls: ssl.SSLContext | None, max_idle: int = 8
    ) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._tls = tls
        self._max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.opened = 0  # connections made so far (for tests and benchmarks)

    def take(self) -> tuple[http.client.HTTPConnection, bool]:
        """(a connection, whether it is a reused one)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self.take_new()
            if _still_open(conn):
                return conn, True
            conn.close()

    def take_new(self) -> tuple[http.client.HTTPConnection, bool]:
        """(a new, unconnected connection, False): for the one retry after a stale one."""
        with self._lock:
            self.opened += 1
        return self._endpoint.connection(self._timeout_s, self._tls), False

    def give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if conn.sock is not None and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    @staticmethod
    def discard(conn: http.client.HTTPConnection) -> None:
        conn.close()

    def close(self) -> None:
        """Close every idle connection (connections in use are closed by their callers)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection's socket is not readable: no EOF, no bytes nobody asked for."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def tls_context(verify_tls: bool, ca_file: Path | None) -> ssl.SSLContext:
    """Verify against the system CAs or CA_FILE; ``verify_tls = False`` turns checking off."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def authorization(token: str, username: str, password: str) -> dict[str, str]:
    """The ``Authorization`` header, one rule for the agent's writes and the API's queries.

    A token wins: ``Token <token>`` (InfluxDB 2.x/3.x, also on their v1-compatible
    endpoints). Else ``Basic`` from USERNAME and PASSWORD when either is set (InfluxDB 1.x).
    Else no header.
    """
    if token:
        return {"Authorization": f"Token {token}"}
    if username or password:
        pair = f"{username}:{password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    return {}


def describe(exc: BaseException) -> str:
    """One line for a failure below HTTP: no connection, a timeout, TLS, a broken answer."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the database running?)"
    if isinstance(exc, ssl.SSLError):
        return one_line(f"TLS error: {getattr(exc, 'reason', None) or exc}")
    if isinstance(exc, TimeoutError):
        return one_line(f"timed out: {exc}" if str(exc) else "timed out")
    return one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """TEXT with every secret of four characters or more replaced by ``***``."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
