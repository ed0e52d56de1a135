"""WebhookSender: delivery off the caller's thread, bounded queue, bounded shutdown."""

from __future__ import annotations

import email.message
import json
import logging
import threading
import time
import urllib.error

import pytest

from monitor.alerts.webhook import WebhookSender

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
    with caplog.at_level(logging.WARNING, logger="monitor.alerts.webhook"):
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
    with caplog.at_level(logging.WARNING, logger="monitor.alerts.webhook"):
        sender.send("http://127.0.0.1:9/h", {}, 1.0)
    assert calls == []
    assert "shutting down" in caplog.text


class Flaky:
    """A post that raises the scripted errors in turn, then succeeds; records each attempt."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.attempts = 0

    def __call__(self, url: str, body: bytes, timeout_s: float) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)


def http_error(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://127.0.0.1:9/h", code, f"HTTP {code}", email.message.Message(), None)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionRefusedError("refused"), True),
        (TimeoutError("timed out"), True),
        (urllib.error.URLError("no route"), True),
        (http_error(500), True),
        (http_error(503), True),
        (http_error(429), True),
        (http_error(400), False),
        (http_error(401), False),
        (http_error(404), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_failures_that_may_pass_are_retried(error: Exception, retried: bool) -> None:
    post = Flaky(error)
    sender = WebhookSender(post, retry_delays_s=(0.0, 0.0))
    sender.send("http://127.0.0.1:9/h", {}, 1.0)
    sender.close(timeout_s=30)
    assert post.attempts == (2 if retried else 1)


def test_three_attempts_at_most_with_the_given_waits_between_them(caplog: pytest.LogCaptureFixture) -> None:
    post = Flaky(*[http_error(502)] * 5)
    sender = WebhookSender(post, retry_delays_s=(0.0, 0.0))
    with caplog.at_level(logging.INFO, logger="monitor.alerts.webhook"):
        sender.send("http://127.0.0.1:9/h", {}, 1.0)
        sender.close(timeout_s=30)
    assert post.attempts == 3
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO", "WARNING"]
    assert "after 3 attempts" in caplog.records[-1].getMessage()


def test_close_cuts_a_retry_wait_short_and_makes_the_remaining_attempts_at_once() -> None:
    first = threading.Event()
    post = Flaky(http_error(503), http_error(503))
    real_call = post.__call__

    def recording(url: str, body: bytes, timeout_s: float) -> None:
        first.set()
        real_call(url, body, timeout_s)

    sender = WebhookSender(recording, retry_delays_s=(3600.0, 3600.0))
    sender.send("http://127.0.0.1:9/h", {}, 1.0)
    assert first.wait(30)
    started = time.monotonic()
    sender.close(timeout_s=30)
    assert time.monotonic() - started < 10  # not the 3600 s waits
    assert post.attempts == 3
