"""Where an alert event goes: a line of alerts.log, a record on the log, a webhook POST.

One :class:`Notifier` per writer (the agent's rules, the API's silent-host rule), so every
event is told the same way whoever decided it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from monitor.alerts.log import FIRING, AlertEvent, AlertLog, quote
from monitor.alerts.webhook import RETRY_DELAYS_S, Post, WebhookSender, post_json
from monitor.config import AlertsConfig

log = logging.getLogger("monitor.alerts.rules")  # the name operators already filter on


class Notifier:
    """Writes events to CONFIG's alert log and POSTs them to a rule's webhook (off-thread)."""

    def __init__(
        self,
        config: AlertsConfig,
        *,
        post: Post | None = None,
        webhook_retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self._config = config
        self._log = AlertLog(config.log_path, config.max_bytes, config.backup_count)
        self._webhooks = WebhookSender(
            post if post is not None else post_json, retry_delays_s=webhook_retry_delays_s
        )

    def emit(self, event: AlertEvent, webhook: str) -> None:
        """One event: its alerts.log line, a WARNING (firing) or INFO record, the webhook if any."""
        self._log.write(event)
        level = logging.WARNING if event.state == FIRING else logging.INFO
        log.log(level, "alert %s %s (%s): %s", event.rule, event.state, event.severity, quote(event.message))
        if webhook:
            self._webhooks.send(webhook, event.payload(), self._config.webhook_timeout_s)

    def reconfigure(self, config: AlertsConfig) -> None:
        """New settings; the log is re-opened only when its path or rotation changed."""
        old, self._config = self._config, config
        if (config.log_path, config.max_bytes, config.backup_count) != (
            old.log_path,
            old.max_bytes,
            old.backup_count,
        ):
            self._log.close()
            self._log = AlertLog(config.log_path, config.max_bytes, config.backup_count)

    def close(self) -> None:
        """Close the log and deliver queued webhooks (waiting a bounded time)."""
        self._log.close()
        self._webhooks.close(timeout_s=2 * self._config.webhook_timeout_s + 1.0)
