"""Reading alerts.log back: the events of the log and its rotated files, and what fires now.

The files read are ``alerts.log``, its size backups (``alerts.log.1`` .. ``.N``) and logrotate's
dated ones (``alerts.log-20240501-1714550400``, gzipped or not). Events are ordered by their
``time`` (a file's own order breaks ties), so lines of two writers (the agent and the API's
silent-host rule) interleave correctly.

Every file is parsed once per identity (device, inode): a rotation renames a file without
re-reading it, and the growing ``alerts.log`` is read from where the previous call stopped.
A line that is not an event (damaged, cut short) is skipped; a missing log is no events.
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from monitor.alerts.log import FIRING, RESOLVED, AlertState, parse_line

log = logging.getLogger(__name__)

FIXED_KEYS = frozenset({"time", "host", "rule", "severity", "state", "value", "op", "threshold", "message"})
SeriesKey = tuple[str, str, tuple[tuple[str, str], ...]]  # (rule, host, tags)


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


@dataclass
class _Parsed:
    records: list[Record]
    offset: int  # bytes of the file parsed (whole lines only)


class AlertHistory:
    """The events of the alert log at PATH and its rotated files; thread-safe, cached."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, int], _Parsed] = {}

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

    def events(self) -> list[Record]:
        """Every event of every file, oldest first (by time, then file and line order)."""
        with self._lock:
            out: list[Record] = []
            seen: set[tuple[int, int]] = set()
            for path in self.files():
                identity, records = self._read(path)
                if identity is not None:
                    seen.add(identity)
                    out.extend(records)
            for identity in set(self._cache) - seen:
                del self._cache[identity]
        out.sort(key=lambda r: r.time_ms)  # stable: file and line order break ties
        return out

    def _read(self, path: Path) -> tuple[tuple[int, int] | None, list[Record]]:
        try:
            st = os.stat(path)
        except OSError:
            return None, []
        identity = (st.st_dev, st.st_ino)
        parsed = self._cache.get(identity)
        if parsed is not None and parsed.offset == st.st_size:
            return identity, parsed.records
        if parsed is None or parsed.offset > st.st_size or path.suffix == ".gz":
            parsed = _Parsed([], 0)  # new, truncated, or compressed (never appended to)
        try:
            parsed.offset += _parse_into(path, parsed.offset, parsed.records)
            if path.suffix == ".gz":
                parsed.offset = st.st_size  # unchanged size: parsed already
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            log.warning("cannot read alert log %s: %s", path, exc)
            return None, []
        self._cache[identity] = parsed
        return identity, parsed.records


def _parse_into(path: Path, offset: int, records: list[Record]) -> int:
    """Append the events of PATH's whole lines from byte OFFSET to RECORDS; the bytes consumed."""
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
            records.append(record)
    return end


def firing(events: list[Record]) -> list[tuple[Record, Record]]:
    """(first fire of the current run, last event) for every (rule, host, tags) whose last
    event is a fire, sorted by host, rule and tags. EVENTS oldest first."""
    last: dict[SeriesKey, Record] = {}
    since: dict[SeriesKey, Record] = {}
    for record in events:
        previous = last.get(record.key)
        if record.state == FIRING and (previous is None or previous.state != FIRING):
            since[record.key] = record
        last[record.key] = record
    out = [(since[k], r) for k, r in last.items() if r.state == FIRING]
    return sorted(out, key=lambda pair: (pair[1].host, pair[1].rule, pair[1].tags))
