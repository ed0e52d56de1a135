"""HTTP plumbing shared by everything that talks to InfluxDB: the sinks and the InfluxQL store.

One rule each for where a URL points (:class:`Endpoint`), how it is shown in logs and
errors (:func:`display_url`), the TLS context, the ``Authorization`` header, and how a
connection-level failure reads (:func:`describe`).
"""

from __future__ import annotations

import base64
import http.client
import ssl
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
