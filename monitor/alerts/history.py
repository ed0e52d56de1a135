"""Reading alerts.log back: the events of the log and its rotated files, and what fires now.

The files read are ``alerts.log``, its size backups (``alerts.log.1`` .. ``.N``) and logrotate's
dated ones (``alerts.log-20240501-1714550400``, gzipped or not), oldest (by modification time)
first and the live file last.

Every file is parsed once per identity (device, inode) and folded as it is read into its newest
events and, per (rule, host, tags), its last event and the fire that began its final run: a
rotation renames a file without re-reading it, the growing ``alerts.log`` is read from where
the previous call stopped, and memory does not grow with the log. Files are folded oldest
first (a file's own line order is its writers' order); the history is then ordered by time.
A line that is not an event (damaged, cut short) is skipped; a missing log is no events.
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from monitor.alerts.log import FIRING, RESOLVED, AlertState, parse_line

log = logging.getLogger(__name__)

FIXED_KEYS = frozenset({"time", "host", "rule", "severity", "state", "value", "op", "threshold", "message"})
SeriesKey = tuple[str, str, tuple[tuple[str, str], ...]]  # (rule, host, tags)
MAX_RECENT = 1000  # events kept per file for the history


@dataclass(frozen=True)
class Record:
    """One event read back from alerts.log (``value`` None for system conditions)."""

    time_ms: int
    host: str
    rule: str
    severity: str
    state: AlertState
    value: float | None
    message: str
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> SeriesKey:
        return (self.rule, self.host, self.tags)


def parse_record(line: str) -> Record | None:
    """The event of one alerts.log line, None when the line is not one."""
    fields = parse_line(line)
    state = fields.get("state")
    if state not in (FIRING, RESOLVED) or "message" not in fields:
        return None
    try:
        time_ms = round(datetime.fromisoformat(fields["time"]).timestamp() * 1000)
        value = None if fields.get("value", "-") == "-" else float(fields["value"])
    except (KeyError, ValueError):
        return None
    tags = tuple(sorted((k, v) for k, v in fields.items() if k not in FIXED_KEYS))
    return Record(
        time_ms,
        fields.get("host", ""),
        fields.get("rule", ""),
        fields.get("severity", ""),
        FIRING if state == FIRING else RESOLVED,
        value,
        fields["message"],
        tags,
    )


@dataclass(frozen=True)
class Firing:
    """A (rule, host, tags) whose last event is a fire: that event, and the fire that began the run."""

    since: Record
    last: Record


@dataclass
class _Run:
    """One series' events in one file: the last, the first fire of the final run of fires
    (None when the last is a resolve), and whether that run may have begun in an older file."""

    last: Record
    since: Record | None
    continues: bool


@dataclass
class _Summary:
    """What one file holds, folded as it is read: its newest events and each series' run."""

    offset: int = 0  # bytes parsed (whole lines only)
    tail: deque[Record] = field(default_factory=lambda: deque(maxlen=MAX_RECENT))
    runs: dict[SeriesKey, _Run] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        self.tail.append(record)
        run = self.runs.get(record.key)
        if record.state == RESOLVED:
            self.runs[record.key] = _Run(record, None, False)
        elif run is None:
            self.runs[record.key] = _Run(record, record, True)
        elif run.since is None:
            self.runs[record.key] = _Run(record, record, False)
        else:
            run.last = record


class AlertHistory:
    """The events of the alert log at PATH and its rotated files; thread-safe, cached.

    Memory is bounded by :data:`MAX_RECENT` events per file and one entry per series.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, int], _Summary] = {}

    def files(self) -> list[Path]:
        """The log and its rotated files that exist now, oldest first (by modification time)."""
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return []
        base = self.path.name
        found = []
        for name in names:
            if name == base or name.startswith((base + ".", base + "-")):
                try:
                    found.append((os.stat(self.path.parent / name).st_mtime_ns, name != base, name))
                except OSError:
                    continue
        # The live file last: it holds the newest lines even when a backup was touched later.
        found.sort(key=lambda f: (not f[1], f[0]))
        return [self.path.parent / name for _, _, name in found]

    def recent(self, limit: int = MAX_RECENT) -> list[Record]:
        """The newest LIMIT events (at most :data:`MAX_RECENT`), oldest first, by time."""
        out: list[Record] = []
        with self._lock:
            for summary in reversed(self._summaries()):
                out[:0] = summary.tail
                if len(out) >= limit:
                    break
        out.sort(key=lambda r: r.time_ms)  # stable: two writers' lines may interleave
        return out[-limit:] if limit > 0 else []

    def firing(self) -> list[Firing]:
        """Every (rule, host, tags) whose last event is a fire, sorted by host, rule and tags."""
        merged: dict[SeriesKey, tuple[Record | None, Record]] = {}
        with self._lock:
            for summary in self._summaries():
                for key, run in summary.runs.items():
                    before = merged.get(key)
                    since = run.since
                    if run.continues and before is not None and before[0] is not None:
                        since = before[0]
                    merged[key] = (since, run.last)
        out = [Firing(since, last) for since, last in merged.values() if since is not None]
        return sorted(out, key=lambda f: (f.last.host, f.last.rule, f.last.tags))

    def _summaries(self) -> list[_Summary]:
        """Every file's summary, oldest file first, each brought up to date (the lock held)."""
        out: list[_Summary] = []
        seen: set[tuple[int, int]] = set()
        for path in self.files():
            identity, summary = self._read(path)
            if identity is not None and summary is not None:
                seen.add(identity)
                out.append(summary)
        for identity in set(self._cache) - seen:
            del self._cache[identity]
        return out

    def _read(self, path: Path) -> tuple[tuple[int, int] | None, _Summary | None]:
        try:
            st = os.stat(path)
        except OSError:
            return None, None
        identity = (st.st_dev, st.st_ino)
        summary = self._cache.get(identity)
        if summary is not None and summary.offset == st.st_size:
            return identity, summary
        gz = path.suffix == ".gz"
        if summary is None or summary.offset > st.st_size or gz:
            summary = _Summary()  # new, truncated, or compressed (never appended to)
        try:
            summary.offset += _parse_into(path, summary.offset, summary)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            log.warning("cannot read alert log %s: %s", path, exc)
            return None, None
        if gz:
            summary.offset = st.st_size  # unchanged size: parsed already
        self._cache[identity] = summary
        return identity, summary


def _parse_into(path: Path, offset: int, summary: _Summary) -> int:
    """Add the events of PATH's whole lines from byte OFFSET to SUMMARY; the bytes consumed."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            data = fh.read()
        end = len(data)
    else:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
    for raw in data[:end].splitlines():
        record = parse_record(raw.decode("utf-8", errors="replace"))
        if record is not None:
            summary.add(record)
    return end
