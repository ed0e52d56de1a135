"""WebhookSender: delivery off the caller's thread, bounded queue, bounded shutdown."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from monitor.webhook import WebhookSender

pytestmark = pytest.mark.timeout(60)


def test_close_delivers_everything_queued_in_order() -> None:
    calls: list[tuple[str, object, float]] = []
    sender = WebhookSender(lambda url, body, timeout_s: calls.append((url, json.loads(body), timeout_s)))
    for i in range(5):
        sender.send("http://127.0.0.1:9/h", {"n": i}, 2.0)
    sender.close(timeout_s=30)
    assert calls == [("http://127.0.0.1:9/h", {"n": i}, 2.0) for i in range(5)]


def test_deliveries_run_on_another_thread() -> None:
    threads: list[str] = []
    sender = WebhookSender(lambda url, body, timeout_s: threads.append(threading.current_thread().name))
    sender.send("http://127.0.0.1:9/h", {}, 1.0)
    sender.close(timeout_s=30)
    assert threads == ["hostmon-webhooks"]


def test_full_queue_drops_new_deliveries_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    started = threading.Event()
    delivered: list[int] = []

    def slow(url: str, body: bytes, timeout_s: float) -> None:
        started.set()
        assert release.wait(30)
        delivered.append(json.loads(body)["n"])

    sender = WebhookSender(slow, max_pending=2)
    sender.send("http://127.0.0.1:9/h", {"n": 0}, 1.0)
    assert started.wait(30)  # n=0 is being delivered; the queue is empty again
    with caplog.at_level(logging.WARNING, logger="monitor.webhook"):
        for n in (1, 2, 3, 4):
            sender.send("http://127.0.0.1:9/h", {"n": n}, 1.0)
    release.set()
    sender.close(timeout_s=30)
    assert delivered == [0, 1, 2]
    assert caplog.text.count("dropped") == 2


def test_send_after_close_is_logged_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    sender = WebhookSender(lambda url, body, timeout_s: calls.append(url))
    sender.close(timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="monitor.webhook"):
        sender.send("http://127.0.0.1:9/h", {}, 1.0)
    assert calls == []
    assert "shutting down" in caplog.text
