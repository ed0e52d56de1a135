"""Alert webhooks: JSON POSTs delivered by one daemon thread, so the sampling thread never waits.

Each event is POSTed once (no retries: the event is in alerts.log either way). A failing or
slow webhook is logged at WARNING and never raises into the agent; when more than
``max_pending`` deliveries are waiting, new ones are dropped and logged.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from monitor import __version__

log = logging.getLogger(__name__)

Post = Callable[[str, bytes, float], None]  # (url, JSON body, timeout_s); raises on failure


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


class WebhookSender:
    """Queues deliveries and runs ``post`` for each on a daemon thread started on first use."""

    def __init__(self, post: Post = post_json, *, max_pending: int = 1000) -> None:
        self._post = post
        self._queue: queue.Queue[_Delivery | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def send(self, url: str, payload: Mapping[str, Any], timeout_s: float) -> None:
        """Queue one POST of ``payload`` as JSON; returns at once."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        with self._lock:
            if self._closed:
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
            try:
                self._post(delivery.url, delivery.body, delivery.timeout_s)
            except Exception as exc:  # a webhook must never take the agent down
                log.warning("webhook %s failed: %s", delivery.url, exc)

    def close(self, timeout_s: float) -> None:
        """Deliver what is queued, waiting at most ``timeout_s``, then stop the thread."""
        with self._lock:
            self._closed = True
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
