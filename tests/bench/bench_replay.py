"""Replay: a day-long outage's backlog drained from the spool into InfluxDB 1.x.

86,400 one-second samples (all seed fields, 2 cores) sit in the spool; the shipper drains
them into a real InfluxDB 1.6.7. In the same run the same line protocol is POSTed raw
(plain http.client, same batch size, no spool, no gzip) into another database. Each is run
twice, alternating, and the faster of each is kept. Target (issue 2): the shipper at
least 70 % of the raw speed.

    .venv/bin/python -m tests.bench.bench_replay [--samples 86400]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from monitor.config import ShipperConfig, SinkConfig, SpoolConfig
from monitor.lineprotocol import Sample, encode
from monitor.shipper import Shipper
from monitor.sinks import make_sink
from monitor.spool import Spool
from tests import servers
from tests.bench.bench_agent import machine

BATCH = 5000


def day_of_lines(n: int) -> list[tuple[int, str]]:
    rnd = random.Random(1)
    start_ms = (int(time.time()) - n) * 1000
    rows = []
    for i in range(n):
        fields = {
            "cpu_usage_overall": rnd.uniform(0, 100),
            "cpu_usage_1": rnd.uniform(0, 100),
            "cpu_usage_2": rnd.uniform(0, 100),
            "memory_usage": rnd.uniform(0, 100),
            "disk_read": float(rnd.randrange(0, 10**8)),
            "disk_write": float(rnd.randrange(0, 10**8)),
            "network_sent": float(rnd.randrange(0, 10**7)),
            "network_recv": float(rnd.randrange(0, 10**7)),
        }
        ts = start_ms + i * 1000
        rows.append((ts, encode(Sample(ts, "bench-host", fields), "system")))
    return rows


def post_raw(url: str, db: str, lines: list[str]) -> float:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    t0 = time.perf_counter()
    for i in range(0, len(lines), BATCH):
        conn.request("POST", f"/write?db={db}&precision=ms", body="\n".join(lines[i : i + BATCH]).encode())
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise RuntimeError(f"raw write failed: {resp.status}")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def drain(url: str, db: str, rows: list[tuple[int, str]], work: Path, gzip: bool) -> float:
    spool_cfg = SpoolConfig(
        path=work / f"spool-{db}.db",
        max_spool_bytes=4096 * 1024 * 1024,
        buffer_size=10_000_000,
        spill_path=work / "spill.lp",
    )
    spool = Spool(spool_cfg)
    for ts, line in rows:
        spool.append(ts, line)
    ship_cfg = ShipperConfig(batch_size=BATCH, gzip=gzip, timeout_s=60)
    sink = make_sink(SinkConfig(kind="influxdb_v1", url=url, database=db), ship_cfg)
    shipper = Shipper(spool, sink, ship_cfg)
    t0 = time.perf_counter()
    while shipper.ship_once():
        pass
    elapsed = time.perf_counter() - t0
    left = spool.status().depth
    sink.close()
    spool.close()
    if left:
        raise RuntimeError(f"{left} samples left in the spool")
    return elapsed


def count(url: str, db: str) -> int:
    res = servers.influx_query(url, 'SELECT count("memory_usage") FROM "system"', db)
    return int(res["results"][0]["series"][0]["values"][0][1])


def run(samples: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="hostmon-bench-replay-"))
    influx = servers.start_influxdb1(work / "influxdb")
    rows = day_of_lines(samples)
    lines = [line for _, line in rows]
    times: dict[str, list[float]] = {"raw POST": [], "shipper (gzip)": [], "shipper (no gzip)": []}
    try:
        for rnd in range(2):
            for i, label in enumerate(times):
                db = f"bench_{rnd}_{i}"
                servers.influx_query(influx.url, f'CREATE DATABASE "{db}"')
                if label == "raw POST":
                    times[label].append(post_raw(influx.url, db, lines))
                else:
                    times[label].append(drain(influx.url, db, rows, work, gzip="no" not in label))
                if count(influx.url, db) != samples:
                    raise RuntimeError(f"{label}: expected {samples} samples in {db}")
    finally:
        influx.stop()
    best = {k: min(v) for k, v in times.items()}
    raw = best["raw POST"]
    return {
        "benchmark": "spool replay into InfluxDB 1.x",
        "samples": samples,
        "machine": machine(),
        "seconds_best_of_2": {k: round(v, 2) for k, v in best.items()},
        "samples_per_s": {k: round(samples / v) for k, v in best.items()},
        "speed_vs_raw": {k: round(raw / v, 2) for k, v in best.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=86_400)
    report = run(ap.parse_args().samples)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
