"""Sinks: where the shipper sends spooled line protocol (InfluxDB v2 API, v1 API, SQLite).

Every sink takes a batch of lines exactly as the spool stored them (a spool row is one tick,
its lines joined by ``"\n"``; the shipper hands the sink the rows' lines, one line a
point) and either accepts the whole batch or raises one of :mod:`monitor.errors`'
``SinkError`` subclasses, which decide the batch's fate: ``Unavailable`` (keep, retry with
backoff, honour ``retry_after_s``), ``AuthFailed`` (keep, alert, retry) or ``Rejected`` (drop,
count, log the server's message).

A sink may also be a :class:`PreparingSink`: ``write`` split into ``prepare`` (local work:
join, encode, compress; no I/O, safe on another thread) and ``send``. The shipper then
prepares the next batch while the current one is in flight (:mod:`monitor.readahead`). A sink
without the split still works; only its local work stays on the critical path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from monitor.config import ShipperConfig, SinkConfig
from monitor.errors import ConfigError


class Sink(Protocol):
    """The one seam between the shipper and a database."""

    @property
    def name(self) -> str:
        """Where this sink writes, for logs and alerts (never contains a secret)."""
        ...

    def write(self, lines: Sequence[str]) -> None:
        """Write every line or raise ``Unavailable`` / ``AuthFailed`` / ``Rejected``."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PreparedBatch:
    """A batch with its request body built (``PreparingSink.prepare``), ready to ``send``."""

    lines: Sequence[str]  # what the body holds; kept for re-sending in halves (HTTP 413)
    body: bytes


@runtime_checkable
class PreparingSink(Sink, Protocol):
    """A sink whose local work can be done apart from, and before, sending the batch."""

    def prepare(self, lines: Sequence[str]) -> PreparedBatch:
        """Build the request body: no I/O, safe to call while another batch is being sent."""
        ...

    def send(self, batch: PreparedBatch) -> None:
        """``write(batch.lines)`` for a batch this sink prepared, without building it again."""
        ...


def make_sink(config: SinkConfig, shipper: ShipperConfig) -> Sink:
    """The sink ``config.kind`` names. Only ``influxdb_v2`` imports influxdb-client (~20 MB)."""
    if config.kind == "influxdb_v2":
        from monitor.sinks.influx_v2 import InfluxV2Sink

        return InfluxV2Sink(config, shipper)
    if config.kind == "influxdb_v1":
        from monitor.sinks.influx_v1 import InfluxV1Sink

        return InfluxV1Sink(config, shipper)
    if config.kind == "sqlite":
        from monitor.sinks.sqlite import SQLiteSink

        return SQLiteSink(config, shipper)
    raise ConfigError([f"sink.kind: unknown sink kind {config.kind!r}"])
