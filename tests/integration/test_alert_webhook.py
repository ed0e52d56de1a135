"""Alert webhooks over real HTTP: a tiny http.server on 127.0.0.1 receives the JSON POST."""

from __future__ import annotations

import http.server
import json
import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.alerts import Alerts
from monitor.config import AlertRule, AlertsConfig
from monitor.lineprotocol import Sample

pytestmark = pytest.mark.integration


class _Hook(http.server.BaseHTTPRequestHandler):
    received: queue.Queue[tuple[str, dict[str, str], bytes]]
    statuses: list[int]  # answers in turn; the last one from then on

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put((self.path, dict(self.headers), body))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


def _serve(*statuses: int) -> Iterator[tuple[str, queue.Queue[tuple[str, dict[str, str], bytes]]]]:
    received: queue.Queue[tuple[str, dict[str, str], bytes]] = queue.Queue()
    handler = type("Hook", (_Hook,), {"received": received, "statuses": list(statuses)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def hook() -> Iterator[tuple[str, queue.Queue[tuple[str, dict[str, str], bytes]]]]:
    yield from _serve(204)


@pytest.fixture
def broken_hook() -> Iterator[tuple[str, queue.Queue[tuple[str, dict[str, str], bytes]]]]:
    yield from _serve(500)


@pytest.fixture
def flaky_hook() -> Iterator[tuple[str, queue.Queue[tuple[str, dict[str, str], bytes]]]]:
    yield from _serve(503, 502, 204)


@pytest.fixture
def refusing_hook() -> Iterator[tuple[str, queue.Queue[tuple[str, dict[str, str], bytes]]]]:
    yield from _serve(404)


def _alerts(tmp_path: Path, url: str) -> Alerts:
    rules = (AlertRule("cpu_high", "cpu_usage_overall", ">", 90.0, severity="critical", webhook=url),)
    return Alerts(
        AlertsConfig(log_path=tmp_path / "alerts.log", webhook_timeout_s=5.0, rules=rules),
        "web1",
        webhook_retry_delays_s=(0.05, 0.05),
    )


def test_webhook_delivers_the_event_as_json_post_to_a_real_server(tmp_path: Path, hook) -> None:  # type: ignore[no-untyped-def]
    url, received = hook
    alerts = _alerts(tmp_path, url)
    alerts.observe(Sample(1_700_000_000_000, "web1", {"cpu_usage_overall": 97.5}))
    path, headers, body = received.get(timeout=10)
    alerts.close()
    assert path == "/hooks/alerts"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "host": "web1",
        "rule": "cpu_high",
        "severity": "critical",
        "state": "FIRING",
        "value": 97.5,
        "threshold": 90.0,
        "op": ">",
        "time": "2023-11-14T22:13:20.000Z",
        "message": "cpu_usage_overall is 97.5, > 90",
    }


def test_webhook_answering_500_is_retried_then_logged_and_the_agent_carries_on(
    tmp_path: Path,
    broken_hook,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received = broken_hook
    alerts = _alerts(tmp_path, url)
    with caplog.at_level(logging.WARNING, logger="monitor.alerts.webhook"):
        alerts.observe(Sample(1_700_000_000_000, "web1", {"cpu_usage_overall": 97.5}))
        alerts.observe(Sample(1_700_000_010_000, "web1", {"cpu_usage_overall": 10.0}))
        alerts.close()  # waits for both deliveries
    bodies = [json.loads(received.get_nowait()[2])["state"] for _ in range(received.qsize())]
    assert bodies == ["FIRING"] * 3 + ["RESOLVED"] * 3  # three attempts each, in order
    failures = [r.getMessage() for r in caplog.records if r.name == "monitor.alerts.webhook"]
    assert len(failures) == 2
    assert "after 3 attempts" in failures[0] and "500" in failures[0]
    assert (tmp_path / "alerts.log").read_text().count("\n") == 2


def test_webhook_failing_twice_then_answering_is_delivered_on_the_third_attempt(
    tmp_path: Path,
    flaky_hook,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received = flaky_hook
    alerts = _alerts(tmp_path, url)
    with caplog.at_level(logging.INFO, logger="monitor.alerts.webhook"):
        alerts.observe(Sample(1_700_000_000_000, "web1", {"cpu_usage_overall": 97.5}))
        for _ in range(3):
            received.get(timeout=10)
        alerts.close()
    assert received.empty()
    messages = [r.getMessage() for r in caplog.records if r.name == "monitor.alerts.webhook"]
    assert [r.levelname for r in caplog.records if r.name == "monitor.alerts.webhook"] == ["INFO", "INFO"]
    assert "attempt 1 of 3" in messages[0] and "503" in messages[0]
    assert "attempt 2 of 3" in messages[1] and "502" in messages[1]


def test_webhook_refusing_with_404_is_not_retried(
    tmp_path: Path,
    refusing_hook,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received = refusing_hook
    alerts = _alerts(tmp_path, url)
    with caplog.at_level(logging.WARNING, logger="monitor.alerts.webhook"):
        alerts.observe(Sample(1_700_000_000_000, "web1", {"cpu_usage_overall": 97.5}))
        alerts.close()
    assert received.qsize() == 1
    failures = [r.getMessage() for r in caplog.records if r.name == "monitor.alerts.webhook"]
    assert len(failures) == 1 and "404" in failures[0] and "attempts" not in failures[0]
