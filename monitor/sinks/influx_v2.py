"""InfluxDB v2 write API sink (``/api/v2/write``, token + org + bucket) through ``influxdb-client``.

The only module that imports ``influxdb_client``; ``make_sink`` imports it only when
``sink.kind = "influxdb_v2"``, so the other sinks never load the library. The client's
synchronous write API sends the batch in one request, with no retries of its own (the
shipper owns retrying); its exceptions are translated here into ``monitor.errors``.
Works with InfluxDB 2.x/3.x and with VictoriaMetrics, which accepts ``/api/v2/write``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from monitor.config import ShipperConfig, SinkConfig
from monitor.errors import SinkError, Unavailable
from monitor.formats import one_line
from monitor.influxhttp import describe, display_url, scrub
from monitor.sinks._http import (
    error_for_answer,
    send_splitting_on_413,
    server_message,
    warn_if_tls_unverified,
)

log = logging.getLogger(__name__)


class InfluxV2Sink:
    """Writes batches of line protocol to ``/api/v2/write`` with ``precision=ms``."""

    def __init__(
        self, config: SinkConfig, shipper: ShipperConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._org = config.org
        self._bucket = config.bucket
        self._secrets = (config.token,)
        self._clock = clock
        self._name = f"influxdb_v2 {display_url(config.url)} org={config.org} bucket={config.bucket}"
        # Any: the foreign library is only partly typed; what it raises is translated below.
        self._client: Any = InfluxDBClient(
            url=config.url,
            token=config.token,
            org=config.org,
            timeout=max(1, int(shipper.timeout_s * 1000)),  # milliseconds
            enable_gzip=shipper.gzip,
            verify_ssl=config.verify_tls,
            ssl_ca_cert=str(config.ca_file) if config.ca_file else None,
        )
        self._write_api: Any = self._client.write_api(write_options=SYNCHRONOUS)
        warn_if_tls_unverified(self._name, config.url, config.verify_tls)

    @property
    def name(self) -> str:
        return self._name

    def write(self, lines: Sequence[str]) -> None:
        if lines:
            send_splitting_on_413(self._post, lines)

    def close(self) -> None:
        self._write_api.close()
        self._client.close()

    def _post(self, lines: Sequence[str]) -> None:
        body = "\n".join(lines).encode("utf-8")  # bytes go out as they are, never re-serialised
        try:
            self._write_api.write(
                bucket=self._bucket, org=self._org, record=body, write_precision=WritePrecision.MS
            )
        except ApiException as exc:
            raise self._status_error(exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(self._name, scrub(describe(exc), self._secrets)) from exc

    def _status_error(self, exc: Any) -> SinkError:
        status = int(exc.status or 0)
        if status == 0:  # no HTTP answer, e.g. a TLS handshake failure
            reason = one_line(f"no answer: {exc.reason}")
            return Unavailable(self._name, scrub(reason, self._secrets))
        headers = exc.headers or {}
        message = server_message(exc.body) or one_line(str(exc.reason or ""))
        return error_for_answer(
            self._name,
            status,
            message,
            headers.get("Retry-After"),
            now_s=self._clock(),
            secrets=self._secrets,
        )
