"""Replay: a spilled line-protocol file sent to a sink (``hostmon spool replay``)."""

from __future__ import annotations

import logging
from pathlib import Path

from monitor.errors import ReplayFailed
from monitor.sinks import Sink

log = logging.getLogger(__name__)


def replay(path: Path, sink: Sink, batch_size: int) -> int:
    """Send a spilled line-protocol file in batches; the number of lines sent.

    Blank lines and ``#`` comments are skipped. On failure (the sink's, or a line that is not
    UTF-8: a damaged file) raises :class:`ReplayFailed` with ``sent``. The file is left alone:
    on success the caller decides whether to remove it.
    Claim the agent's spill file first (:func:`monitor.spool.spill.claim`), so that the agent
    spills into a fresh one meanwhile.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    sent = 0
    batch: list[str] = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                text = raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = ValueError(f"line {number} is not UTF-8 text ({exc.reason} at byte {exc.start + 1})")
                raise ReplayFailed(path, sent, bad) from exc
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            batch.append(text)
            if len(batch) == batch_size:
                sent = _send(path, sink, batch, sent)
                batch = []
    if batch:
        sent = _send(path, sink, batch, sent)
    log.info("replayed %d lines from %s to %s", sent, path, sink.name)
    return sent


def _send(path: Path, sink: Sink, batch: list[str], sent: int) -> int:
    """Write BATCH; SENT lines before it. The lines sent so far, or ReplayFailed."""
    try:
        sink.write(batch)
    except Exception as exc:
        raise ReplayFailed(path, sent, exc) from exc
    return sent + len(batch)
