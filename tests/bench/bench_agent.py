"""Agent cost: the real ``hostmon collect`` beside a bare psutil loop (the floor) and collectd, one run.

Every process samples once a second for the same period, side by side, so the machine's
noise hits them alike. Reported per process: CPU seconds over the steady-state window (after
a warm-up, so interpreter start-up is excluded, and reported separately as total), and
peak RSS (VmHWM).

CPU is measured in nanoseconds: the sum of each thread's ``sum_exec_runtime``
(``/proc/PID/task/TID/schedstat``) at the end of the window minus at its start. The
floor uses ~1 ms a tick, ~0.07 s a minute; ``utime + stime`` in ``/proc/PID/stat`` counts in
10 ms clock ticks, which made a 60 s ratio uncertain by +-0.2 and is reported only as a
cross-check (``cpu_s_ticks``). A thread that starts and ends inside the window is not in the
precise sum (the agent starts none in steady state); ``threads_changed`` says if the set of
threads differed between the two readings.

collectd (Debian's ``collectd-core``) runs beside them with the plugins that sample what the
agent's default collectors do (cpu, memory, load, swap, df, disk, interface) and writes CSV
files into the benchmark's temporary directory (no network), excluding the same pseudo
filesystems, loop/ram disks and virtual interfaces as the agent's defaults. The agents run
with their default collectors. ``cpu_s_per_hour`` is the steady-state CPU scaled to an hour;
``cpu_ratio_to_collectd`` compares it with collectd's, measured over the same window.

Targets: CPU at most collectd's (issue 12) and within 1.75x of the floor (issue 2; the floor
makes every psutil read the default collectors need); peak RSS < 30 MB with the v1 and SQLite
sinks, < 50 MB with the v2 sink (influxdb-client loaded); RSS flat (growth between the end of
the warm-up and the end of the run).

    .venv/bin/python -m tests.bench.bench_agent [--seconds 120]
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
from collections.abc import Iterable
from pathlib import Path

from tests import servers

FLOOR = """
import os, time, psutil
interval = 1.0
while True:
    psutil.cpu_times(percpu=True); psutil.cpu_times(); psutil.virtual_memory()
    psutil.disk_io_counters(); psutil.net_io_counters(pernic=True)
    psutil.getloadavg(); psutil.swap_memory(); os.listdir("/sys/block")
    psutil.disk_io_counters(perdisk=True); psutil.net_io_counters(pernic=True)
    for part in psutil.disk_partitions(all=True):
        if os.path.isdir(part.mountpoint):
            os.statvfs(part.mountpoint)
    now = time.time()
    time.sleep(interval - now % interval)
"""

COLLECTD_CONF = """
Hostname "bench"
FQDNLookup false
BaseDir "{work}/collectd"
PIDFile "{work}/collectd/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 1
LoadPlugin cpu
LoadPlugin memory
LoadPlugin load
LoadPlugin swap
LoadPlugin df
LoadPlugin disk
LoadPlugin interface
LoadPlugin csv
<Plugin cpu>
  ReportByCpu true
  ReportByState true
  ValuesPercentage true
</Plugin>
<Plugin df>
{fstypes}
  IgnoreSelected true
  ValuesPercentage true
  ReportInodes true
</Plugin>
<Plugin disk>
  Disk "/^(loop|ram)/"
  Disk "/^(sd|vd|hd|xvd)[a-z]+[0-9]+$/"
  Disk "/p[0-9]+$/"
  IgnoreSelected true
</Plugin>
<Plugin interface>
  Interface "lo"
  Interface "/^(veth|docker|br-|virbr|cni|flannel|podman)/"
  IgnoreSelected true
</Plugin>
<Plugin csv>
  DataDir "{work}/collectd/csv"
  StoreRates true
</Plugin>
"""
COLLECTD = "collectd (cpu memory load swap df disk interface → csv)"

CLK_TCK = os.sysconf("SC_CLK_TCK")
Popen = subprocess.Popen[bytes]
SECONDS = 120.0  # the issue asks for at least 60 s; twice that halves the noise of a shared machine


def cpu_s(pid: int) -> float:
    """utime + stime of the whole process (exited threads too), in 10 ms clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Each live thread's CPU time in nanoseconds (the first field of its schedstat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile
            continue
    return out


