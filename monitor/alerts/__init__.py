"""Alerts: threshold rules and system conditions, logged to alerts.log and sent to webhooks.

:class:`Alerts` evaluates the rules (:mod:`monitor.alerts.rules`); every FIRING or RESOLVED
:class:`AlertEvent` is a line of alerts.log (:mod:`monitor.alerts.log`) and, for rules with a
``webhook``, a JSON POST delivered off the sampling thread (:mod:`monitor.alerts.webhook`).
"""

from __future__ import annotations

from monitor.alerts.log import FIRING, RESOLVED, AlertEvent, AlertLog, AlertState, format_line, parse_line
from monitor.alerts.rules import Alerts, clear_threshold
from monitor.alerts.webhook import WebhookSender, post_json

__all__ = [
    "FIRING",
    "RESOLVED",
    "AlertEvent",
    "AlertLog",
    "AlertState",
    "Alerts",
    "WebhookSender",
    "clear_threshold",
    "format_line",
    "parse_line",
    "post_json",
]
