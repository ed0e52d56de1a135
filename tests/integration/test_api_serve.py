"""The API served for real: waitress on a loopback port, over SQLite and over InfluxDB 1.6.7."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from monitor.api import serve
from monitor.config import Config, parse
from tests import servers
from tests.faultproxy import FaultProxy
from tests.store_helpers import write_rows

pytestmark = pytest.mark.integration

TOKEN = "integration-secret-token"
METRICS = ("cpu_usage_overall", "cpu_usage_1", "cpu_usage_2", "memory_usage")


def get(
    url: str, headers: dict[str, str] | None = None, timeout_s: float = 10
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, hdrs, body = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, hdrs, body = exc.code, dict(exc.headers), exc.read()
    is_json = hdrs.get("Content-Type", "").startswith("application/json")
    return status, hdrs, json.loads(body) if is_json else body.decode()


@contextmanager
def serving(config: Config, clock: Callable[[], float] = time.time) -> Iterator[str]:
    """serve() in a thread (CLOCK its "now"); yields its URL; stops it and checks it returned."""
    stop = threading.Event()
    ready: list[str] = []
    kwargs = {"stop": stop, "on_ready": ready.append, "clock": clock}
    thread = threading.Thread(target=serve, args=(config,), kwargs=kwargs)
    thread.start()
    deadline = time.monotonic() + 10
    while not ready and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready, "serve() did not start"
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "serve() did not return after stop was set"


NOW_S = float(int(time.time()))  # the API's "now" where a test fixes it: windows are exact


def sqlite_config(tmp_path: Path, **api: Any) -> Config:
    """A config whose SQLite store holds 15 minutes of METRICS, one sample a second up to NOW_S."""
    environ = {"API_TOKEN": TOKEN}
    config = parse(
        {"agent": {"state_dir": str(tmp_path), "host": "web1"}, "api": {"port": 0, **api}}, environ=environ
    )
    now_ms = int(NOW_S * 1000)
    write_rows(
        config.sink.path,
        [
            (m, "web1", ts, float(i % 50))
            for i, ts in enumerate(range(now_ms - 15 * 60_000, now_ms, 1000))
            for m in METRICS
        ],
    )
    return config


def test_the_original_curl_calls_work_as_written_over_http(tmp_path):
    with serving(sqlite_config(tmp_path), clock=lambda: NOW_S) as url:
        status, headers, body = get(f"{url}/metrics?start=10&end=2")
        assert status == 200 and headers["Server"] == "hostmon"  # waitress, not Bottle's dev server
        assert body["downsampled"] is False and body["raw_samples"] == 480  # [now-10 min, now-2 min)
        assert body["metrics"] == list(METRICS)
        status, _, agg = get(f"{url}/metrics/aggregate?metric=cpu_usage_overall&start=10&end=2")
        assert status == 200 and agg["samples"] == body["raw_samples"]
        values = [p["cpu_usage_overall"] for p in body["series"][0]["points"]]
        assert agg["value"] == pytest.approx(sum(values) / len(values), abs=0.2)  # a second apart


def test_concurrent_requests_are_served_by_the_thread_pool(tmp_path):
    with serving(sqlite_config(tmp_path, threads=4)) as url, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: get(f"{url}/metrics?start=5")[0], range(40)))
    assert results == [200] * 40


def test_serve_logs_its_url_and_never_the_token(tmp_path, caplog):
    config = sqlite_config(tmp_path, token_env="API_TOKEN")
    assert config.api.token == TOKEN
    with caplog.at_level(logging.DEBUG), serving(config) as url:
        assert get(f"{url}/metrics")[0] == 401
        assert get(f"{url}/metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert get(f"{url}/metrics?start=x", {"Authorization": f"Bearer {TOKEN}-typo"})[0] == 401
        assert get(f"{url}/openapi.json")[0] == 200
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"API serving on {url}" in m and "bearer token required" in m for m in messages)
    assert not [m for m in messages if TOKEN in m]
    assert TOKEN not in caplog.text


def test_serve_in_the_main_thread_stops_on_sigterm(tmp_path):
    port = servers.free_port()
    config_path = tmp_path / "hostmon.toml"
    config_path.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n\n[api]\nport = {port}\n')
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from monitor.api import serve; from monitor.config import load\n"
        f"serve(load({str(config_path)!r}))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, cwd=Path(__file__).parents[2]
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if get(f"http://127.0.0.1:{port}/health", timeout_s=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("the API did not come up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stderr.read().decode() if proc.stderr else ""
    assert f"API serving on http://127.0.0.1:{port}" in log and "stopped" in log


# -- over InfluxDB, with the database going away ------------------------------------------


def influx_config(tmp_path: Path, url: str, db: str) -> Config:
    raw = {
        "agent": {"state_dir": str(tmp_path)},
        "sink": {"kind": "influxdb_v1", "url": url, "database": db},
        "api": {"port": 0, "query_timeout_s": 1.0},
    }
    return parse(raw, environ={})


def assert_error_shape(status: int, body: Any, expected: int) -> str:
    assert status == expected
    assert set(body) == {"error"} and body["error"]["status"] == expected
    assert body["error"]["parameter"] is None
    return str(body["error"]["message"])


def test_the_database_down_slow_or_back_over_influxdb(tmp_path, influxdb1, influx_db):
    now_ms = int(NOW_S * 1000)
    lines = "\n".join(f"system,host=h cpu_usage_overall={i} {now_ms - i * 1000}" for i in range(120))
    req = urllib.request.Request(
        f"{influxdb1.url}/write?db={influx_db}&precision=ms", data=lines.encode(), method="POST"
    )
    urllib.request.urlopen(req, timeout=10).close()
    half_a_second_later = NOW_S + 0.5  # the last minute holds samples 0..59 whatever the wall clock
    with (
        FaultProxy(influxdb1.url) as proxy,
        serving(influx_config(tmp_path, proxy.url, influx_db), clock=lambda: half_a_second_later) as url,
    ):
        status, _, body = get(f"{url}/metrics/aggregate?metric=cpu_usage_overall&start=1")
        assert status == 200 and body["samples"] == 60 and body["value"] == pytest.approx(29.5)
        assert get(f"{url}/health")[0] == 200

        proxy.set_mode("refuse")  # refused from the very next connection on
        status, _, body = get(f"{url}/metrics?start=1")
        assert "connection refused" in assert_error_shape(status, body, 503)
        status, _, health = get(f"{url}/health")
        assert status == 503 and health["store"]["reachable"] is False

        proxy.set_mode("slow", delay_s=5)
        started = time.monotonic()
        status, _, body = get(f"{url}/metrics/aggregate?metric=cpu_usage_overall")
        assert "no answer within 1 s" in assert_error_shape(status, body, 503)
        assert time.monotonic() - started < 3  # query_timeout_s, not a hang

        proxy.set_mode("status", status=500, body='{"error":"engine failure"}')
        status, _, body = get(f"{url}/metrics/names")
        assert "engine failure" in assert_error_shape(status, body, 503)

        proxy.set_mode("pass")
        assert get(f"{url}/metrics/names")[2]["metrics"] == ["cpu_usage_overall"]


def test_a_really_stopped_influxdb_is_a_503_with_the_reason(tmp_path):
    server = servers.start_influxdb1(tmp_path / "influx")
    try:
        with serving(influx_config(tmp_path, server.url, "db")) as url:
            assert get(f"{url}/metrics/names")[0] == 200
            server.stop()
            status, _, body = get(f"{url}/metrics?start=10&end=2")
            assert "connection refused" in assert_error_shape(status, body, 503)
    finally:
        server.stop()
