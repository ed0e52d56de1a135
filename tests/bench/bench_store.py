"""The embedded store on 30 days of 10-second samples of one host, and in a store of 1,000 hosts.

Generates 30 days of ticks as the agent's default collectors produce them (the host family
with two cores, two mounts, one disk, two interfaces; percentages and rates with two
decimals, near-constant sizes), writes them through the real SQLite sink in spool-sized
batches (cached under .cache/ once built), and measures, side by side in one run:

- bytes per stored value: the whole file, the raw tier alone, and the narrow table of
  schema 1 (one row per value, frozen below) holding the first day of the same data;
- through real HTTP, the API in a process of its own as ``hostmon api`` runs: ``/metrics`` over
  24 h and over 30 d, ``/metrics/aggregate`` over 24 h, p50 and p99 (and each /metrics
  request's first answer, before any chunk is decoded);
- the same per-host requests in a store of 1,000 hosts (999 simulated by copying the host's
  newest three hours under other names) and ``/hosts`` there.

Targets (issue 13): at most 10 bytes per raw value; p50 ``/metrics`` 24 h <= 50 ms, 30 d <=
150 ms, aggregate 24 h <= 5 ms; 1,000 hosts: per-host within 1.5x of one host, ``/hosts`` <= 50 ms.

    .venv/bin/python -m tests.bench.bench_store [--requests 30] [--days 30]
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import shutil
import sqlite3
import sys
import time
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor import catalog, chunkcodec, metricsdb
from monitor.api.stores import Query
from monitor.api.stores.sqlite import SQLiteStore
from monitor.api.views import choose_step
from monitor.config import ShipperConfig, SinkConfig
from monitor.formats import DAY_MS
from monitor.lineprotocol import Sample, encode
from monitor.sinks.sqlite import SQLiteSink
from tests import servers
from tests.bench.bench_api import latency, machine
from tests.bench.bench_api_vs_influxql import api_process

CACHE = Path(".cache") / "bench_store"
INTERVAL_MS = 10_000
HOST = "bench-host"
HOSTS = 1000
BATCH_TICKS = 5000  # the shipper's default batch_size
TARGETS = {"bytes_per_raw_value": 10.0, "metrics_24h": 50.0, "metrics_30d": 150.0, "aggregate_24h": 5.0}
TARGET_HOSTS_MS, TARGET_HOST_RATIO = 50.0, 1.5
CHEAP_REQUESTS = 200  # at least this many for the answers of a few milliseconds (aggregate, /hosts)
ENDPOINTS = {
    "metrics_24h": f"/metrics?start=1440&end=0&host={HOST}",
    "metrics_30d": f"/metrics?start=43200&end=0&host={HOST}",
    "aggregate_24h": f"/metrics/aggregate?metric=cpu_usage_overall&start=1440&end=0&host={HOST}",
    "hosts": "/hosts",
}
# Schema 1 (main at f390389), frozen: the narrow table this store replaces.
NARROW = """
CREATE TABLE points (metric TEXT NOT NULL, host TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '',
    ts_ms INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (metric, host, tags, ts_ms)) WITHOUT ROWID;