def window_cpu_s(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds the threads used between two thread_cpu_ns readings."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def status_mb(pid: int, key: str) -> float:
    """A memory figure from /proc/PID/status: VmHWM (peak RSS) or VmRSS (now), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_collect(work: Path, n: int, config_text: str, env: dict[str, str] | None = None) -> Popen:
    """The real ``hostmon collect`` on WORK/agent-N.toml holding CONFIG_TEXT, logging to agent-N.log."""
    cfg = work / f"agent-{n}.toml"
    cfg.write_text(config_text)
    with (work / f"agent-{n}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(cfg), "--log-level", "WARNING", "collect"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_all(procs: Iterable[Popen]) -> None:
    """SIGTERM every process (only these, which the benchmark started), then wait; SIGKILL after 30 s."""
    procs = list(procs)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def start_collectd(work: Path) -> Popen:
    """collectd in the foreground on its own config in WORK; SystemExit when it is not installed."""
    from monitor.config import DEFAULT_EXCLUDE_FS_TYPES

    binary = Path("/usr/sbin/collectd")
    if not binary.exists():
        raise SystemExit("collectd is not installed: apt-get install collectd-core (make system-packages)")
    (work / "collectd").mkdir()
    # The agent's fnmatch patterns as collectd's POSIX regular expressions.
    fstypes = "\n".join(
        f'  FSType "/^{t.replace(".", "[.]").replace("*", ".*")}$/"' for t in DEFAULT_EXCLUDE_FS_TYPES
    )
    conf = work / "collectd.conf"
    conf.write_text(COLLECTD_CONF.format(work=work, fstypes=fstypes))
    with (work / "collectd.log").open("wb") as log:
        return subprocess.Popen([str(binary), "-f", "-C", str(conf)], stdout=log, stderr=subprocess.STDOUT)


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
    procs: dict[str, Popen] = {
        "floor (bare psutil loop)": subprocess.Popen([sys.executable, "-c", FLOOR]),
        COLLECTD: start_collectd(work),
    }
    for label, sink in sinks.items():
        n = len(procs)
        config = f'[agent]\ninterval_s = 1.0\nstate_dir = "{work / f"state-{n}"}"\n\n[sink]\n{sink}\n'
        procs[label] = start_collect(work, n, config, env)
    try:
        time.sleep(warmup_s)
        start = {k: thread_cpu_ns(p.pid) for k, p in procs.items()}
        start_ticks = {k: cpu_s(p.pid) for k, p in procs.items()}
        rss_start = {k: status_mb(p.pid, "VmRSS") for k, p in procs.items()}
        time.sleep(seconds)
        end = {k: thread_cpu_ns(p.pid) for k, p in procs.items()}
        results = {
            k: {
                "cpu_s_steady": round(window_cpu_s(start[k], end[k]), 4),
                "cpu_s_ticks": round(cpu_s(p.pid) - start_ticks[k], 2),
                "threads_changed": set(start[k]) != set(end[k]),
                "cpu_s_total": round(cpu_s(p.pid), 3),
                "peak_rss_mb": round(status_mb(p.pid, "VmHWM"), 1),
                "rss_growth_mb": round(status_mb(p.pid, "VmRSS") - rss_start[k], 2),
            }
            for k, p in procs.items()
        }
    finally:
        stop_all(procs.values())
        shipped = servers.influx_query(influx.url, 'SELECT count("memory_usage") FROM "system"', "bench")
        influx.stop()
        vm.stop()
    floor = results["floor (bare psutil loop)"]["cpu_s_steady"] or 0.001
    collectd = results[COLLECTD]["cpu_s_steady"] or 0.001
    for row in results.values():
        row["cpu_s_per_hour"] = round(row["cpu_s_steady"] / seconds * 3600, 1)
        row["cpu_ratio_to_floor"] = round(row["cpu_s_steady"] / floor, 3)
        row["cpu_ratio_to_collectd"] = round(row["cpu_s_steady"] / collectd, 3)
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
    out = [
        f"{'process':<56} {'CPU s':>7} {'CPU s/h':>8} {'x floor':>8} {'x collectd':>10}"
        f" {'peak RSS MB':>12} {'RSS growth MB':>14}"
    ]
    for name, r in rows.items():
        out.append(
            f"{name:<56} {r['cpu_s_steady']:>7.3f} {r['cpu_s_per_hour']:>8.1f}"
            f" {r['cpu_ratio_to_floor']:>8.2f} {r['cpu_ratio_to_collectd']:>10.2f}"
            f" {r['peak_rss_mb']:>12.1f} {r['rss_growth_mb']:>14.2f}"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=SECONDS)
    report = run(ap.parse_args().seconds)
    print(table(report))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
