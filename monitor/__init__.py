"""hostmon: a host-monitoring agent (psutil collector, durable spool, InfluxDB/SQLite sinks,
alerts) and the HTTP API that reads what it stored."""

from __future__ import annotations

__version__ = "0.1.0"
