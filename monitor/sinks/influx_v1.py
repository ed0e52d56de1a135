"""InfluxDB v1 write API sink: ``POST /write?db=&rp=&precision=ms`` over one keep-alive connection.

Standard library only (``http.client``). Works with InfluxDB 1.x and with the v1-compatible
``/write`` of InfluxDB 2.x/3.x; the ``Authorization`` header follows
:func:`monitor.influxhttp.authorization` (a token wins over username/password).
``timeout_s`` bounds the connect and every socket read; it is not a total deadline for a
server that trickles bytes.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlencode

from monitor import __version__
from monitor.config import ShipperConfig, SinkConfig
from monitor.errors import Unavailable
from monitor.influxhttp import STALE_CONNECTION, Endpoint, authorization, describe, scrub, tls_context
from monitor.lineprotocol import PRECISION
from monitor.sinks import PreparedBatch
from monitor.sinks._http import (
    error_for_answer,
    send_splitting_on_413,
    server_message,
    warn_if_tls_unverified,
)

log = logging.getLogger(__name__)

GZIP_LEVEL = 1  # the fastest level: the agent's CPU counts for more than the bytes saved
_GZIP_WBITS = 31  # zlib's gzip framing, so one zlib.compress call writes the whole gzip body


# What a server's idle-timeout close of a kept-alive connection looks like on the next request.
class InfluxV1Sink:
    """Writes batches of line protocol to an InfluxDB v1 ``/write`` endpoint."""

    def __init__(
        self, config: SinkConfig, shipper: ShipperConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._endpoint = Endpoint.parse(config.url)
        query = {"db": config.database, "precision": PRECISION}
        if config.retention_policy:
            query["rp"] = config.retention_policy
        self._path = self._endpoint.base_path + "/write?" + urlencode(query)
        self._headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "User-Agent": f"hostmon/{__version__}",
            **authorization(config.token, config.username, config.password),
        }
        self._gzip = shipper.gzip
        self._timeout_s = shipper.timeout_s
        self._tls = tls_context(config.verify_tls, config.ca_file) if self._endpoint.https else None
        self._secrets = (config.token, config.password)
        self._clock = clock
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        rp = f" rp={config.retention_policy}" if config.retention_policy else ""
        self._name = f"influxdb_v1 {self._endpoint.display} db={config.database}{rp}"
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
            raise error_for_answer(
                self._name,
                status,
                message,
                reply_headers.get("Retry-After"),
                now_s=self._clock(),
                secrets=self._secrets,
            )

    def _request(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
        reused = self._conn is not None and self._conn.sock is not None
        try:
            try:
                return self._exchange(body, headers)
            except STALE_CONNECTION:
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
            self._conn = self._endpoint.connection(self._timeout_s, self._tls)
        self._conn.request("POST", self._path, body=body, headers=dict(headers))
        response = self._conn.getresponse()
        reply = response.read()  # always read to the end, so the connection can be reused
        return response.status, response.headers, reply

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