CREATE INDEX points_by_time ON points (ts_ms);
"""


class Walk:
    """A bounded random walk rounded to two decimals (a percentage, a load, a rate)."""

    def __init__(self, rnd: random.Random, lo: float, hi: float, step: float) -> None:
        self.rnd, self.lo, self.hi, self.step = rnd, lo, hi, step
        self.value = rnd.uniform(lo, hi)

    def __call__(self) -> float:
        self.value = min(self.hi, max(self.lo, self.value + self.rnd.gauss(0, self.step)))
        return round(self.value, 2)


def ticks(end_ms: int, days: float, host: str = HOST) -> list[str]:
    """Spool rows (one per tick: the host line, then one line per mount, disk, interface)."""
    rnd = random.Random(13)
    w = {name: Walk(rnd, 0, 100, 3) for name in ("cpu", "cpu1", "cpu2", "mem", "swap", "busy")}
    load = Walk(rnd, 0, 4, 0.05)
    rate = {name: Walk(rnd, 0, 5e6, 2e5) for name in ("rd", "wr", "tx", "rx")}
    used = {"/": 41.5, "/home": 73.25}
    count = int(days * 86_400_000 // INTERVAL_MS)
    rows = []
    for i in range(count):
        ts = end_ms - (count - i) * INTERVAL_MS
        rd, wr, tx, rx = (rate[k]() for k in ("rd", "wr", "tx", "rx"))
        fields = {"cpu_usage_overall": w["cpu"](), "memory_usage": w["mem"](), "disk_read": rd}
        fields |= {"disk_write": wr, "network_sent": tx, "network_recv": rx, "cpu_usage_1": w["cpu1"]()}
        fields |= {"cpu_usage_2": w["cpu2"](), "load_1": load(), "load_5": round(load.value * 0.9, 2)}
        fields |= {"load_15": round(load.value * 0.8, 2), "swap_used_percent": 2.5}
        fields |= {"swap_used_bytes": 104857600.0}
        lines = [encode(Sample(ts, host, fields), "system")]
        for mount, base in used.items():
            pct = round(base + (i // 8640) * 0.01, 2)  # a slow fill
            fs = {"filesystem_used_percent": pct, "filesystem_free_bytes": float(int(5e10 * (1 - pct / 100)))}
            fs |= {"filesystem_total_bytes": 5e10, "filesystem_inodes_used_percent": 3.17}
            lines.append(encode(Sample(ts, host, fs, (("mount", mount),), "filesystem"), "system"))
        disk = {"disk_read_bytes_per_s": rd, "disk_write_bytes_per_s": wr, "disk_busy_percent": w["busy"]()}
        lines.append(encode(Sample(ts, host, disk, (("device", "sda"),), "disk"), "system"))
        for nic, share in (("eth0", 0.9), ("eth1", 0.1)):
            net = {
                "network_sent_bytes_per_s": round(tx * share, 2),
                "network_recv_bytes_per_s": round(rx * share, 2),
            }
            net |= {f"network_{k}_per_s": 0.0 for k in ("errors_in", "errors_out", "drops_in", "drops_out")}
            lines.append(encode(Sample(ts, host, net, (("interface", nic),), "network"), "system"))
        rows.append("\n".join(lines))
    return rows


def build(path: Path, end_ms: int, days: float) -> dict[str, Any]:
    """Write DAYS of ticks through the real sink; the write time and the counts."""
    rows = ticks(end_ms, days)
    config = SinkConfig(kind="sqlite", path=path, retention_days=days + 1, max_db_bytes=64 * 1024**3)
    sink = SQLiteSink(config, ShipperConfig(), clock=lambda: end_ms / 1000)
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH_TICKS):
        sink.write(rows[i : i + BATCH_TICKS])
    sink.close()
    write_s = time.perf_counter() - started
    values = sum(len(line.split(" ")[1].split(",")) for row in rows[:1] for line in row.split("\n"))
    return {"ticks": len(rows), "values": values * len(rows), "write_s": round(write_s, 1)}


def narrow_bytes_per_value(work: Path, end_ms: int) -> float:
    """Bytes per value of the first day of the same ticks in the narrow schema-1 table."""
    rows = ticks(end_ms, 1.0)
    path = work / "narrow.db"
    conn = sqlite3.connect(path)
    conn.executescript(NARROW)
    from monitor.sinks.sqlite import to_rows

    values, _ = to_rows(rows)
    conn.executemany("INSERT INTO points VALUES (?, ?, ?, ?, ?)", values)
    conn.commit()
    conn.close()
    return path.stat().st_size / len(values)


def tier_bytes(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    sizes = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    conn.close()
    return {k: int(v) for k, v in sizes.items()}


def clone_hosts(source: Path, target: Path, hosts: int, newest_ms: int) -> None:
    """TARGET: SOURCE plus HOSTS - 1 hosts holding a copy of its newest three hours."""
    shutil.copy(source, target)
    conn = metricsdb.connect(target)
    since_ms = newest_ms - 3 * 3_600_000
    with conn:
        conn.execute("CREATE TEMP TABLE ids (old INTEGER, new INTEGER)")
        originals = conn.execute("SELECT id, metric, tags, last_ms, sealed_ms, last FROM series").fetchall()
        for n in range(1, hosts):
            for sid, metric, tags, last_ms, sealed_ms, last in originals:
                cur = conn.execute(
                    "INSERT INTO series (metric, host, tags, last_ms, sealed_ms, last)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (metric, f"host-{n:04d}", tags, last_ms - n, sealed_ms, last),
                )
                conn.execute("INSERT INTO ids VALUES (?, ?)", (sid, cur.lastrowid))
        conn.execute(
            "INSERT INTO chunks SELECT ids.new, start_ms, n, data FROM chunks JOIN ids ON series = ids.old"
            " WHERE start_ms >= ?",
            (since_ms - metricsdb.CHUNK_MS,),
        )
        conn.execute(
            "INSERT INTO recent SELECT ids.new, ts_ms, value FROM recent JOIN ids ON series = ids.old"
        )
        conn.execute(
            "INSERT INTO five_minute_days SELECT ids.new, day_ms, data FROM five_minute_days"
            " JOIN ids ON series = ids.old WHERE day_ms > ?",
            (since_ms - metricsdb.PACKED_DAY_MS,),
        )
        for tier in metricsdb.ROW_TIERS:
            conn.execute(
                f"INSERT INTO {tier} SELECT ids.new, bucket_ms, n, scale, sum, min, max, last_ms, last"
                f" FROM {tier} JOIN ids ON series = ids.old WHERE bucket_ms >= ?",
                (since_ms,),
            )
    conn.close()


def store_only(path: Path, end_ms: int, requests: int) -> dict[str, float]:
    """p50 ms of the store's own share of each request (counts, rows or aggregate, in-process)."""
    store = SQLiteStore(path)
    metrics = tuple(n for n in store.names() if catalog.family_of(n) == "host")
    out: dict[str, float] = {}
    for key, window_ms in (("metrics_24h", DAY_MS), ("metrics_30d", 30 * DAY_MS)):
        query = Query(metrics, end_ms - window_ms, end_ms, HOST)

        def metrics_once(query: Query = query, window_ms: int = window_ms) -> None:
            counts = store.counts(query)
            step_ms, _ = choose_step(None, sum(counts.values()), len(counts), window_ms, 10_000)
            store.rows(query, step_ms)

        out[key] = p50_ms(metrics_once, requests)
    out["aggregate_24h"] = p50_ms(
        lambda: store.aggregate("cpu_usage_overall", "mean", end_ms - DAY_MS, end_ms, HOST), requests
    )
    out["hosts"] = p50_ms(store.hosts, requests)
    return out


