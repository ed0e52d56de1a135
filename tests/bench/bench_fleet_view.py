"""The fleet view's cost: /alerts over alert logs up to a full rotation set, /hosts over many hosts.

/alerts: alert logs of 1 000, 10 000 and 100 000 events and a full set (alerts.log and five
10 MiB backups, about 354 000 events) are read by :class:`AlertHistory` as /alerts reads them
(``firing()`` and ``recent(100)``): the first read (every file parsed once), a read with nothing
new (the cached answer), a read after 10 new lines (only they are parsed), and, traced by
tracemalloc in a second cold read, the memory the read peaks at and the memory it keeps.

/hosts: an embedded store with H hosts (10, 100), each with 1 h of 10-second samples (CPU,
memory, two filesystems), answered in-process through the WSGI app: /hosts as it is now (status,
the alert log's firing set, the newest values: one query per family for the recent hosts, one
per silent host) side by side with ``store.hosts()`` alone (what /hosts did before), in the same
run, p50 of 20 calls. A tenth of the hosts are silent (their samples end an hour ago).

    .venv/bin/python -m tests.bench.bench_fleet_view
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.alerts import FIRING, RESOLVED, AlertEvent
from monitor.alerts.history import AlertHistory
from monitor.alerts.log import format_line
from monitor.api import make_app
from monitor.api.stores.sqlite import SQLiteStore
from monitor.config import parse
from tests.store_helpers import write_rows
from tests.unit.test_api import call

NOW_MS = 1_700_000_000_000
MIB = 1024 * 1024
LOG_SIZES = (1_000, 10_000, 100_000)
HOST_COUNTS = (10, 100)


def _line(n: int) -> str:
    state = FIRING if n % 2 == 0 else RESOLVED
    return format_line(
        AlertEvent(
            NOW_MS + n * 1000,
            f"web{n % 50}",
            "cpu_high",
            "warning",
            state,
            95.5,
            ">",
            90.0,
            "cpu_usage_overall is 95.5, > 90 for at least 60 s",
        )
    )


def write_log(directory: Path, events: int, file_bytes: int = 10 * MIB) -> Path:
    """EVENTS lines, rotated as AlertLog would into backups of FILE_BYTES (oldest .5)."""
    files: list[list[str]] = [[]]
    size = 0
    for n in range(events):
        line = _line(n) + "\n"
        if size + len(line) > file_bytes:
            files.append([])
            size = 0
        files[-1].append(line)
        size += len(line)
    path = directory / "alerts.log"
    for age, lines in enumerate(reversed(files)):  # the newest lines in alerts.log
        target = path if age == 0 else Path(f"{path}.{age}")
        target.write_text("".join(lines), encoding="utf-8")
    return path


def _ms(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return round((time.perf_counter() - started) * 1000, 2)


def bench_log(events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hostmon-bench-alerts-") as tmp:
        path = write_log(Path(tmp), events)
        history = AlertHistory(path)

        def read() -> None:
            history.firing()
            history.recent(100)

        first = _ms(read)
        cached = _ms(read)
        with path.open("a", encoding="utf-8") as fh:
            fh.writelines(_line(events + i) + "\n" for i in range(10))
        appended = _ms(read)
        files = len(history.files())
        tracemalloc.start()
        held = AlertHistory(path)
        held.firing()
        retained_bytes, peak_bytes = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "events": events,
        "files": files,
        "first_read_ms": first,
        "cached_read_ms": cached,
        "after_10_new_lines_ms": appended,
        "read_peak_mib": round(peak_bytes / MIB, 1),
        "retained_mib": round(retained_bytes / MIB, 1),
    }


def _store(path: Path, hosts: int) -> None:
    rows = []
    for h in range(hosts):
        end_ms = NOW_MS - (3_600_000 if h % 10 == 9 else 0)
        for ts in range(end_ms - 3_600_000, end_ms, 10_000):
            rows += [
                ("cpu_usage_overall", f"h{h:03d}", "", ts, 10.0),
                ("memory_usage", f"h{h:03d}", "", ts, 50.0),
            ]
            rows += [("filesystem_used_percent", f"h{h:03d}", f"mount={m}", ts, 40.0) for m in ("/", "/var")]
    write_rows(path, rows)


def bench_hosts(hosts: int, calls: int = 20) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hostmon-bench-hosts-") as tmp:
        config = parse({"agent": {"state_dir": tmp, "host": "h000"}}, environ={})
        _store(config.sink.path, hosts)
        store = SQLiteStore(config.sink.path)
        app = make_app(config, store, clock=lambda: NOW_MS / 1000)
        assert len(call(app, "/hosts").json()["hosts"]) == hosts
        now = [_ms(lambda: call(app, "/hosts")) for _ in range(calls)]
        before = [_ms(store.hosts) for _ in range(calls)]
    p50_now, p50_before = round(statistics.median(now), 2), round(statistics.median(before), 2)
    return {
        "hosts": hosts,
        "hosts_p50_ms": p50_now,
        "store_hosts_only_p50_ms": p50_before,
        "ratio": round(p50_now / p50_before, 2) if p50_before else None,
    }


def run() -> dict[str, Any]:
    logs = [bench_log(n) for n in LOG_SIZES]
    logs.append(bench_log(354_000))  # a full set: alerts.log and five 10 MiB backups
    return {"bench": "fleet_view", "alerts": logs, "hosts": [bench_hosts(n) for n in HOST_COUNTS]}


def table(report: dict[str, Any]) -> str:
    out = ["/alerts: events  files  first read ms  cached ms  +10 lines ms  peak MiB  kept MiB"]
    for r in report["alerts"]:
        out.append(
            f"{r['events']:>15}  {r['files']:>5}  {r['first_read_ms']:>13}  {r['cached_read_ms']:>9}"
            f"  {r['after_10_new_lines_ms']:>12}  {r['read_peak_mib']:>8}  {r['retained_mib']:>8}"
        )
    out.append("/hosts: hosts  /hosts p50 ms  store.hosts() p50 ms  ratio")
    for r in report["hosts"]:
        out.append(
            f"{r['hosts']:>13}  {r['hosts_p50_ms']:>13}  {r['store_hosts_only_p50_ms']:>20}  {r['ratio']:>5}"
        )
    return "\n".join(out)


def main() -> None:
    report = run()
    print(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
