"""Alert webhooks: JSON POSTs delivered by one daemon thread, so the sampling thread never waits.

A delivery that fails for a reason that may pass — no connection, a timeout, HTTP 429 or
5xx — is tried again after 1 s and after 5 more (three attempts); one the receiver refuses
(any other 4xx) is not. Deliveries stay in order: the next waits for the one being retried.
At shutdown the waits are cut short and the remaining attempts made at once. A delivery that
still fails is logged at WARNING (the event is in alerts.log either way) and never raises
into the agent; when more than ``max_pending`` deliveries are waiting, new ones are dropped
and logged.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor import __version__

log = logging.getLogger(__name__)

Post = Callable[[str, bytes, float], None]  # (url, JSON body, timeout_s); raises on failure
RETRY_DELAYS_S = (1.0, 5.0)  # waits before the second and the third attempt


def post_json(url: str, body: bytes, timeout_s: float) -> None:
    """POST ``body`` as application/json; raises on a network error or an HTTP status >= 400."""
    request = urllib.request.Request(  # noqa: S310 (config accepts only http:// and https://)
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"hostmon/{__version__}"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        response.read()


@dataclass(frozen=True)
class _Delivery:
    url: str
    body: bytes
    timeout_s: float


def retryable(exc: Exception) -> bool:
    """Might a later attempt succeed? Network errors and timeouts, 429 and 5xx: yes; other 4xx: no."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, OSError)  # URLError, ConnectionError, TimeoutError are OSErrors


class WebhookSender:
    """Queues deliveries and runs ``post`` for each on a daemon thread started on first use."""

    def __init__(
        self,
        post: Post = post_json,
        *,
        max_pending: int = 1000,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self._post = post
        self._retry_delays_s = tuple(retry_delays_s)
        self._closed = threading.Event()  # set by close(); also cuts retry waits short
        self._queue: queue.Queue[_Delivery | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, url: str, payload: Mapping[str, Any], timeout_s: float) -> None:
        """Queue one POST of ``payload`` as JSON; returns at once."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        with self._lock:
            if self._closed.is_set():
                log.warning("webhook %s not sent: alerts are shutting down", url)
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hostmon-webhooks", daemon=True)
                self._thread.start()
            try:
                self._queue.put_nowait(_Delivery(url, body, timeout_s))
            except queue.Full:
                log.warning("webhook %s dropped: %d deliveries already waiting", url, self._queue.maxsize)

    def _run(self) -> None:
        while (delivery := self._queue.get()) is not None:
            self._deliver(delivery)

    def _deliver(self, delivery: _Delivery) -> None:
        attempts = len(self._retry_delays_s) + 1
        for attempt in range(1, attempts + 1):
            try:
                self._post(delivery.url, delivery.body, delivery.timeout_s)
                return
            except Exception as exc:  # a webhook must never take the agent down
                if attempt == attempts or not retryable(exc):
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    log.warning("webhook %s failed%s: %s", delivery.url, tries, exc)
                    return
                delay = self._retry_delays_s[attempt - 1]
                log.info(
                    "webhook %s failed (attempt %d of %d): %s; retrying in %.0f s",
                    delivery.url,
                    attempt,
                    attempts,
                    exc,
                    delay,
                )
                self._closed.wait(delay)

    def close(self, timeout_s: float) -> None:
        """Deliver what is queued, waiting at most ``timeout_s``, then stop the thread."""
        with self._lock:
            self._closed.set()
            thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("webhooks still pending at shutdown; %d not delivered", self._queue.qsize())
            return
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning("webhook delivery still running after %.1f s at shutdown; abandoned", timeout_s)
