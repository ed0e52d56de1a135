"""Fleet: how many agents at a 10-second interval one InfluxDB 1.6.7 takes before writes degrade.

Each step starts N simulated agents against one real InfluxDB 1.6.7 (``servers.start_influxdb1``).
An agent is the real thing from the spool on: its own ``Spool`` (SQLite, WAL, fsync per append),
the real ``Shipper`` and the real ``influxdb_v1`` sink over HTTP with gzip, keeping its own
keep-alive connection. Every 10 s each agent spools one tick (the host line with 13 fields
and three tagged lines: a filesystem, a disk, a network interface; encoded by
``lineprotocol.encode``) and calls ``Shipper.ship_once``: what the shipper does every flush
interval in steady state. The agents' phases are spread evenly across the 10 s, as a fleet's
start times spread them. Spools live on tmpfs (``/dev/shm`` when present): on a fleet every
agent has its own disk, here the fsyncs of thousands of agents would share one.

The agents run in worker processes (up to AGENTS_PER_PROCESS each, THREADS_PER_PROCESS threads
taking the ticks as they fall due), so the GIL of one interpreter is not the client's limit.
Per step, over the measured window after one warm-up interval (the first tick opens each
agent's connection):

* write latency p50/p99/max: the time the sink's ``write`` took (join, gzip, POST, answer);
* errors: writes the sink raised on (each is one batch kept in a spool for the next tick);
* backlog: samples left in the spools after the agents' last tick (0 when every agent kept up);
* client lag p99: how late a tick started against its schedule (the client's own health: when
  it exceeds a second while the writes are fine, the client, not the server, is the limit and
  the step proves nothing about the server);
* CPU seconds per second of influxd and of the workers, from ``/proc/PID/stat``; influxd's RSS.

A step *holds* when p99 latency <= 1 s, no write failed and no backlog is left; the ladder
stops at the first step that does not hold. A step without failed writes whose client ran more
than a second late is *client-bound* instead: a starved client's latencies include its own
wait for the CPU, so they say nothing about the server. The pool is large enough that a
server slower than P99_LIMIT_S does not make the ticks late before it fails writes.
The machine's cores are shared by server and client: "agents per server core" divides N by
the cores influxd used, the figure to scale from.

    .venv/bin/python -m tests.bench.bench_fleet [--agents 100,200,400,...] [--seconds 40] [--quick]
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monitor.catalog import METRICS, Family
from monitor.config import ShipperConfig, SinkConfig, SpoolConfig
from monitor.lineprotocol import Sample, Tags, encode
from monitor.shipper import Shipper
from monitor.sinks import Sink, make_sink
from monitor.spool import Spool
from tests import servers
from tests.bench.bench_agent import cpu_s, machine, status_mb

INTERVAL_S = 10.0
LADDER = (100, 200, 400, 800, 1600, 3200, 6400, 12800)
QUICK_LADDER = (800, 3200, 6400)  # what `make bench` runs
SECONDS = 40.0  # measured window per step: four ticks of every agent
QUICK_SECONDS = 20.0
AGENTS_PER_PROCESS = 800
# Writes in flight per process: 800 agents make 80 writes/s, so 100 threads stay free while
# writes take up to 1.25 s, past P99_LIMIT_S: the pool never hides a slow server.
THREADS_PER_PROCESS = 100
P99_LIMIT_S = 1.0
LAG_LIMIT_S = 1.0
DATABASE = "fleet"


# -- one simulated agent -------------------------------------------------------------------------


VALUES_BY_UNIT: dict[str, Callable[[random.Random], float]] = {
    "percent": lambda rnd: round(rnd.uniform(0, 100), 2),
    "bytes/s": lambda rnd: float(rnd.randrange(10**7)),
    "bytes": lambda rnd: float(rnd.randrange(10**9, 10**11)),
    "1/s": lambda rnd: 0.0,
    "load": lambda rnd: round(rnd.uniform(0, 4), 2),
}
# One tick of a 2-core host: the host line (13 fields) and one filesystem, disk and network line.
SERIES: tuple[tuple[Family, Tags], ...] = (
    ("host", ()),
    ("filesystem", (("mount", "/"),)),
    ("disk", (("device", "vda"),)),
    ("network", (("interface", "eth0"),)),
)


def tick_lines(host: str, ts_ms: int, rnd: random.Random) -> list[str]:
    """The lines of one tick: every catalog metric of each of SERIES, values by its unit."""
    lines = []
    for family, tags in SERIES:
        fields = {m.name: VALUES_BY_UNIT[m.unit](rnd) for m in METRICS if m.family == family}
        if family == "host":
            fields.update(
                cpu_usage_1=VALUES_BY_UNIT["percent"](rnd), cpu_usage_2=VALUES_BY_UNIT["percent"](rnd)
            )
        lines.append(encode(Sample(ts_ms, host, fields, tags, family), "system"))
    return lines


class TimedSink:
    """The real sink, its ``write`` timed: the latency an agent sees for one request."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self.last_s = 0.0
        self.failed = 0

    @property
    def name(self) -> str:
        return self._sink.name

    def write(self, lines: Sequence[str]) -> None:
        t0 = time.perf_counter()
        try:
            self._sink.write(lines)
        except Exception:
            self.failed += 1
            raise
        finally:
            self.last_s = time.perf_counter() - t0

    def close(self) -> None:
        self._sink.close()


