"""The server fixtures themselves: each real server starts, accepts a write and answers a read."""

from __future__ import annotations

import time
import urllib.request

import pytest

from tests import servers

pytestmark = pytest.mark.integration


def test_influxdb1_accepts_line_protocol_and_answers_influxql(influxdb1, influx_db):
    req = urllib.request.Request(
        f"{influxdb1.url}/write?db={influx_db}&precision=ms",
        data=b"system,host=a cpu_usage_overall=12.5 1700000000000",
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204
    result = servers.influx_query(influxdb1.url, 'SELECT "cpu_usage_overall" FROM "system"', influx_db)
    assert result["results"][0]["series"][0]["values"] == [[1700000000000, 12.5]]


def test_victoriametrics_exports_what_v2_write_received(victoriametrics):
    ts_ms = int(time.time()) * 1000  # VictoriaMetrics drops points older than its retention
    req = urllib.request.Request(
        f"{victoriametrics.url}/api/v2/write?precision=ms",
        data=f"system,host=vmtest memory_usage=42 {ts_ms}".encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204
    urllib.request.urlopen(f"{victoriametrics.url}/internal/force_flush", timeout=10).read()
    with urllib.request.urlopen(
        f"{victoriametrics.url}/api/v1/export?match[]={{host=%22vmtest%22}}", timeout=10
    ) as resp:
        body = resp.read().decode()
    assert '"__name__":"system_memory_usage"' in body
    assert "[42]" in body and f"[{ts_ms}]" in body
