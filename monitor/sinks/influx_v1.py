"""InfluxDB v1 write API sink: ``POST /write?db=&rp=&precision=ms`` over one keep-alive connection.

Standard library only (``http.client``), so the agent stays small. Works with InfluxDB 1.x
(basic auth from username/password) and with the v1-compatible ``/write`` of InfluxDB 2.x/3.x
(``Authorization: Token`` when a token is configured). ``timeout_s`` bounds the connect and
every socket read; it is not a total deadline for a server that trickles bytes.
"""

from __future__ import annotations

import base64
import http.client
import logging
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlencode, urlsplit

from monitor import __version__
from monitor.config import ShipperConfig, SinkConfig
from monitor.errors import Unavailable
from monitor.lineprotocol import PRECISION
from monitor.sinks import PreparedBatch
from monitor.sinks._http import (
    describe,
    display_url,
    error_for_status,
    parse_retry_after,
    scrub,
    send_splitting_on_413,
    server_message,
    warn_if_tls_unverified,
)

log = logging.getLogger(__name__)

GZIP_LEVEL = 1  # line protocol still shrinks ~3x; level 6 costs 4x the CPU (bench_replay)
_GZIP_WBITS = 31  # zlib's gzip framing: one call, ~20 % cheaper than gzip.compress (bench_replay)
# What a server's idle-timeout close of a kept-alive connection looks like on the next request.
_STALE_CONNECTION = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.BadStatusLine)


def auth_header(config: SinkConfig) -> dict[str, str]:
    """``Token`` (2.x/3.x v1-compat) when a token is set, else Basic from username/password, else none."""
    if config.token:
        return {"Authorization": f"Token {config.token}"}
    if config.username or config.password:
        pair = f"{config.username}:{config.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    return {}


def tls_context(config: SinkConfig) -> ssl.SSLContext:
    """Verify against the system CAs or ``ca_file``; ``verify_tls = false`` turns checking off."""
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class InfluxV1Sink:
    """Writes batches of line protocol to an InfluxDB v1 ``/write`` endpoint."""

    def __init__(
        self, config: SinkConfig, shipper: ShipperConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        query = {"db": config.database, "precision": PRECISION}
        if config.retention_policy:
            query["rp"] = config.retention_policy
        self._path = parts.path.rstrip("/") + "/write?" + urlencode(query)
        self._headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "User-Agent": f"hostmon/{__version__}",
            **auth_header(config),
        }
        self._gzip = shipper.gzip
        self._timeout_s = shipper.timeout_s
        self._tls = tls_context(config) if self._https else None
        self._secrets = (config.token, config.password)
        self._clock = clock
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        rp = f" rp={config.retention_policy}" if config.retention_policy else ""
        self._name = f"influxdb_v1 {display_url(config.url)} db={config.database}{rp}"
        warn_if_tls_unverified(self._name, config.url, config.verify_tls)

    @property
    def name(self) -> str:
        return self._name

    def write(self, lines: Sequence[str]) -> None:
        if lines:
            self.send(self.prepare(lines))

    def prepare(self, lines: Sequence[str]) -> PreparedBatch:
        """The request body: the lines joined, UTF-8, gzipped when ``shipper.gzip`` is on."""
        body = "\n".join(lines).encode("utf-8")
        return PreparedBatch(lines, zlib.compress(body, GZIP_LEVEL, _GZIP_WBITS) if self._gzip else body)

    def send(self, batch: PreparedBatch) -> None:
        def post(lines: Sequence[str]) -> None:  # the halves after a 413 get bodies of their own
            self._post(batch.body if lines is batch.lines else self.prepare(lines).body)

        if batch.lines:
            send_splitting_on_413(post, batch.lines)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _post(self, body: bytes) -> None:
        headers = dict(self._headers)
        if self._gzip:
            headers["Content-Encoding"] = "gzip"
        with self._lock:
            status, reply_headers, reply = self._request(body, headers)
        if not 200 <= status < 300:
            message = server_message(reply) or reply_headers.get("X-Influxdb-Error", "")
            retry_after_s = parse_retry_after(reply_headers.get("Retry-After"), self._clock())
            raise error_for_status(self._name, status, scrub(message, self._secrets), retry_after_s)

    def _request(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
        reused = self._conn is not None and self._conn.sock is not None
        try:
            try:
                return self._exchange(body, headers)
            except _STALE_CONNECTION:
                if not reused:
                    raise
                self._drop()  # the server closed the idle connection: one fresh try
                return self._exchange(body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise Unavailable(self._name, scrub(describe(exc), self._secrets)) from exc

    def _exchange(
        self, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout_s, context=self._tls
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        self._conn.request("POST", self._path, body=body, headers=dict(headers))
        response = self._conn.getresponse()
        reply = response.read()  # always read to the end, so the connection can be reused
        return response.status, response.headers, reply

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
