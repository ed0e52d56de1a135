"""Samples the spool holds per MiB of free space, on a real nearly full file system (root only).

A tmpfs with a filler file leaves ``--free-mib`` MiB free; a spool on it (the agent's defaults,
and a 1 MiB budget larger than the free space) takes samples of the agent's shape (the original
setup guide's fields, two cores: ~180 bytes a line) until the first sample it cannot keep (an overflow of
the budget or the disk, or an error), then as many again. Reported: the samples held at the
first loss, per MiB of free space, the largest the WAL grew, and whether every sample taken
is still kept or counted (depth + dropped + spilled).

    .venv/bin/python -m tests.bench.bench_diskfull [--free-mib 2]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import tempfile
from pathlib import Path

from monitor.config import MiB, SpoolConfig
from monitor.lineprotocol import Sample, encode
from monitor.spool import Spool
from tests.tmpfs import fill, free_bytes, small_filesystem

FS_BYTES = 8 * MiB
MAX_SAMPLES = 200_000


def _line(rnd: random.Random, ts_ms: int) -> str:
    fields = {
        "cpu_usage_overall": round(rnd.uniform(0, 100), 1),
        "cpu_usage_1": round(rnd.uniform(0, 100), 1),
        "cpu_usage_2": round(rnd.uniform(0, 100), 1),
        "memory_usage": round(rnd.uniform(0, 100), 1),
        "disk_read": round(rnd.uniform(0, 10**8), 2),
        "disk_write": round(rnd.uniform(0, 10**8), 2),
        "network_sent": round(rnd.uniform(0, 10**7), 1),
        "network_recv": round(rnd.uniform(0, 10**7), 1),
    }
    return encode(Sample(ts_ms, "bench-host", fields), "system")


def hold(state_dir: Path, free: int, settings: dict[str, object]) -> dict[str, object]:
    """Fill a spool on STATE_DIR (FREE bytes left) until it first loses a sample, then as many more."""
    fill(state_dir, leave_free_bytes=free)
    free_at_start = free_bytes(state_dir)
    config = SpoolConfig(path=state_dir / "spool.db", spill_path=state_dir / "spill.lp")
    config = dataclasses.replace(config, **settings)  # type: ignore[arg-type]
    lost: list[object] = []
    spool = Spool(config, on_overflow=lost.append)
    rnd, taken, held, wal_max, outcome = random.Random(1), 0, 0, 0, "no loss"
    try:
        while taken < MAX_SAMPLES and (not lost or taken < 2 * held):
            try:
                spool.append(1_700_000_000_000 + taken * 1000, _line(rnd, taken))
            except Exception as exc:  # what the spool did before it survived a full disk
                outcome = f"{type(exc).__name__}: {exc}"
                break
            taken += 1
            if lost and not held:
                held, outcome = spool.status().depth, "overflow, kept going"
            wal = Path(f"{config.path}-wal")
            wal_max = max(wal_max, wal.stat().st_size if wal.exists() else 0)
        status = spool.status()
    finally:
        with contextlib.suppress(Exception):  # a crashed spool may fail to close; the figures stand
            spool.close()
    held = held or taken
    return {
        "settings": settings,
        "free_bytes": free_at_start,
        "held": held,
        "held_per_free_mib": round(held / (free_at_start / MiB)),
        "wal_max_bytes": wal_max,
        "taken": taken,
        "kept_plus_counted": status.depth + status.dropped_total + status.spilled_total,
        "outcome": outcome,
    }


def run(free_mib: float) -> dict[str, object]:
    cases: list[dict[str, object]] = [{}, {"max_spool_bytes": MiB}, {"overflow": "spill"}]
    results = []
    for settings in cases:
        with tempfile.TemporaryDirectory() as tmp, small_filesystem(Path(tmp) / "fs", FS_BYTES) as fs:
            results.append(hold(fs, int(free_mib * MiB), settings))
    return {"bench": "diskfull", "free_mib": free_mib, "results": results}


def table(report: dict[str, object]) -> str:
    rows = [f"spool on a nearly full file system ({report['free_mib']} MiB free)"]
    head = f"{'settings':26} {'held':>6} {'per MiB':>8} {'WAL max':>8} {'taken':>6} {'kept+counted':>12}"
    rows.append(f"{head}  outcome")
    for r in report["results"]:  # type: ignore[attr-defined]
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        rows.append(
            f"{settings:26} {r['held']:>6} {r['held_per_free_mib']:>8} {r['wal_max_bytes']:>8}"
            f" {r['taken']:>6} {r['kept_plus_counted']:>12}  {r['outcome']}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--free-mib", type=float, default=2.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_diskfull mounts a tmpfs: run it as root")
    report = run(args.free_mib)
    print(table(report))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
