"""``hostmon selftest``: write a few marked records to the configured database, read them back.

The original setup guide's ``influxdb_test.py`` check, against whatever the config points at.
The records are unmistakable: host tag ``hostmon-selftest-<random>`` and, on InfluxDB, their
own measurement ``hostmon_selftest`` (so dashboards never see them). On the embedded SQLite
store they are deleted again afterwards. They go through the same sink the agent uses and
come back through the same store the API uses, so a pass means both paths work.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable

from monitor.api.stores import Query, Series, make_store
from monitor.config import Config
from monitor.errors import MonitorError
from monitor.formats import number
from monitor.lineprotocol import Sample, encode
from monitor.sinks import make_sink

MEASUREMENT = "hostmon_selftest"
RECORDS = 3
READ_BACK_DEADLINE_S = 10.0


def fake_samples(host: str, now_s: float) -> list[Sample]:
    """RECORDS samples one second apart, ending a second ago, with distinctive values."""
    end_ms = (int(now_s) - 1) * 1000
    return [
        Sample(
            end_ms - (RECORDS - 1 - i) * 1000,
            host,
            {
                "cpu_usage_overall": 11.25 + i,
                "cpu_usage_1": 22.5 + i,
                "memory_usage": 33.75 + i,
                "disk_read": 4096.0 * (i + 1),
                "disk_write": 8192.0 * (i + 1),
                "network_sent": 1500.0 * (i + 1),
                "network_recv": 3000.0 * (i + 1),
            },
        )
        for i in range(RECORDS)
    ]


def _compare(expected: list[Sample], series: list[Series], metrics: tuple[str, ...]) -> str:
    """ "" when SERIES holds exactly EXPECTED, else the first difference in one line."""
    rows = [row for s in series for row in s.rows]
    if len(rows) != len(expected):
        return f"read back {len(rows)} records, expected {len(expected)}"
    for sample, (ts_ms, values) in zip(expected, sorted(rows, key=lambda r: r[0]), strict=True):
        if ts_ms != sample.ts_ms:
            return f"timestamp {ts_ms} read back, expected {sample.ts_ms}"
        for metric, value in zip(metrics, values, strict=True):
            if value != sample.fields[metric]:
                got = "None" if value is None else number(value)
                return f"{metric} at {ts_ms} read back as {got}, expected {number(sample.fields[metric])}"
    return ""


def run_selftest(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, list[str]]:
    """(passed, report lines). Never raises for database problems: they are the verdict."""
    host = f"hostmon-selftest-{secrets.token_hex(4)}"
    cfg = dataclasses.replace(config, sink=dataclasses.replace(config.sink, measurement=MEASUREMENT))
    samples = fake_samples(host, clock())
    metrics = tuple(samples[0].fields)
    sink = make_sink(cfg.sink, cfg.shipper)
    store = make_store(cfg)
    lines = [f"selftest: host tag {host}, {len(samples)} records, {len(metrics)} fields each"]
    try:
        sink.write([encode(s, MEASUREMENT) for s in samples])
        lines.append(f"selftest: wrote {len(samples)} records to {sink.name}")
        query = Query(metrics, samples[0].ts_ms, samples[-1].ts_ms + 1, host)
        deadline = clock() + READ_BACK_DEADLINE_S
        while True:  # some servers make writes visible a moment later
            problem = _compare(samples, store.rows(query), metrics)
            if not problem or clock() >= deadline:
                break
            sleep(0.5)
        if config.sink.kind == "sqlite":
            _delete_sqlite(cfg, host)
    except MonitorError as exc:
        lines.append(f"selftest: FAIL: {exc}")
        return False, lines
    finally:
        sink.close()
        store.close()
    if problem:
        lines.append(f"selftest: FAIL: {problem} (read from {store.name})")
        return False, lines
    lines.append(f"selftest: PASS: read {len(samples)} records back from {store.name}, all values equal")
    return True, lines


def _delete_sqlite(config: Config, host: str) -> None:
    from monitor import metricsdb, tiers

    conn = metricsdb.connect(config.sink.path)
    try:
        with conn:
            tiers.delete_host(conn, host)
    finally:
        conn.close()
