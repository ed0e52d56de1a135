"""The API over InfluxDB against the same question asked of InfluxDB directly, in one run.

For each request the API answers (``/metrics`` over 24 h downsampled to its cap, over 1 h
raw, ``/metrics/aggregate`` over 24 h), the InfluxQL a user would send for the same answer
goes to the same InfluxDB over HTTP: ``GROUP BY time(<the API's step>)`` with ``mean()``,
``SELECT <fields>``, ``mean()`` (and ``mean(), count()``: the aggregate's value *and* sample
count, which the API answers too). Rounds alternate which side goes first; both sides use
the same client (a new connection per request, as curl) and ``epoch=ms``. Reported: the
medians, their ratio against the target (issue 13: at most 1.3x) and the database's CPU
per answer (``/proc/PID/stat``), which the machine's other load does not inflate; run on its
own, the API serves from a process of its own (as ``hostmon api`` does), so its CPU per
answer is reported too and the bench's client does not share its interpreter.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.3
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def _get(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        body = resp.read()
    return time.perf_counter() - started, body


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process PID so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def influxql_url(influx_url: str, db: str, q: str) -> str:
    return f"{influx_url}/query?{urllib.parse.urlencode({'db': db, 'q': q, 'epoch': 'ms'})}"


def questions(fields: tuple[str, ...], end_ms: int, step_ms: int) -> dict[str, dict[str, str]]:
    """Per request: the API's path and the same question in InfluxQL (one or more variants)."""
    quoted = [f'"{f}"' for f in fields]
    means = ", ".join(f"mean({f}) AS {f}" for f in quoted)

    def where(window_ms: int) -> str:
        return f'FROM "system" WHERE time >= {end_ms - window_ms}ms AND time < {end_ms}ms'

    cpu = '"cpu_usage_overall"'
    buckets = f'GROUP BY time({step_ms}ms), "host" fill(none)'
    return {
        "metrics_24h_capped": {
            "api": "/metrics?start=1440&end=0",
            "mean() GROUP BY time": f"SELECT {means} {where(DAY_MS)} {buckets}",
        },
        "metrics_1h": {
            "api": "/metrics?start=60&end=0",
            "SELECT fields": f'SELECT {", ".join(quoted)} {where(HOUR_MS)} GROUP BY "host"',
        },
        "aggregate_24h": {
            "api": "/metrics/aggregate?metric=cpu_usage_overall&start=1440&end=0",
            "mean()": f'SELECT mean({cpu}) {where(DAY_MS)} GROUP BY "host"',
            "mean(), count()": f'SELECT mean({cpu}), count({cpu}) {where(DAY_MS)} GROUP BY "host"',
        },
    }


def _rounds(
    urls: dict[str, str], rounds: int, db_pid: int, api_pid: int | None = None
) -> dict[str, dict[str, float]]:
    """Wall-time medians and database CPU (and the API process's, for the API's URL, when
    API_PID is given) per request of each URL, rounds alternating the order."""
    times: dict[str, list[float]] = {k: [] for k in urls}
    cpu: dict[str, float] = dict.fromkeys(urls, 0.0)
    api_cpu = 0.0
    for _ in range(2):
        for url in urls.values():
            _get(url)  # warm-up: page cache, series index, the API's kept-alive connections
    names = list(urls)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            before, api_before = cpu_s(db_pid), cpu_s(api_pid) if api_pid else 0.0
            times[name].append(_get(urls[name])[0])
            cpu[name] += cpu_s(db_pid) - before
            if api_pid and name == "api":
                api_cpu += cpu_s(api_pid) - api_before
    out = {
        k: {"p50_ms": round(1000 * statistics.median(v), 1), "db_cpu_ms": round(1000 * cpu[k] / rounds, 1)}
        for k, v in times.items()
    }
    if api_pid:
        out["api"]["api_cpu_ms"] = round(1000 * api_cpu / rounds, 1)
    return out


