"""Replay: a day-long outage's backlog drained from the spool into InfluxDB 1.x.

86,400 one-second samples (the guide's fields, 2 cores) sit in the spool; the shipper drains
them into a real InfluxDB 1.6.7. In the same run the same line protocol is POSTed raw
(plain http.client, same batch size, no spool) into another database, two ways:

* ``raw POST``: uncompressed bodies, the fastest InfluxDB takes this data; the target's
  baseline.
* ``raw POST (gzip bodies)``: the very requests the shipper makes with gzip on, compressed
  before the clock starts, so it times only what InfluxDB spends on them (gunzip included).

Each is run five times, alternating, and the median of each is compared (the machine is
shared; the fastest is reported too). Before each run the bench waits until InfluxDB is idle
(its CPU time over half a second), so the snapshots and compactions a run leaves behind do not
land on the next one.
Target (issue 2): the shipper (gzip on, the default) at least 70 % of the raw speed.

    .venv/bin/python -m tests.bench.bench_replay [--samples 86400]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from monitor.config import ShipperConfig, SinkConfig, SpoolConfig
from monitor.lineprotocol import Sample, encode
from monitor.shipper import Shipper
from monitor.sinks import make_sink
from monitor.sinks.influx_v1 import GZIP_LEVEL
from monitor.spool import Spool
from tests import servers
from tests.bench.bench_agent import machine, thread_cpu_ns, window_cpu_s

BATCH = 5000
ROUNDS = 5


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


def bodies(lines: list[str], gzip: bool) -> list[bytes]:
    """The request bodies of BATCH lines each, gzipped as the v1 sink does when GZIP."""
    out = []
    for i in range(0, len(lines), BATCH):
        body = "\n".join(lines[i : i + BATCH]).encode()
        out.append(zlib.compress(body, GZIP_LEVEL, 31) if gzip else body)
    return out


def post_raw(url: str, db: str, lines: list[str], gzip: bool = False) -> float:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    headers = {"Content-Encoding": "gzip"} if gzip else {}
    prepared = bodies(lines, gzip)
    t0 = time.perf_counter()
    for body in prepared:
        conn.request("POST", f"/write?db={db}&precision=ms", body=body, headers=headers)
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


def wait_idle(pid: int, timeout_s: float = 60.0) -> None:
    """Until process PID uses under 5 % of a core over half a second (or TIMEOUT_S passes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = thread_cpu_ns(pid)
        time.sleep(0.5)
        if window_cpu_s(before, thread_cpu_ns(pid)) < 0.025:
            return


def count(url: str, db: str) -> int:
    res = servers.influx_query(url, 'SELECT count("memory_usage") FROM "system"', db)
    return int(res["results"][0]["series"][0]["values"][0][1])


def run(samples: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="hostmon-bench-replay-"))
    influx = servers.start_influxdb1(work / "influxdb")
    rows = day_of_lines(samples)
    lines = [line for _, line in rows]
    times: dict[str, list[float]] = {
        "raw POST": [],
        "raw POST (gzip bodies)": [],
        "shipper (gzip)": [],
        "shipper (no gzip)": [],
    }
    try:
        for rnd in range(ROUNDS):
            for i, label in enumerate(times):
                db = f"bench_{rnd}_{i}"
                servers.influx_query(influx.url, f'CREATE DATABASE "{db}"')
                wait_idle(influx.proc.pid)
                if label.startswith("raw POST"):
                    times[label].append(post_raw(influx.url, db, lines, gzip="gzip" in label))
                else:
                    times[label].append(drain(influx.url, db, rows, work, gzip="no" not in label))
                if count(influx.url, db) != samples:
                    raise RuntimeError(f"{label}: expected {samples} samples in {db}")
    finally:
        influx.stop()
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "benchmark": "spool replay into InfluxDB 1.x",
        "samples": samples,
        "machine": machine(),
        "rounds": ROUNDS,
        "seconds_median": {k: round(v, 2) for k, v in median.items()},
        "seconds_all": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "samples_per_s_median": {k: round(samples / v) for k, v in median.items()},
        "speed_vs_raw": {k: round(median["raw POST"] / v, 2) for k, v in median.items()},
        "speed_vs_raw_best": {k: round(best["raw POST"] / v, 2) for k, v in best.items()},
        "shipper_gzip_vs_raw_gzip_bodies": round(
            median["raw POST (gzip bodies)"] / median["shipper (gzip)"], 2
        ),
    }


def table(report: dict[str, object]) -> str:
    median, speed, best = report["seconds_median"], report["speed_vs_raw"], report["speed_vs_raw_best"]
    assert isinstance(median, dict) and isinstance(speed, dict) and isinstance(best, dict)
    title = f"replay of {report['samples']} samples"
    out = [f"{title:<26} {'median s':>9} {'vs raw':>7} {'best vs best':>13}"]
    for name, secs in median.items():
        out.append(f"{name:<26} {secs:>9.2f} {speed[name]:>7.2f} {best[name]:>13.2f}")
    same = report["shipper_gzip_vs_raw_gzip_bodies"]
    out.append(f"shipper (gzip) vs the same gzip bodies POSTed raw (medians): {same}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=86_400)
    report = run(ap.parse_args().samples)
    print(table(report))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
