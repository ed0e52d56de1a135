"""The shipper's read-ahead: while one batch is in flight, the next one is read and prepared.

Draining a backlog, each batch costs the server's time plus the shipper's own local work:
peek the spool, join and gzip the lines (``PreparingSink.prepare``), delete the acked rows.
Done one after the other, the server idles meanwhile. The ack must stay between two sends
(see below); the rest need not. So when a batch was full (more is waiting), the shipper
starts a :class:`ReadAhead` on a short-lived helper thread before sending it:
``spool.peek(batch_size, after=<its last (ts_ms, seq)>)`` plus ``prepare``; the next attempt
takes that batch instead of peeking. The ack of a full batch is deferred
(``Spool.ack_deferred``: the rows are only marked), and the helper's peek deletes them first,
so that delete too runs beside the next send. The helper does no I/O towards the sink and
never acks; the shipper's thread still sends and acks, so:

* At most one batch is in flight and one read ahead, in (ts_ms, seq) order: the read-ahead
  starts after the batch in flight, and is only used if that batch was accepted and acked.
  The ack still happens before the next send, so a crash re-sends at most one batch.
* Any other outcome (Unavailable, AuthFailed, Rejected, an error around the spool, a new
  sink from ``replace_sink``) waits for the helper and drops what it read: the next attempt
  peeks afresh, from the oldest row, so nothing is skipped or reordered.
* A row appended meanwhile with an older timestamp (the clock stepped back) sorts before the
  read-ahead's cursor, so the chain does not see it; the chain ends when the backlog is
  drained (a batch that is not full, or an empty read-ahead, which is never trusted) and the
  next plain peek returns it. It is delayed, never lost.
* Steady state (one small batch per flush interval) never starts a helper: no thread, no
  extra work, and its ack deletes at once.

``spawn`` is handed in so tests can run the helper inline and deterministically.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from monitor.sinks import PreparedBatch, PreparingSink, Sink
from monitor.spool import Row, Spool

log = logging.getLogger(__name__)

Spawn = Callable[[Callable[[], None]], Callable[[], None]]  # start a job; returns "wait for it"


@dataclass(frozen=True)
class Batch:
    rows: list[Row]  # in (ts_ms, seq) order
    prepared: PreparedBatch | None = None  # the request body, when read ahead for a PreparingSink

    @property
    def lines(self) -> list[str]:
        """Every line of the batch's rows, in order (a row is one tick: one line per series)."""
        return [line for _, _, text in self.rows for line in text.split("\n")]

    @property
    def seqs(self) -> list[int]:
        return [seq for seq, _, _ in self.rows]

    @property
    def last_key(self) -> tuple[int, int]:
        """(ts_ms, seq) of the last row: where the next batch starts."""
        seq, ts_ms, _ = self.rows[-1]
        return ts_ms, seq


def start_thread(job: Callable[[], None]) -> Callable[[], None]:
    """The default ``spawn``: JOB on a new daemon thread; returns its ``join``."""
    thread = threading.Thread(target=job, name="shipper-read-ahead", daemon=True)
    thread.start()
    return thread.join


class ReadAhead:
    """The batch after ``after``, read (and prepared, if SINK can) by a helper started at once."""

    def __init__(
        self, spool: Spool, sink: Sink, batch_size: int, after: tuple[int, int], spawn: Spawn
    ) -> None:
        self._spool = spool
        self._sink = sink
        self._batch_size = batch_size
        self._after = after
        self._batch: Batch | None = None
        self._wait = spawn(self._read)

    def take(self) -> Batch | None:
        """Wait for the helper; its batch, or None if it failed or found nothing (peek afresh)."""
        self._wait()
        batch, self._batch = self._batch, None
        return batch if batch is not None and batch.rows else None

    def _read(self) -> None:
        try:
            rows = self._spool.peek(self._batch_size, after=self._after)
            prepared = None
            if rows and isinstance(self._sink, PreparingSink):
                prepared = self._sink.prepare(Batch(rows).lines)
            self._batch = Batch(rows, prepared)
        except Exception:  # the shipper's own attempt will meet the same error and handle it
            log.debug("reading ahead failed; the next batch is read afresh", exc_info=True)
