"""``make bench``: every benchmark in one run, a table each, the JSON reports in .bench/."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.bench import (
    bench_agent,
    bench_api,
    bench_api_clients,
    bench_diskfull,
    bench_fleet,
    bench_fleet_view,
    bench_replay,
    bench_soak,
    bench_store,
)


def main() -> None:
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    reports = []
    agent = bench_agent.run(bench_agent.SECONDS)
    print(bench_agent.table(agent), flush=True)
    reports.append(agent)
    replay = bench_replay.run(86_400)
    print(bench_replay.table(replay), flush=True)
    reports.append(replay)
    reports.append(bench_api.run())
    reports.append(bench_store.run())
    soak = bench_soak.run(bench_soak.MINUTES)
    print(bench_soak.table(soak), flush=True)
    reports.append(soak)
    clients = bench_api_clients.run(500, 20.0)
    print(bench_api_clients.table(clients), flush=True)
    reports.append({"bench": "api_clients", "rows": clients})
    diskfull = bench_diskfull.run(2.0)
    print(bench_diskfull.table(diskfull), flush=True)
    reports.append(diskfull)
    fleet = bench_fleet.run(bench_fleet.QUICK_LADDER, bench_fleet.QUICK_SECONDS)
    print(bench_fleet.table(fleet), flush=True)
    reports.append(fleet)
    fleet_view = bench_fleet_view.run()
    print(bench_fleet_view.table(fleet_view), flush=True)
    reports.append(fleet_view)
    path = out / f"bench-{stamp}.json"
    path.write_text(json.dumps(reports, indent=2))
    print(f"reports: {path}")


if __name__ == "__main__":
    main()
