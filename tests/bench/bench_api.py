"""API latency and throughput on 24 h of 1-second samples, on SQLite and on InfluxDB 1.6.7.

Loads 86 400 samples (the original setup guide's fields, two cores) into a SQLite file and
into a real InfluxDB 1.6.7 started for the run, serves the API on each with waitress on a
loopback port, and measures through HTTP:

- p50/p99 latency of ``/metrics/aggregate`` over 24 h and of ``/metrics`` over 1 h (default
  cap), plus ``/metrics`` over 24 h (downsampled to the cap) for reference;
- requests per second under concurrent load from a second process (a bounded loop of
  requests on a few threads, to 127.0.0.1 only, bounded in count and time).

Target (issue 3): aggregate over 24 h under 50 ms p50 on SQLite. Then the API over InfluxDB
against the same questions asked of InfluxDB directly (``bench_api_vs_influxql``: issue 13's
target, at most 1.3x). Prints a JSON summary and
a table; the EXPLAIN QUERY PLAN of the SQLite aggregate is included to show why it is fast.

    .venv/bin/python -m tests.bench.bench_api [--requests 100] [--load-seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monitor import metricsdb, tiers
from monitor.api import serve
from monitor.api.stores.sqlite_tiers import TIER_SQL
from monitor.config import Config, parse
from monitor.lineprotocol import Sample, encode
from tests import servers
from tests.bench import bench_api_vs_influxql

SECONDS = 86_400
FIELDS = (
    "cpu_usage_overall",
    "cpu_usage_1",
    "cpu_usage_2",
    "memory_usage",
    "disk_read",
    "disk_write",
    "network_sent",
    "network_recv",
)
HOST = "bench-host"
TARGET_AGGREGATE_P50_MS = 50.0
ENDPOINTS = {
    "aggregate_24h": "/metrics/aggregate?metric=cpu_usage_overall&start=1440&end=0",
    "metrics_1h": "/metrics?start=60&end=0",
    "metrics_24h_capped": "/metrics?start=1440&end=0",
}
LOAD_ENDPOINTS = ("aggregate_24h", "metrics_1h")

# The second process: a bounded loop of GETs on a few threads, loopback only.
LOAD_SCRIPT = r"""
import json, sys, threading, time, urllib.request
url, threads, max_requests, max_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
assert url.startswith("http://127.0.0.1:"), url
lock = threading.Lock(); sent = [0]; errors = [0]; latencies = []
deadline = time.monotonic() + max_s
def worker():
    while time.monotonic() < deadline:
        with lock:
            if sent[0] >= max_requests:
                return
            sent[0] += 1
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
                ok = r.status == 200
        except Exception:
            ok = False
        with lock:
            latencies.append(time.perf_counter() - t)
            errors[0] += not ok