@dataclass
class Agent:
    host: str
    phase_s: float
    spool: Spool
    sink: TimedSink
    shipper: Shipper
    rnd: random.Random


@dataclass
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    lags_s: list[float] = field(default_factory=list)
    errors: int = 0
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_agent(index: int, total: int, url: str, spool_dir: Path) -> Agent:
    spool = Spool(
        SpoolConfig(path=spool_dir / f"spool-{index}.db", spill_path=spool_dir / f"spill-{index}.lp")
    )
    ship_cfg = ShipperConfig(flush_interval_s=INTERVAL_S)
    sink = TimedSink(make_sink(SinkConfig(kind="influxdb_v1", url=url, database=DATABASE), ship_cfg))
    shipper = Shipper(spool, sink, ship_cfg)
    return Agent(f"fleet-{index:05d}", INTERVAL_S * index / total, spool, sink, shipper, random.Random(index))


def worker(url: str, first: int, count: int, total: int, spool_dir: Path) -> None:
    """A worker process: build COUNT agents, say ready, run them from the start time on stdin."""
    logging.basicConfig(level=logging.ERROR)  # a failed write is counted, not logged per agent
    agents = [make_agent(i, total, url, spool_dir) for i in range(first, first + count)]
    print("ready", flush=True)
    start_s, warmup_s, seconds = (float(x) for x in sys.stdin.readline().split())
    window = (start_s + warmup_s, start_s + warmup_s + seconds)
    tally = Tally()
    due: list[tuple[float, int]] = []
    for n, a in enumerate(agents):
        first_tick = start_s + a.phase_s % INTERVAL_S
        heapq.heappush(due, (first_tick, n))
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                if not due or due[0][0] >= window[1]:
                    return
                when, n = heapq.heappop(due)
            delay = when - time.time()
            if delay > 0:
                time.sleep(delay)
            lag = max(0.0, -delay)
            agent = agents[n]
            for line in tick_lines(agent.host, int(when * 1000), agent.rnd):
                agent.spool.append(int(when * 1000), line)
            before = agent.sink.failed
            agent.shipper.ship_once()
            if window[0] <= when < window[1]:
                with tally.lock:
                    tally.writes += 1
                    tally.lags_s.append(lag)
                    tally.latencies_s.append(agent.sink.last_s)
                    tally.errors += agent.sink.failed - before
            with lock:
                heapq.heappush(due, (when + INTERVAL_S, n))

    threads = [threading.Thread(target=run) for _ in range(min(THREADS_PER_PROCESS, count))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    backlog = sum(a.spool.status().depth for a in agents)
    for a in agents:
        a.sink.close()
        a.spool.close()
    print(
        json.dumps(
            {
                "latencies_s": tally.latencies_s,
                "lags_s": tally.lags_s,
                "errors": tally.errors,
                "writes": tally.writes,
                "backlog": backlog,
            }
        ),
        flush=True,
    )


# -- the ladder ----------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def step(influx: servers.Server, n: int, seconds: float, work: Path) -> dict[str, object]:
    """N agents for one warm-up interval and SECONDS measured: the step's row."""
    spool_root = Path(tempfile.mkdtemp(prefix="hostmon-bench-fleet-", dir=tmpfs_or(work)))
    procs_n = math.ceil(n / AGENTS_PER_PROCESS)
    sizes = [n // procs_n + (1 if i < n % procs_n else 0) for i in range(procs_n)]
    procs, first = [], 0
    t_setup = time.monotonic()
    for size in sizes:
        args = [sys.executable, "-m", "tests.bench.bench_fleet", "--worker", influx.url, str(first)]
        args += [str(size), str(n), str(spool_root)]
        procs.append(subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        first += size
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"worker {p.pid} did not start")
        setup_s = time.monotonic() - t_setup
        start = time.time() + 0.5
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{start} {INTERVAL_S} {seconds}\n")
            p.stdin.flush()
        time.sleep(max(0.0, start + INTERVAL_S - time.time()))
        cpu0 = {"influxd": cpu_s(influx.proc.pid), "client": sum(cpu_s(p.pid) for p in procs)}
        t0 = time.monotonic()
        time.sleep(max(0.0, start + INTERVAL_S + seconds - time.time()))
        window_s = time.monotonic() - t0
        cpu1 = {"influxd": cpu_s(influx.proc.pid), "client": sum(cpu_s(p.pid) for p in procs)}
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(spool_root, ignore_errors=True)
    latencies = [x for r in results for x in r["latencies_s"]]
    lags = [x for r in results for x in r["lags_s"]]
    errors = sum(r["errors"] for r in results)
    backlog = sum(r["backlog"] for r in results)
    influx_cores = (cpu1["influxd"] - cpu0["influxd"]) / window_s
    client_cores = (cpu1["client"] - cpu0["client"]) / window_s
    p99, lag99 = quantile(latencies, 0.99), quantile(lags, 0.99)
    if errors or backlog:
        verdict = "degraded"  # the server failed writes (a stall long enough also delays the ticks)
    elif lag99 > LAG_LIMIT_S:
        verdict = "client-bound"  # a starved client: its latencies include waiting for the CPU
    elif p99 > P99_LIMIT_S:
        verdict = "degraded"
    else:
        verdict = "held"
    return {
        "agents": n,
        "processes": procs_n,
        "setup_s": round(setup_s, 1),
        "writes": sum(r["writes"] for r in results),
        "writes_per_s": round(sum(r["writes"] for r in results) / seconds, 1),
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "latency_ms_p99": round(p99 * 1000, 1),
        "latency_ms_max": round(max(latencies, default=float("nan")) * 1000, 1),
        "errors": errors,
        "backlog_samples": backlog,
        "client_lag_ms_p99": round(lag99 * 1000, 1),
        "influxd_cores": round(influx_cores, 3),
        "client_cores": round(client_cores, 3),
        "agents_per_influxd_core": round(n / influx_cores) if influx_cores > 0 else None,
        "influxd_rss_mb": round(status_mb(influx.proc.pid, "VmRSS")),
        "verdict": verdict,
    }


def tmpfs_or(work: Path) -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else work


def raise_open_files() -> None:
    """Every agent holds a spool (3 files) and a connection: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(
    ladder: Sequence[int], seconds: float, progress: Callable[[str], object] | None = None
) -> dict[str, object]:
    raise_open_files()  # before influxd starts: it inherits the limit, for N connections
    work = Path(tempfile.mkdtemp(prefix="hostmon-bench-fleet-"))
    influx = servers.start_influxdb1(work / "influxdb")
    servers.influx_query(influx.url, f'CREATE DATABASE "{DATABASE}"')
    rows: list[dict[str, object]] = []
    try:
        for n in ladder:
            row = step(influx, n, seconds, work)
            rows.append(row)
            if progress is not None:
                progress(step_line(row))
            if row["verdict"] != "held":
                break
    finally:
        influx.stop()
        shutil.rmtree(work, ignore_errors=True)
    held = [r for r in rows if r["verdict"] == "held"]
    best = held[-1] if held else None
    return {
        "benchmark": "fleet: agents at a 10 s interval into one InfluxDB 1.6.7",
        "machine": machine(),
        "load_average": os.getloadavg(),
        "interval_s": INTERVAL_S,
        "seconds_per_step": seconds,
        "lines_per_tick": len(SERIES),
        "values_per_tick": sum(line.split(" ")[1].count("=") for line in tick_lines("h", 0, random.Random())),
        "limits": {"latency_p99_s": P99_LIMIT_S, "client_lag_p99_s": LAG_LIMIT_S},
        "steps": rows,
        "largest_held": best["agents"] if best else 0,
        "agents_per_influxd_core": best["agents_per_influxd_core"] if best else None,
        "stopped_by": rows[-1]["verdict"] if rows and rows[-1]["verdict"] != "held" else "end of ladder",
    }


def step_line(r: dict[str, object]) -> str:
    return (
        f"{r['agents']:>6} {r['writes_per_s']:>8} {r['latency_ms_p50']:>8} {r['latency_ms_p99']:>8}"
        f" {r['errors']:>6} {r['backlog_samples']:>8} {r['client_lag_ms_p99']:>8}"
        f" {r['influxd_cores']:>8} {r['client_cores']:>7} {r['influxd_rss_mb']:>6} {r['verdict']:>12}"
    )


HEADER = (
    f"{'agents':>6} {'writes/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'backlog':>8}"
    f" {'lag99 ms':>8} {'influxd':>8} {'client':>7} {'RSS MB':>6} {'verdict':>12}"
)


def table(report: dict[str, object]) -> str:
    steps = report["steps"]
    assert isinstance(steps, list)
    out = ["fleet into one InfluxDB 1.6.7 (cores used by influxd and by the client; influxd RSS)", HEADER]
    out += [step_line(r) for r in steps]
    out.append(
        f"largest N that held: {report['largest_held']}; agents per influxd core there:"
        f" {report['agents_per_influxd_core']}; stopped by: {report['stopped_by']}"
    )
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, first, count, total, spool_dir = sys.argv[2:7]
        worker(url, int(first), int(count), int(total), Path(spool_dir))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", help="comma-separated steps, e.g. 100,200,400")
    ap.add_argument("--seconds", type=float, help=f"measured seconds per step (default {SECONDS})")
    ap.add_argument("--quick", action="store_true", help="the short ladder `make bench` runs")
    args = ap.parse_args()
    ladder = (
        [int(x) for x in args.agents.split(",")] if args.agents else (QUICK_LADDER if args.quick else LADDER)
    )
    seconds = args.seconds or (QUICK_SECONDS if args.quick else SECONDS)
    print(HEADER, flush=True)
    report = run(ladder, seconds, progress=lambda line: print(line, flush=True))
    print(table(report))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
