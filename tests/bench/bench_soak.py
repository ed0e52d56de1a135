"""Soak: is the agent's memory flat over many ticks, and does its spool stay empty?

The real ``hostmon collect`` runs at the fastest interval the config allows (0.1 s), shipping
every second (``flush_interval_s = 1``) to a real InfluxDB 1.6.7, with alert rules that fire
and resolve now and then, beside a second agent on the SQLite sink. Ten ticks a second
compress time: five minutes are 3,000 ticks, 50 minutes of a 1-second agent or 8 hours of
the default 10-second one. Resident memory (VmRSS) is read every 10 s.

Reported per agent: RSS after the first minute and at the end, the growth between the two and
its slope per 1,000 ticks, the growth over the second half of the run (SQLite's page caches,
512 KiB per connection, are full by then: this is what a leak would show as), peak RSS, the
spool depth after the stop and the points InfluxDB holds. Target (issue 2, "memory stays flat
over a long run"): no growth over the second half, spool back to empty.

    .venv/bin/python -m tests.bench.bench_soak [--minutes 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from monitor.status import read_status
from tests import servers
from tests.bench.bench_agent import Popen, machine, start_collect, status_mb, stop_all

INTERVAL_S = 0.1
SAMPLE_EVERY_S = 10.0
MINUTES = 5.0
RULES = """
[[alerts.rules]]
name = "cpu_busy"
metric = "cpu_usage_overall"
op = ">"
threshold = 20.0
severity = "info"

[[alerts.rules]]
name = "core1_busy"
metric = "cpu_usage_1"
op = ">="
threshold = 30.0
hysteresis = 5.0
"""


def config_text(state: Path, sink: str) -> str:
    return (
        f'[agent]\ninterval_s = {INTERVAL_S}\nstate_dir = "{state}"\n\n'
        f"[shipper]\nflush_interval_s = 1.0\n\n[sink]\n{sink}\n{RULES}"
    )


def run(minutes: float) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="hostmon-bench-soak-"))
    influx = servers.start_influxdb1(work / "influxdb")
    servers.influx_query(influx.url, 'CREATE DATABASE "soak"')
    sinks = {
        "collect (influxdb_v1)": f'kind = "influxdb_v1"\nurl = "{influx.url}"\ndatabase = "soak"',
        "collect (sqlite)": 'kind = "sqlite"',
    }
    procs: dict[str, Popen] = {}
    states: dict[str, Path] = {}
    for i, (label, sink) in enumerate(sinks.items()):
        states[label] = work / f"state-{i}"
        procs[label] = start_collect(work, i, config_text(states[label], sink))
    rss: dict[str, list[tuple[float, float]]] = {k: [] for k in procs}
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < minutes * 60:
            for k, p in procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{k} exited with {p.returncode}; see {work}")
                rss[k].append((elapsed, status_mb(p.pid, "VmRSS")))
            time.sleep(SAMPLE_EVERY_S)
        peak = {k: status_mb(p.pid, "VmHWM") for k, p in procs.items()}
    finally:
        stop_all(procs.values())
        shipped = servers.influx_query(influx.url, 'SELECT count("memory_usage") FROM "system"', "soak")
        influx.stop()
    results = {}
    ticks = minutes * 60 / INTERVAL_S
    for k, series in rss.items():
        warm = next((mb for t, mb in series if t >= 60.0), series[0][1])
        half = next(mb for t, mb in series if t >= series[-1][0] / 2)
        end = series[-1][1]
        status = read_status(states[k] / "spool.db")
        results[k] = {
            "rss_mb_after_1_min": round(warm, 2),
            "rss_mb_end": round(end, 2),
            "growth_after_1_min_mb": round(end - warm, 2),
            "growth_per_1000_ticks_mb": round((end - warm) / max(1.0, ticks - 60 / INTERVAL_S) * 1000, 3),
            "growth_second_half_mb": round(end - half, 2),
            "peak_rss_mb": round(peak[k], 1),
            "spool_depth_after_stop": status.depth if status else None,
            "rss_series_mb": [round(mb, 2) for _, mb in series],
        }
    series = shipped["results"][0].get("series") or [{"values": [[0, 0]]}]
    return {
        "benchmark": "agent soak",
        "minutes": minutes,
        "interval_s": INTERVAL_S,
        "ticks": int(ticks),
        "machine": machine(),
        "results": results,
        "influxdb_v1_points_shipped": series[0]["values"][0][1],
        "logs": str(work),
    }


def table(report: dict[str, object]) -> str:
    rows = report["results"]
    assert isinstance(rows, dict)
    out = [
        f"soak: {report['ticks']} ticks at {report['interval_s']} s, "
        f"{report['influxdb_v1_points_shipped']} points in InfluxDB",
        f"{'process':<24} {'RSS@1min':>9} {'RSS end':>8} {'growth':>7} {'/1000 ticks':>12}"
        f" {'2nd half':>9} {'peak':>6}",
    ]
    for name, r in rows.items():
        out.append(
            f"{name:<24} {r['rss_mb_after_1_min']:>9.2f} {r['rss_mb_end']:>8.2f}"
            f" {r['growth_after_1_min_mb']:>7.2f} {r['growth_per_1000_ticks_mb']:>12.3f}"
            f" {r['growth_second_half_mb']:>9.2f} {r['peak_rss_mb']:>6.1f}"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=MINUTES)
    report = run(ap.parse_args().minutes)
    print(table(report))
    print(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=2))
    print(json.dumps(report["results"], indent=2))


if __name__ == "__main__":
    main()