started = time.perf_counter()
pool = [threading.Thread(target=worker) for _ in range(threads)]
[t.start() for t in pool]; [t.join() for t in pool]
elapsed = time.perf_counter() - started
latencies.sort()
print(json.dumps({"requests": len(latencies), "errors": errors[0], "elapsed_s": elapsed,
                  "rps": len(latencies) / elapsed, "p50_ms": 1000 * latencies[len(latencies) // 2]}))
"""


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": sys.version.split()[0]}


def day_of_samples(end_ms: int) -> list[Sample]:
    rnd = random.Random(7)
    start_ms = end_ms - SECONDS * 1000
    return [
        Sample(start_ms + i * 1000, HOST, {f: round(rnd.uniform(0, 100), 3) for f in FIELDS})
        for i in range(SECONDS)
    ]


def load_sqlite(path: Path, samples: list[Sample]) -> float:
    started = time.perf_counter()
    conn = metricsdb.connect(path)
    with conn:
        tiers.store(conn, ((m, s.host, "", s.ts_ms, v) for s in samples for m, v in s.fields.items()), {})
    conn.close()
    return time.perf_counter() - started


def load_influx(url: str, db: str, samples: list[Sample]) -> float:
    servers.influx_query(url, f'CREATE DATABASE "{db}"')
    started = time.perf_counter()
    for i in range(0, len(samples), 5000):
        body = "\n".join(encode(s, "system") for s in samples[i : i + 5000]).encode()
        req = urllib.request.Request(f"{url}/write?db={db}&precision=ms", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            assert resp.status == 204
    return time.perf_counter() - started


@contextmanager
def api(config: Config, now_s: float) -> Iterator[str]:
    """The API on CONFIG, its clock frozen at NOW_S so every run sees the same full windows."""
    stop = threading.Event()
    ready: list[str] = []
    kwargs = {"stop": stop, "on_ready": ready.append, "clock": lambda: now_s}
    thread = threading.Thread(target=serve, args=(config,), kwargs=kwargs)
    thread.start()
    deadline = time.monotonic() + 10
    while not ready and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(30)


def latency(url: str, n: int) -> dict[str, Any]:
    """Wall time of N sequential GETs (request to last body byte, as curl sees it)."""

    def once() -> tuple[float, bytes]:
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as resp:
            body = resp.read()
        return time.perf_counter() - started, body

    for _ in range(3):
        once()  # warm-up (page cache, InfluxDB's series index)
    runs = [once() for _ in range(n)]
    times = sorted(t for t, _ in runs)
    answer = json.loads(runs[-1][1])
    shape = {k: answer[k] for k in ("raw_samples", "points", "step_s", "samples") if k in answer}
    return {
        "p50_ms": round(1000 * times[len(times) // 2], 2),
        "p99_ms": round(1000 * times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "mean_ms": round(1000 * statistics.fmean(times), 2),
        "n": n,
        "body_bytes": len(runs[-1][1]),
        "answer": shape,
    }


def load(url: str, threads: int, max_requests: int, max_s: float) -> dict[str, Any]:
    args = [sys.executable, "-c", LOAD_SCRIPT, url, str(threads), str(max_requests), str(max_s)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=max_s + 60, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}


def sqlite_plan(path: Path) -> list[str]:
    conn = metricsdb.connect(path)
    params = {"sid": 1, "start": 0, "end": 1}
    rows = conn.execute("EXPLAIN QUERY PLAN " + TIER_SQL["mean"].format(tier="hours"), params).fetchall()
    conn.close()
    return [str(r[-1]) for r in rows]


def bench_store(name: str, config: Config, now_s: float, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"latency": {}, "load": {}}
    with api(config, now_s) as url:
        for key, path in ENDPOINTS.items():
            n = args.requests if key in LOAD_ENDPOINTS else max(10, args.requests // 5)
            result["latency"][key] = latency(url + path, n)
            print(f"  {name} {key}: {result['latency'][key]}", file=sys.stderr, flush=True)
        for key in LOAD_ENDPOINTS:
            result["load"][key] = load(
                url + ENDPOINTS[key], args.threads, args.load_requests, args.load_seconds
            )
    return result


def run(
    requests: int = 100, load_seconds: float = 8.0, threads: int = 4, load_requests: int = 5000
) -> dict[str, Any]:
    args = argparse.Namespace(
        requests=requests, load_seconds=load_seconds, threads=threads, load_requests=load_requests
    )
    work = Path(tempfile.mkdtemp(prefix="hostmon-bench-api-"))
    influx = servers.start_influxdb1(work / "influxdb")
    report: dict[str, Any] = {
        "benchmark": "api",
        "machine": machine(),
        "samples": SECONDS,
        "fields": len(FIELDS),
    }
    try:
        now_s = float(int(time.time()))
        samples = day_of_samples(int(now_s * 1000))
        sqlite_path = work / "state" / "metrics.db"
        report["load_s"] = {"sqlite": round(load_sqlite(sqlite_path, samples), 2)}
        report["load_s"]["influxdb1"] = round(load_influx(influx.url, "bench", samples), 2)
        del samples
        report["sqlite_db_bytes"] = sqlite_path.stat().st_size
        report["sqlite_aggregate_plan"] = sqlite_plan(sqlite_path)
        base = {
            "agent": {"state_dir": str(work / "state")},
            "api": {"port": servers.free_port(), "threads": 8},
        }
        report["sqlite"] = bench_store("sqlite", parse(base, environ={}), now_s, args)
        influx_cfg = {**base, "sink": {"kind": "influxdb_v1", "url": influx.url, "database": "bench"}}
        influx_cfg["api"] = {**base["api"], "port": servers.free_port()}
        report["influxdb1"] = bench_store("influxdb1", parse(influx_cfg, environ={}), now_s, args)
        influx_cfg["api"] = {**base["api"], "port": servers.free_port()}
        with api(parse(influx_cfg, environ={}), now_s) as url:
            report["influxdb1_vs_influxql"] = bench_api_vs_influxql.compare(
                url, influx.url, "bench", FIELDS, int(now_s * 1000), influx.proc.pid
            )
        p50 = report["sqlite"]["latency"]["aggregate_24h"]["p50_ms"]
        report["target"] = {
            "sqlite_aggregate_24h_p50_ms": TARGET_AGGREGATE_P50_MS,
            "met": p50 < TARGET_AGGREGATE_P50_MS,
        }
    finally:
        influx.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(table(report), flush=True)
    return report


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"API benchmark: {report['samples']} samples x {report['fields']} fields (24 h at 1 s), "
        f"{m['nproc']} x {m['cpu_model']}",
        f"{'store':<10} {'request':<20} {'p50 ms':>8} {'p99 ms':>8} {'req/s (load)':>13}",
    ]
    for store in ("sqlite", "influxdb1"):
        for key, lat in report[store]["latency"].items():
            rps = report[store]["load"].get(key, {}).get("rps", "")
            lines.append(f"{store:<10} {key:<20} {lat['p50_ms']:>8} {lat['p99_ms']:>8} {rps!s:>13}")
    lines.append(bench_api_vs_influxql.table(report["influxdb1_vs_influxql"]))
    t = report["target"]
    verdict = "met" if t["met"] else "MISSED"
    lines.append(f"target: SQLite aggregate 24 h p50 < {t['sqlite_aggregate_24h_p50_ms']} ms: {verdict}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="sequential requests per latency figure")
    parser.add_argument("--load-seconds", type=float, default=8.0, help="time limit of each load run")
    parser.add_argument("--threads", type=int, default=4, help="threads of the load process")
    parser.add_argument("--load-requests", type=int, default=5000, help="request limit of each load run")
    args = parser.parse_args()
    report = run(args.requests, args.load_seconds, args.threads, args.load_requests)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