def p50_ms(call: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(1000 * sorted(times)[n // 2], 2)


def serve_and_measure(state: Path, now_s: float, requests: int) -> dict[str, Any]:
    """Latency of each endpoint from the API in a process of its own (as ``hostmon api`` runs:
    the bench's client does not share its interpreter); ``cold``: each /metrics request once
    first, when the new process has decoded no chunk yet."""
    raw = {"agent": {"state_dir": str(state)}, "api": {"port": servers.free_port()}}
    out: dict[str, Any] = {"cold": {}}
    with api_process(raw, now_s) as (url, _):
        for key in ("metrics_24h", "metrics_30d"):
            started = time.perf_counter()
            with urllib.request.urlopen(url + ENDPOINTS[key], timeout=60) as resp:
                resp.read()
            out["cold"][key] = round(1000 * (time.perf_counter() - started), 2)
        for key, path in ENDPOINTS.items():
            # a few-millisecond answer's p50 over 30 requests moves by 2 ms from run to run
            out[key] = latency(
                url + path, requests if key.startswith("metrics") else max(requests, CHEAP_REQUESTS)
            )
            print(f"  {state.name} {key}: {out[key]}", file=sys.stderr, flush=True)
    return out


def run(days: float = 30.0, requests: int = 30) -> dict[str, Any]:
    CACHE.mkdir(parents=True, exist_ok=True)
    end_ms = 1_790_000_000_000  # fixed, so the cached file stays valid; the API's clock is frozen here
    layout = "".join(metricsdb.SCHEMA) + inspect.getsource(chunkcodec)
    schema = zlib.crc32(layout.encode())  # a new layout or packing builds a new file
    one = CACHE / f"one-{days:g}d-{schema:08x}" / "metrics.db"
    meta_path = one.with_suffix(".json")
    if not meta_path.exists():
        shutil.rmtree(one.parent, ignore_errors=True)
        one.parent.mkdir(parents=True)
        meta_path.write_text(json.dumps(build(one, end_ms, days)))
    built = json.loads(meta_path.read_text())
    sizes = tier_bytes(one)
    raw_bytes = sizes.get("chunks", 0) + sizes.get("recent", 0)
    work = CACHE / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "fleet").mkdir(parents=True)
    report: dict[str, Any] = {"benchmark": "store", "machine": machine(), "days": days, **built}
    report["bytes"] = {
        "file": one.stat().st_size,
        "tiers": sizes,
        "per_value_file": round(one.stat().st_size / built["values"], 2),
        "per_value_raw_tier": round(raw_bytes / built["values"], 2),
        "per_value_narrow_schema_1": round(narrow_bytes_per_value(work, end_ms), 2),
    }
    report["one_host"] = serve_and_measure(one.parent, end_ms / 1000, requests)
    report["one_host_store_only"] = store_only(one, end_ms, requests)
    clone_hosts(one, work / "fleet" / "metrics.db", HOSTS, end_ms)
    report["fleet_file_bytes"] = (work / "fleet" / "metrics.db").stat().st_size
    report["thousand_hosts"] = serve_and_measure(work / "fleet", end_ms / 1000, requests)
    report["thousand_hosts_store_only"] = store_only(work / "fleet" / "metrics.db", end_ms, requests)
    shutil.rmtree(work, ignore_errors=True)
    report["targets"] = verdicts(report)
    print(table(report), flush=True)
    return report


def verdicts(report: dict[str, Any]) -> dict[str, bool]:
    one, fleet = report["one_host"], report["thousand_hosts"]
    out = {"bytes_per_raw_value": report["bytes"]["per_value_raw_tier"] <= TARGETS["bytes_per_raw_value"]}
    for key in ("metrics_24h", "metrics_30d", "aggregate_24h"):
        out[key] = one[key]["p50_ms"] <= TARGETS[key]
        out[f"{key}_1000_hosts_ratio"] = fleet[key]["p50_ms"] <= TARGET_HOST_RATIO * one[key]["p50_ms"]
    out["hosts_1000"] = fleet["hosts"]["p50_ms"] <= TARGET_HOSTS_MS
    return out


def table(report: dict[str, Any]) -> str:
    m, b = report["machine"], report["bytes"]
    lines = [
        f"Store benchmark: {report['days']:g} days at 10 s, {report['values']} values, "
        f"written in {report['write_s']} s; {m['nproc']} x {m['cpu_model']}",
        f"bytes/value: raw tier {b['per_value_raw_tier']}, whole file {b['per_value_file']} (with rollups), "
        f"narrow schema-1 table {b['per_value_narrow_schema_1']}",
        "p50 ms through HTTP (p99), and the store's own share in-process:",
        f"{'request':<16} {'1 host':>16} {'store':>7} {'1000 hosts':>16} {'store':>7} {'target':>7}",
    ]
    for key in ENDPOINTS:
        one, fleet = report["one_host"][key], report["thousand_hosts"][key]
        own, fleet_own = report["one_host_store_only"][key], report["thousand_hosts_store_only"][key]
        target = TARGETS.get(key, TARGET_HOSTS_MS if key == "hosts" else "")
        http_one = f"{one['p50_ms']} ({one['p99_ms']})"
        http_fleet = f"{fleet['p50_ms']} ({fleet['p99_ms']})"
        lines.append(f"{key:<16} {http_one:>16} {own:>7} {http_fleet:>16} {fleet_own:>7} {target!s:>7}")
    cold = report["one_host"]["cold"]
    lines.append(
        f"first request, no chunk decoded yet (1 host): metrics_24h {cold['metrics_24h']} ms,"
        f" metrics_30d {cold['metrics_30d']} ms"
    )
    missed = [k for k, ok in report["targets"].items() if not ok]
    lines.append("targets: " + ("all met" if not missed else "MISSED " + ", ".join(missed)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="sequential requests per latency figure")
    parser.add_argument("--days", type=float, default=30.0, help="days of 10-second samples")
    args = parser.parse_args()
    print(json.dumps(run(args.days, args.requests), indent=2))


if __name__ == "__main__":
    main()
