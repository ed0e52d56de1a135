"""alerts.log: one key=value line per alert event, in a file that rotates by size and survives deletion.

Line format (fixed key order, one event per line, UTF-8)::

    time=2024-05-01T12:00:10.000Z host=web1 rule=cpu_high severity=warning state=FIRING \
value=93.5 op=> threshold=90 message="cpu_usage_overall is 93.5, > 90 for at least 60 s"

- ``time``: ISO-8601 UTC with milliseconds and ``Z`` — for rules the sample's (tick's) time, for
  system conditions the time ``set_condition`` was called. Lines sort by time as plain text.
- ``state``: ``FIRING`` or ``RESOLVED``. ``severity``: as configured (info, warning, critical).
- ``value``, ``op``, ``threshold``: the value that caused the event, the rule's comparison
  (``>``, ``>=``, ``<``, ``<=``) and threshold; all three are ``-`` for system conditions
  (``sink_unreachable``, ``sink_auth_failed``, ``spool_overflow`` ...).
- For a rule on a tagged metric, the series' tag comes after ``threshold`` (``mount=/``,
  ``device=sda``, ``interface=eth0``), so the first eight fields keep their places.
- A value is written bare unless it is empty or contains a space, ``"``, ``\\`` or a control
  character; then it is double-quoted with ``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t`` escapes (other
  non-printable characters as ``\\xHH``, ``\\uHHHH``, ``\\UHHHHHHHH``), so
  an event can never span two lines. Keys never contain ``=``: a value is everything after the
  first ``=`` (``op=>=`` is op ``>=``). ``message`` is always last.

So ``grep 'state=FIRING' alerts.log``, ``grep 'rule=cpu_high '`` and
``awk '{print $1, $3, $5}'`` work (fields 1-8 are single tokens for rule names without spaces);
:func:`parse_line` reads a line back.

The file is written through a ``RotatingFileHandler`` subclass that, before every write, checks
the path's inode (``WatchedFileHandler`` style) and re-creates the file — and its directory —
when it was deleted or moved away (events never go on into a file no one can open), and
rotates it by size (``max_bytes``, ``backup_count`` -> ``alerts.log.1`` ...). Its logger is
private to the instance and does not propagate, so events never reach the process's own log
handlers through it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from monitor.config import Comparison, Severity
from monitor.formats import iso_ms, number

log = logging.getLogger(__name__)

AlertState = Literal["FIRING", "RESOLVED"]
FIRING: AlertState = "FIRING"
RESOLVED: AlertState = "RESOLVED"
_NEEDS_QUOTES = re.compile(r'[\s"\\\x00-\x1f\x7f]')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TOKEN = re.compile(r'([^=\s]+)=("(?:[^"\\]|\\.)*"|\S*)')
_UNESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class AlertEvent:
    """One FIRING or RESOLVED event; value/op/threshold are None/"" for system conditions."""

    time_ms: int
    host: str
    rule: str
    severity: Severity
    state: AlertState
    value: float | None
    op: Comparison | Literal[""]  # "" for system conditions
    threshold: float | None
    message: str
    tags: tuple[tuple[str, str], ...] = ()  # the series of a rule on a tagged metric: (("mount", "/"),)

    @property
    def time_iso(self) -> str:
        return iso_ms(self.time_ms)

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body; ``tags`` only for a rule on a tagged metric (host events as before)."""
        body: dict[str, Any] = {
            "host": self.host,
            "rule": self.rule,
            "severity": self.severity,
            "state": self.state,
            "value": self.value,
            "threshold": self.threshold,
            "op": self.op or None,
            "time": self.time_iso,
            "message": self.message,
        }
        if self.tags:
            body["tags"] = dict(self.tags)
        return body


def quote(value: str) -> str:
    if value and not _NEEDS_QUOTES.search(value):
        return value
    escaped = "".join(_ESCAPES.get(ch, ch if ch.isprintable() else _hex_escape(ch)) for ch in value)
    return f'"{escaped}"'


def _hex_escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def format_line(event: AlertEvent) -> str:
    """The event as one alerts.log line (without the newline)."""
    pairs = (
        ("time", event.time_iso),
        ("host", event.host),
        ("rule", event.rule),
        ("severity", event.severity),
        ("state", event.state),
        ("value", "-" if event.value is None else number(event.value)),
        ("op", event.op or "-"),
        ("threshold", "-" if event.threshold is None else number(event.threshold)),
        *event.tags,
        ("message", event.message),
    )
    return " ".join(f"{key}={quote(value)}" for key, value in pairs)


def _unquote(text: str) -> str:
    if not (len(text) >= 2 and text[0] == text[-1] == '"'):
        return text
    body = text[1:-1]
    if "\\" not in body:
        return body
    return re.sub(
        r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})|\\U([0-9a-f]{8})|\\(.)",
        lambda m: chr(int(m[1] or m[2] or m[3], 16)) if m[4] is None else _UNESCAPES.get(m[4], m[4]),
        body,
    )


def parse_line(line: str) -> dict[str, str]:
    """Inverse of :func:`format_line`: key -> value (unquoted), in line order."""
    cut = line.find(" message=")
    head = line if cut < 0 else line[:cut]
    if '"' in head:  # a quoted value before the message: tokenize the whole line
        return {m[1]: _unquote(m[2]) for m in _TOKEN.finditer(line)}
    # Bare values hold no space or quote, so the fields before the message split on spaces.
    out = {}
    for token in head.split():
        key, eq, value = token.partition("=")
        if key and eq:
            out[key] = value
    if cut >= 0:
        out["message"] = _unquote(line[cut + len(" message=") :].rstrip())
    return out


class ReopeningRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Size-rotating file handler that re-creates its file when it was deleted or replaced."""

    def __init__(self, path: Path, max_bytes: int, backup_count: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True)
        self._identity: tuple[int, int] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._reopen_if_needed()
        except OSError:
            self.handleError(record)
            return
        super().emit(record)

    def _reopen_if_needed(self) -> None:
        try:
            st = os.stat(self.baseFilename)
            identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            identity = None
        if self.stream is not None and identity is not None and identity == self._identity:
            return
        self._open_fresh()

    def _open_fresh(self) -> None:
        if self.stream is not None:
            self.stream.close()
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        self.stream = self._open()
        st = os.fstat(self.stream.fileno())
        self._identity = (st.st_dev, st.st_ino)

    def doRollover(self) -> None:  # noqa: N802 (the standard library's name)
        super().doRollover()
        self._open_fresh()

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
        # Never raise into the agent and never print a traceback to stderr: say it in our log.
        log.error(
            "cannot write alerts log %s (%s); lost line: %s",
            self.baseFilename,
            sys.exc_info()[1],
            record.getMessage(),
        )


class AlertLog:
    """Writes :class:`AlertEvent` lines to ``path`` (rotating, re-created when deleted)."""

    def __init__(self, path: Path, max_bytes: int, backup_count: int) -> None:
        self.path = path
        self._handler = ReopeningRotatingFileHandler(path, max_bytes, backup_count)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.Logger(f"hostmon.alerts.{path}", logging.INFO)  # private, unregistered
        self._logger.propagate = False
        self._logger.addHandler(self._handler)

    def write(self, event: AlertEvent) -> None:
        self._logger.info("%s", format_line(event))

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()
