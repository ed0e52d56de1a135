"""Helpers for the agent's end-to-end tests: the real ``collect`` process, an in-process agent that
records what it spooled, config files, and reading back what InfluxDB 1.x stored. (Their fixtures,
``start_agent`` and ``proxy``, are in conftest.py.)

Every wait here is a bounded poll with a deadline; every process is started by a Popen object
and ended through it (by its PID), never by name. The agent's log is printed when a test fails
(pytest shows a test's captured output only when it fails).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from monitor import config as config_mod
from monitor.agent import Agent, _Parts
from monitor.alerts.log import parse_line
from monitor.config import Config, SpoolConfig
from monitor.lineprotocol import Sample, decode, encode
from monitor.spool import Spool
from monitor.status import NOT_ACKED, WAITING_ROWS, SpoolStatus, read_status
from tests import servers
from tests.faultproxy import CapturedRequest

REPO = Path(__file__).resolve().parents[2]
HOST = "it-host"
INTERVAL_S = 0.2
# Small backoffs so outages and recoveries take seconds, not minutes (refused, reset or answered
# writes fail at once). Not a small timeout: a write slower than timeout_s is retried and may
# reach InfluxDB twice, and the tests that count InfluxDB's writes must not depend on every
# write beating a short timeout on a loaded machine. Tests of timeouts set their own.
FAST_SHIPPER: dict[str, Any] = {
    "flush_interval_s": 0.1,
    "timeout_s": 10.0,
    "backoff_initial_s": 0.1,
    "backoff_max_s": 0.5,
}
POLL_S = 0.01
T = TypeVar("T")


# -- waiting ------------------------------------------------------------------------------------


def wait_for(
    probe: Callable[[], T | bool | None],
    what: str,
    timeout_s: float = 20.0,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll PROBE until it returns something truthy (returned); AssertionError after TIMEOUT_S."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{detail}")
        time.sleep(POLL_S)


# -- config files -------------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string for the plain text used here


def toml_text(data: dict[str, dict[str, Any]]) -> str:
    """A small TOML writer: tables of scalars, and lists of tables (``[[alerts.rules]]``)."""
    out: list[str] = []
    for section, table in data.items():
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, list)]
        for key, items in table.items():
            if isinstance(items, list):
                for item in items:
                    out.append(f"[[{section}.{key}]]")
                    out += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        out.append("")
    return "\n".join(out)


def agent_settings(
    state_dir: Path,
    sink_url: str,
    database: str,
    *,
    interval_s: float = INTERVAL_S,
    spool: dict[str, Any] | None = None,
    shipper: dict[str, Any] | None = None,
    sink: dict[str, Any] | None = None,
    rules: list[dict[str, Any]] | None = None,
    collectors: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Settings for an agent shipping to InfluxDB 1.x at SINK_URL (usually a FaultProxy).

    The tagged collectors (filesystem, disk, network) are off unless COLLECTORS says otherwise:
    the delivery tests count the host measurement's points one per tick (tests/integration/
    test_collectors.py runs the agent with every collector).
    """
    return {
        "collectors": {"filesystem": False, "disk": False, "network": False, **(collectors or {})},
        "agent": {"host": HOST, "interval_s": interval_s, "state_dir": str(state_dir)},
        "spool": dict(spool or {}),
        "shipper": {**FAST_SHIPPER, **(shipper or {})},
        "sink": {"kind": "influxdb_v1", "url": sink_url, "database": database, **(sink or {})},
        "alerts": {"rules": list(rules or [])},
    }


def write_config(path: Path, settings: dict[str, dict[str, Any]]) -> Path:
    path.write_text(toml_text(settings))
    config_mod.load(path)  # fail here, not in the agent, if a test wrote a bad config by mistake
    return path


# -- the real `collect` process -----------------------------------------------------------------


