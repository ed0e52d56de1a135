"""What an InfluxDB sink makes of a write's HTTP answer (the v1 and v2 sinks share it).

Status decides a batch's fate (see README, "What happens to a batch"):

    2xx                  accepted
    401, 403             AuthFailed   keep the batch, alert, retry
    400, 422             Rejected     bad data: drop the batch (InfluxDB 1.x may have written the
                                      batch's good points already: a "partial write")
    413                  too large:   the batch is split in halves and each half re-sent; a single
                                      line that is still too large is Rejected
    429, 5xx             Unavailable  retry later, honouring Retry-After
    anything else        Unavailable  e.g. 404 "database not found": a deployment problem, so the
                                      data is kept until it is fixed, never dropped
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC

from monitor.errors import AuthFailed, Rejected, SinkError, Unavailable
from monitor.formats import one_line
from monitor.influxhttp import scrub

log = logging.getLogger(__name__)


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if absent/bad."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now_s
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def server_message(body: bytes | str | None) -> str:
    """The server's error text, one line: JSON ``error`` (1.x) or ``message`` (2.x), else the body."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in ("error", "message"):
                if isinstance(data.get(key), str) and data[key]:
                    text = data[key]
                    break
    return one_line(text)


def warn_if_tls_unverified(name: str, url: str, verify_tls: bool) -> None:
    """One warning when a sink talks HTTPS without checking the server's certificate."""
    if url.startswith("https:") and not verify_tls:
        log.warning("%s: TLS certificate verification is off (sink.verify_tls = false)", name)


def error_for_status(target: str, status: int, message: str, retry_after_s: float | None) -> SinkError:
    """The error a non-2xx answer means (see the module docstring)."""
    reason = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    if status in (401, 403):
        return AuthFailed(target, reason, status=status)
    if status in (400, 413, 422):
        return Rejected(target, reason, status=status)
    if status != 429 and status < 500:
        reason += " (unexpected answer to a write; the batch is kept)"
    return Unavailable(target, reason, status=status, retry_after_s=retry_after_s)


def error_for_answer(
    target: str, status: int, message: str, retry_after: str | None, *, now_s: float, secrets: Iterable[str]
) -> SinkError:
    """:func:`error_for_status` of a server's answer: MESSAGE scrubbed, Retry-After parsed."""
    return error_for_status(target, status, scrub(message, secrets), parse_retry_after(retry_after, now_s))


def send_splitting_on_413(send: Callable[[Sequence[str]], None], lines: Sequence[str]) -> None:
    """``send(lines)``; on 413 re-send each half (recursively) until one line is still too large.

    Writes are idempotent (same series and timestamp overwrite), so a half that succeeded
    before a later failure is harmless when the whole batch is retried. A Rejected half
    does not stop the other half; the first Rejected is raised at the end.
    """
    try:
        send(lines)
        return
    except Rejected as exc:
        if exc.status != 413 or len(lines) < 2:
            raise
        log.info("%s: batch of %d lines too large (HTTP 413); sending it in halves", exc.target, len(lines))
    mid = len(lines) // 2
    rejected: Rejected | None = None
    for half in (lines[:mid], lines[mid:]):
        try:
            send_splitting_on_413(send, half)
        except Rejected as exc:
            rejected = rejected or exc
    if rejected is not None:
        raise rejected
