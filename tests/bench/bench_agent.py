"""Agent cost: the real ``hostmon collect`` beside a bare psutil loop (the floor), one run.

Every process samples once a second for the same period, side by side, so the machine's
noise hits them alike. Reported per process: CPU seconds over the steady-state window (after
a warm-up, so interpreter start-up is excluded, and reported separately as total), and
peak RSS (VmHWM). Targets (issue 2): CPU within 1.75x of the floor; peak RSS < 30 MB with
the v1 and SQLite sinks, < 50 MB with the v2 sink (influxdb-client loaded); RSS flat
(growth between the end of the warm-up and the end of the run).

    .venv/bin/python -m tests.bench.bench_agent [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests import servers

FLOOR = """
import time, psutil
interval = 1.0
while True:
    psutil.cpu_times(percpu=True); psutil.cpu_times(); psutil.virtual_memory()
    psutil.disk_io_counters(); psutil.net_io_counters(pernic=True)
    now = time.time()
    time.sleep(interval - now % interval)
"""

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def status_mb(pid: int, key: str) -> float:
    """A memory figure from /proc/PID/status: VmHWM (peak RSS) or VmRSS (now), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_config(path: Path, state: Path, sink: str) -> None:
    path.write_text(f'[agent]\ninterval_s = 1.0\nstate_dir = "{state}"\n\n[sink]\n{sink}\n')


def run(seconds: float, warmup_s: float = 8.0) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="hostmon-bench-agent-"))
    influx = servers.start_influxdb1(work / "influxdb")
    vm = servers.start_victoriametrics(work / "vm")
    servers.influx_query(influx.url, 'CREATE DATABASE "bench"')
    sinks = {
        "collect (influxdb_v1)": f'kind = "influxdb_v1"\nurl = "{influx.url}"\ndatabase = "bench"',
        "collect (sqlite)": 'kind = "sqlite"',
        "collect (influxdb_v2 → VictoriaMetrics)": (
            f'kind = "influxdb_v2"\nurl = "{vm.url}"\norg = "bench"\nbucket = "bench"\n'
            'token_env = "BENCH_TOKEN"'
        ),
    }
    env = {**os.environ, "BENCH_TOKEN": "not-checked-by-victoriametrics"}
    procs: dict[str, subprocess.Popen[bytes]] = {
        "floor (bare psutil loop)": subprocess.Popen([sys.executable, "-c", FLOOR]),
    }
    for label, sink in sinks.items():
        state = work / f"state-{len(procs)}"
        cfg = work / f"agent-{len(procs)}.toml"
        write_config(cfg, state, sink)
        log = (work / f"agent-{len(procs)}.log").open("wb")
        procs[label] = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(cfg), "--log-level", "WARNING", "collect"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(warmup_s)
        start = {k: cpu_s(p.pid) for k, p in procs.items()}
        rss_start = {k: status_mb(p.pid, "VmRSS") for k, p in procs.items()}
        time.sleep(seconds)
        results = {
            k: {
                "cpu_s_steady": round(cpu_s(p.pid) - start[k], 3),
                "cpu_s_total": round(cpu_s(p.pid), 3),
                "peak_rss_mb": round(status_mb(p.pid, "VmHWM"), 1),
                "rss_growth_mb": round(status_mb(p.pid, "VmRSS") - rss_start[k], 2),
            }
            for k, p in procs.items()
        }
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shipped = servers.influx_query(influx.url, 'SELECT count("memory_usage") FROM "system"', "bench")
        influx.stop()
        vm.stop()
    floor = results["floor (bare psutil loop)"]["cpu_s_steady"] or 0.001
    for row in results.values():
        row["cpu_ratio_to_floor"] = round(row["cpu_s_steady"] / floor, 2)
    series = shipped["results"][0].get("series") or [{"values": [[0, 0]]}]
    return {
        "benchmark": "agent cost",
        "seconds": seconds,
        "machine": machine(),
        "results": results,
        "influxdb_v1_points_shipped": series[0]["values"][0][1],
        "logs": str(work),
    }


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"


def table(report: dict[str, object]) -> str:
    rows = report["results"]
    assert isinstance(rows, dict)
    out = [f"{'process':<42} {'CPU s':>7} {'x floor':>8} {'peak RSS MB':>12} {'RSS growth MB':>14}"]
    for name, r in rows.items():
        out.append(
            f"{name:<42} {r['cpu_s_steady']:>7.2f} {r['cpu_ratio_to_floor']:>8.2f}"
            f" {r['peak_rss_mb']:>12.1f} {r['rss_growth_mb']:>14.2f}"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    report = run(ap.parse_args().seconds)
    print(table(report))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