class AgentProcess:
    """``python -m monitor --config CFG collect`` with its log in a file; ended by its PID only."""

    def __init__(self, config_path: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.config = config_mod.load(config_path)
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "--config", str(config_path), "collect"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def signal(self, signum: int) -> None:
        assert self.alive(), f"agent exited early ({self.proc.returncode}):\n{self.log()[-4000:]}"
        self.proc.send_signal(signum)

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait; the exit code."""
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL and reap."""
        self.proc.kill()
        self.proc.wait(10)

    def status(self) -> SpoolStatus | None:
        return read_status(self.config.spool.path)

    def wait_status(
        self, probe: Callable[[SpoolStatus], bool], what: str, timeout_s: float = 20.0
    ) -> SpoolStatus:
        def check() -> SpoolStatus | None:
            assert self.alive(), f"agent exited ({self.proc.returncode}):\n{self.log()[-4000:]}"
            status = self.status()
            return status if status is not None and probe(status) else None

        return wait_for(check, what, timeout_s, explain=lambda: self.log()[-3000:])

    def skipped_ticks_ms(self) -> set[int]:
        return skipped_ticks_ms(self.log(), self.config.agent.interval_s)


def hostmon(config_path: Path, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one ``hostmon`` command to completion (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


_LATE = re.compile(r"tick late by [0-9.]+ s .*?; (\d+) tick\(s\) skipped, taking tick at (\d+) ms")


def skipped_ticks_ms(log_text: str, interval_s: float) -> set[int]:
    """Ticks the agent logged as skipped (late); they were never sampled, so never expected."""
    skipped: set[int] = set()
    for m in _LATE.finditer(log_text):
        n, taken = int(m[1]), int(m[2])
        skipped |= {taken - round(i * interval_s * 1000) for i in range(1, n + 1)}
    return skipped


def expected_ticks_ms(first_ms: int, last_ms: int, interval_s: float, skipped: set[int]) -> list[int]:
    """Every aligned tick from FIRST_MS to LAST_MS, minus the ticks logged as skipped."""
    step = round(interval_s * 1000)
    assert first_ms % step == 0 and last_ms % step == 0, (first_ms, last_ms, step)
    return [ts for ts in range(first_ms, last_ms + 1, step) if ts not in skipped]


# -- the in-process agent that records what it spooled --------------------------------------------


class RecordingAgent(Agent):
    """The real Agent; its spool's ``append`` is wrapped (on this instance only) to record every
    (ts_ms, line) that was durably spooled, so a test can compare it with what arrived."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.appended: list[tuple[int, str]] = []
        self.spool: Spool | None = None
        self._record_lock = threading.Lock()

    def _build(self) -> _Parts:
        parts = super()._build()
        spool = parts.spool
        append = spool.append

        def recording_append(ts_ms: int, line: str) -> None:
            append(ts_ms, line)  # recorded only once it is durable
            with self._record_lock:
                self.appended.append((ts_ms, line))

        spool.append = recording_append  # type: ignore[method-assign]
        self.spool = spool
        return parts

    def lines(self) -> list[str]:
        with self._record_lock:
            return [line for _, line in self.appended]

    def status(self) -> SpoolStatus:
        assert self.spool is not None, "the agent has not started"
        return self.spool.status()


@contextmanager
def running(agent: RecordingAgent, started_timeout_s: float = 10.0) -> Iterator[RecordingAgent]:
    """``agent.run()`` in a thread until the block ends; then stop() and check run() returned."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            agent.run()
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=body, name="agent-under-test", daemon=True)
    thread.start()
    try:
        wait_for(lambda: agent.spool is not None or errors, "the agent to start", started_timeout_s)
        assert not errors, errors
        yield agent
    finally:
        agent.stop()
        thread.join(2 * agent.config.shipper.timeout_s + 15)
    assert not thread.is_alive(), "Agent.run() did not return after stop()"
    assert not errors, errors


def load(settings: dict[str, dict[str, Any]], path: Path) -> Config:
    return config_mod.load(write_config(path, settings))


def request_lines(request: CapturedRequest) -> list[str]:
    """The line protocol a captured write request carried."""
    body = request.body
    if request.headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return [ln for ln in body.decode().split("\n") if ln]


# -- reading back --------------------------------------------------------------------------------

Point = tuple[int, frozenset[tuple[str, float]]]


def point_of(line: str) -> Point:
    """(ts_ms, fields) of a spooled line, comparable with what InfluxDB returns."""
    _, sample = decode(line)
    return sample.ts_ms, frozenset(sample.fields.items())


def stored_points(url: str, db: str, auth: tuple[str, str] | None = None) -> list[Point]:
    """Every point of measurement "system" for HOST, (ts_ms, fields), in time order."""
    q = f'SELECT * FROM "system" WHERE "host" = \'{HOST}\' ORDER BY time'
    result = servers.influx_query(url, q, db, auth=auth)["results"][0]
    assert "error" not in result, result
    points: list[Point] = []
    for series in result.get("series", []):
        columns = series["columns"]
        for row in series["values"]:
            values = dict(zip(columns, row, strict=True))
            ts = values.pop("time")
            values.pop("host", None)
            points.append((ts, frozenset((k, float(v)) for k, v in values.items() if v is not None)))
    return points


def points_written(url: str, db: str, auth: tuple[str, str] | None = None) -> int:
    """How many points InfluxDB accepted into DB's shards, re-writes of the same point included."""
    result = servers.influx_query(url, "SHOW STATS FOR 'shard'", auth=auth)["results"][0]
    total = 0
    for series in result.get("series", []):
        if series.get("tags", {}).get("database") == db:
            row = dict(zip(series["columns"], series["values"][0], strict=True))
            total += int(row["writePointsOk"])
    return total


def assert_arrived_exactly_once(
    url: str, db: str, lines: list[str], auth: tuple[str, str] | None = None
) -> list[Point]:
    """Each of LINES is in InfluxDB with its timestamp and values, once; nothing else is there,
    and InfluxDB was sent each point once (its write counter equals the number of points)."""
    expected = Counter(point_of(line) for line in lines)
    assert len(expected) == len(lines), "the agent spooled the same sample twice"
    assert len({ts for ts, _ in expected}) == len(lines), "two spooled samples share a timestamp"
    stored = stored_points(url, db, auth)
    got = Counter(stored)
    missing, extra = expected - got, got - expected
    assert not missing and not extra, f"missing {sorted(missing)[:5]} ({len(missing)}), extra {len(extra)}"
    assert points_written(url, db, auth) == len(lines), "a sample was written to InfluxDB more than once"
    return stored


def prefill_spool(path: Path, live_bytes: int, n_cores: int) -> list[str]:
    """Fill a new spool file with day-old samples until LIVE_BYTES of its pages are in use; their
    lines, oldest first (written in batches straight into the file: seconds, not a day)."""
    spool = Spool(SpoolConfig(path=path))  # creates the schema
    spool.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=16")  # a small WAL: the file system may be small
    start_ms = (int(time.time()) - 86_400) * 1000
    lines: list[str] = []
    fields = {"cpu_usage_overall": 12.5, **{f"cpu_usage_{i}": 10.0 + i for i in range(1, n_cores + 1)}}
    fields |= {"memory_usage": 42.25, "disk_read": 12345.67, "disk_write": 2345.5}
    fields |= {"network_sent": 345.0, "network_recv": 4567.75}

    def used() -> int:
        pages, free, size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
        )
        return int((pages - free) * size)

    while used() < live_bytes:
        batch = []
        for _ in range(20):
            ts = start_ms + len(lines) * 1000
            line = encode(Sample(ts, HOST, fields), "system")
            lines.append(line)
            batch.append((ts, line))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO queue (ts_ms, line) VALUES (?, ?)", batch)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return lines


def spool_rows(path: Path) -> list[tuple[int, int, str]]:
    """(seq, ts_ms, line) of a spool file's waiting samples, read-only, in timestamp order."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [(int(s), int(t), str(ln)) for s, t, ln in conn.execute(WAITING_ROWS)]
    finally:
        conn.close()


def delivered_rows(path: Path) -> list[tuple[int, int, str]]:
    """(seq, ts_ms, line) of a spool file's rows a deferred ack marked delivered, not yet deleted."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        query = f"SELECT seq, ts_ms, line FROM queue WHERE NOT {NOT_ACKED} ORDER BY ts_ms, seq"
        return [(int(s), int(t), str(ln)) for s, t, ln in conn.execute(query)]
    finally:
        conn.close()


def alert_events(path: Path, rule: str | None = None) -> list[dict[str, str]]:
    """alerts.log parsed (rotated files not included), optionally only RULE's events."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    events = [parse_line(line) for line in text.splitlines() if line.strip()]
    return [e for e in events if rule is None or e.get("rule") == rule]


def alert_states(path: Path, rule: str) -> list[str]:
    return [e["state"] for e in alert_events(path, rule)]