def compare(
    api_url: str,
    influx_url: str,
    db: str,
    fields: tuple[str, ...],
    end_ms: int,
    db_pid: int,
    rounds: int = 15,
    api_pid: int | None = None,
) -> dict[str, Any]:
    """Each request's medians (API and every InfluxQL variant), ratios and verdicts; the API
    process's CPU per answer too when API_PID is given."""
    step_s = json.loads(_get(api_url + "/metrics?start=1440&end=0")[1])["step_s"]
    out: dict[str, Any] = {"target_ratio": TARGET_RATIO, "rounds": rounds, "step_s": step_s, "requests": {}}
    for key, asked in questions(fields, end_ms, int(step_s * 1000)).items():
        urls = {"api": api_url + asked["api"]}
        urls.update({name: influxql_url(influx_url, db, q) for name, q in asked.items() if name != "api"})
        n = rounds if key != "metrics_24h_capped" else max(5, rounds // 2)
        figures = _rounds(urls, n, db_pid, api_pid)
        raw_name = next(n for n in asked if n != "api")  # the first variant: the question
        ratio = figures["api"]["p50_ms"] / max(figures[raw_name]["p50_ms"], 0.001)
        out["requests"][key] = {
            "figures": figures,
            "against": raw_name,
            "ratio": round(ratio, 2),
            "met": ratio <= TARGET_RATIO,
        }
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        f"API over InfluxDB vs the same InfluxQL over HTTP ({result['rounds']} alternating rounds, medians; "
        f"db CPU = influxd CPU per answer, API CPU = the API process's)",
        f"{'request':<20} {'asked as':<22} {'p50 ms':>8} {'db CPU ms':>10} {'API CPU ms':>11} {'ratio':>6}",
    ]
    for key, r in result["requests"].items():
        for name, fig in r["figures"].items():
            ratio = f"{r['ratio']:.2f}" if name == "api" else ""
            api_cpu = fig.get("api_cpu_ms", "")
            lines.append(
                f"{key:<20} {name:<22} {fig['p50_ms']:>8} {fig['db_cpu_ms']:>10} {api_cpu:>11} {ratio:>6}"
            )
    for key, r in result["requests"].items():
        verdict = "met" if r["met"] else "MISSED"
        lines.append(
            f"target: {key} api/{r['against']} <= {result['target_ratio']}x: {r['ratio']:.2f}x {verdict}"
        )
    return "\n".join(lines)


_SERVE = """
import json, sys, threading
from monitor.api.server import serve
from monitor.config import parse
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
now_s = float(sys.argv[2])
serve(parse(json.loads(sys.argv[1]), environ={}), stop=stop, on_ready=lambda url: print(url, flush=True),
      clock=lambda: now_s)
"""


@contextmanager
def api_process(raw_config: dict[str, Any], now_s: float) -> Iterator[tuple[str, int]]:
    """(URL, pid) of the API on RAW_CONFIG in a process of its own, its clock frozen at NOW_S
    so every run sees the same full windows; it stops when its stdin closes."""
    args = [sys.executable, "-c", _SERVE, json.dumps(raw_config), repr(now_s)]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        url = proc.stdout.readline().strip() if ready else ""
        if not url:
            raise RuntimeError(f"the API did not start within 30 s (exit status {proc.poll()})")
        yield url, proc.pid
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def main() -> None:
    """On its own: 24 h of 1-second samples into a fresh InfluxDB 1.6.7, the API on it, compare."""
    import argparse
    import shutil
    import tempfile

    from tests import servers
    from tests.bench import bench_api

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds per request")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostmon-bench-vs-influxql-"))
    influx = servers.start_influxdb1(work / "influxdb")
    try:
        now_s = float(int(time.time()))
        bench_api.load_influx(influx.url, "bench", bench_api.day_of_samples(int(now_s * 1000)))
        raw = {
            "agent": {"state_dir": str(work / "state")},
            "api": {"port": servers.free_port(), "threads": 8},
            "sink": {"kind": "influxdb_v1", "url": influx.url, "database": "bench"},
        }
        with api_process(raw, now_s) as (url, api_pid):
            end_ms = int(now_s * 1000)
            pid = influx.proc.pid
            result = compare(url, influx.url, "bench", bench_api.FIELDS, end_ms, pid, args.rounds, api_pid)
    finally:
        influx.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(table(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
