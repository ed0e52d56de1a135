"""The shipper: drains the spool into the sink, oldest sample first, one batch at a time.

The exception a sink raises decides the batch's fate (:mod:`monitor.errors`):

* ``Unavailable`` (connection error, timeout, 429, 5xx) and anything unexpected: the batch
  stays spooled and is retried after a capped exponential backoff with full jitter
  (``rand() * min(backoff_max_s, backoff_initial_s * 2**(failures-1))``), never sooner than
  the server's ``retry_after_s``. ``sink_unreachable`` fires once and resolves once.
* ``AuthFailed`` (401/403): kept and retried the same way; ``sink_auth_failed`` fires once.
* ``Rejected`` (400/422): the server's message is logged, the batch counted in
  ``rejected_total`` and dropped, so a poison batch never blocks the queue.

One thread runs ``run`` (or calls ``ship_once``); ``replace_sink`` may be called from any
other thread and takes effect at the next batch. ``run`` closes the sink when it returns.
Between attempts the thread sleeps on one event, without polling (an idle agent's thread wakes
once per flush interval, nothing more): ``replace_sink`` and ``wake`` end the sleep at once, so
whoever sets ``run``'s stop event calls ``wake`` too.

Rows are acked only after the sink accepted them, and before the next batch is sent, so a
crash at any point re-sends at most one batch (InfluxDB and the SQLite sink overwrite a point
with the same series and timestamp, so a re-sent batch changes nothing). On a full disk an ack
may be kept only in memory (``Spool.ack`` returns False): the batch counts as delivered, the
read-ahead is dropped, and the spool hands out nothing until the ack's delete is written, so
the batch is never sent again and still at most one batch is re-sent after a crash.

While a backlog drains (the last batch was full), the next batch is read from the spool and
prepared (joined, gzipped) on a helper thread while the current one is in flight, and used
only if the current one was accepted and acked; otherwise it is dropped and the next attempt
peeks afresh (:mod:`monitor.readahead`). In steady state every attempt peeks afresh.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.config import ShipperConfig
from monitor.errors import AuthFailed, Rejected, SinkError, Unavailable
from monitor.readahead import Batch, ReadAhead, Spawn, start_thread
from monitor.sinks import PreparingSink, Sink
from monitor.spool import Row, Spool

log = logging.getLogger(__name__)

UNREACHABLE = "sink_unreachable"
AUTH_FAILED = "sink_auth_failed"


@dataclass(frozen=True)
class _Outcome:
    shipped: int  # samples the sink accepted
    full: bool  # a whole batch was taken off the queue: more may be waiting
    retry_in_s: float | None = None  # the attempt failed: wait this long


class Shipper:
    """Moves samples from a :class:`Spool` to a :class:`Sink`. ``run`` is its thread's body."""

    def __init__(
        self,
        spool: Spool,
        sink: Sink,
        config: ShipperConfig,
        *,
        on_state: Callable[[str, bool, str], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
        rand: Callable[[], float] = random.random,
        spawn: Spawn = start_thread,
    ) -> None:
        self._spool = spool
        self._sink = sink
        self._config = config
        self._on_state = on_state
        self._clock = clock
        self._sleep = sleep if sleep is not None else self._interruptible_sleep
        self._rand = rand
        self._spawn = spawn
        self._read_ahead: ReadAhead | None = None  # the next batch, while a backlog drains
        self._pending: tuple[Sink, ShipperConfig] | None = None  # from replace_sink()
        self._pending_lock = threading.Lock()
        self._failures = 0
        self._active: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()

    def ship_once(self) -> int:
        """Send at most one batch; the number of samples the sink accepted."""
        return self._attempt().shipped

    def run(self, stop: threading.Event) -> None:
        """Ship until STOP is set, flush once more (bounded by ``timeout_s``), close the sink."""
        self._stop = stop
        log.info("shipping to %s", self._sink.name)
        while not stop.is_set():
            try:
                outcome = self._attempt()
            except Exception:
                log.exception("unexpected error around the spool; retrying")
                outcome = _Outcome(0, False, self._backoff_s())
            delay = self._delay_after(outcome)
            if delay > 0 and not stop.is_set():
                self._sleep(delay)
        self._final_flush()
        self._take_read_ahead()  # nothing reads the spool or uses the sink after run() returns
        self._apply_pending()
        self._close(self._sink)

    def replace_sink(self, sink: Sink, config: ShipperConfig) -> None:
        """Use SINK and CONFIG from the next batch on (SIGHUP); the old sink is then closed.

        Returns at once, never waiting for a write in flight; wakes the default sleep.
        """
        with self._pending_lock:
            superseded, self._pending = self._pending, (sink, config)
        if superseded is not None:  # replaced twice before a batch: the first one was never used
            self._close(superseded[0])
        self.wake()

    def wake(self) -> None:
        """End the default sleep now (call it after setting ``run``'s stop event).

        Not from a signal handler: an ``Event`` is not safe there; set a flag and call it from
        the thread that noticed it.
        """
        self._wake.set()

    # -- one attempt ---------------------------------------------------------------------------

    def _attempt(self) -> _Outcome:
        self._apply_pending()
        sink, batch_size = self._sink, self._config.batch_size
        batch = self._take_read_ahead() or Batch(self._spool.peek(batch_size))
        if not batch.rows:
            return _Outcome(0, False)
        full = len(batch.rows) == batch_size
        ahead = ReadAhead(self._spool, sink, batch_size, batch.last_key, self._spawn) if full else None
        outcome = _Outcome(0, full)
        try:
            outcome = self._deliver(sink, batch, full)
        finally:
            if outcome.shipped and outcome.full:  # accepted and acked: the read-ahead is the next batch
                self._read_ahead = ahead
            elif ahead is not None:  # anything else: wait for it and start over from the spool
                ahead.take()
        return outcome

    def _deliver(self, sink: Sink, batch: Batch, full: bool) -> _Outcome:
        try:
            if batch.prepared is not None and isinstance(sink, PreparingSink):
                sink.send(batch.prepared)
            else:
                sink.write(batch.lines)
        except Rejected as exc:
            self._rejected(sink, batch.rows, exc)
            return _Outcome(0, full)
        except AuthFailed as exc:
            return _Outcome(0, False, self._auth_failed(exc))
        except Unavailable as exc:
            return _Outcome(0, False, self._unavailable(sink, exc, exc.status is not None))
        except Exception as exc:
            log.exception("unexpected error writing to %s; keeping the batch", sink.name)
            return _Outcome(0, False, self._unavailable(sink, exc, reachable=False))
        success_ms = int(self._clock() * 1000)
        if full:  # a backlog drains: the read-ahead deletes the rows, beside the next send
            written = self._spool.ack_deferred(batch.seqs, success_ms=success_ms)
        else:
            written = self._spool.ack(batch.seqs, success_ms=success_ms)
        self._succeeded(sink, len(batch.rows))
        # An ack kept in memory (full disk): wait a flush interval, and read afresh then.
        return _Outcome(len(batch.rows), full and written)

    def _take_read_ahead(self) -> Batch | None:
        ahead, self._read_ahead = self._read_ahead, None
        return ahead.take() if ahead is not None else None

    def _apply_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        self._take_read_ahead()  # read for the old sink and settings: dropped
        old, (self._sink, self._config) = self._sink, pending
        self._failures = 0
        log.info("now shipping to %s (batch_size=%d)", self._sink.name, self._config.batch_size)
        if old is not self._sink:
            self._close(old)

    def _close(self, sink: Sink) -> None:
        try:
            sink.close()
        except Exception:
            log.exception("closing %s failed", sink.name)

    def _succeeded(self, sink: Sink, n: int) -> None:
        if self._failures:
            log.info("%s accepts writes again (%d samples sent)", sink.name, n)
        self._failures = 0
        self._resolve(UNREACHABLE, f"{sink.name} accepts writes again")
        self._resolve(AUTH_FAILED, f"{sink.name} accepts the credentials again")

    def _rejected(self, sink: Sink, rows: Sequence[Row], exc: Rejected) -> None:
        n = len(rows)
        log.error(
            "%s rejected %d samples (ts_ms %d..%d) as bad data; dropping them: %s",
            sink.name,
            n,
            rows[0][1],
            rows[-1][1],
            exc.reason,
        )
        self._spool.add_rejected(n)
        self._spool.ack([seq for seq, _, _ in rows])
        self._spool.record_failure(f"rejected {n} samples: {exc}", reachable=True)
        self._failures = 0  # the server answered: it is reachable and took the credentials
        self._resolve(UNREACHABLE, f"{sink.name} answers again")
        self._resolve(AUTH_FAILED, f"{sink.name} accepts the credentials again")

    def _auth_failed(self, exc: AuthFailed) -> float:
        delay = self._backoff_s()
        log.error("credentials refused: %s; samples stay spooled (retry in %.1fs)", exc, delay)
        self._spool.record_failure(str(exc), reachable=True)
        self._resolve(UNREACHABLE, f"{exc.target} answers, but refuses the credentials")
        self._fire(AUTH_FAILED, str(exc))
        return delay

    def _unavailable(self, sink: Sink, exc: Exception, reachable: bool) -> float:
        delay = self._backoff_s()
        retry_after = exc.retry_after_s if isinstance(exc, Unavailable) else None
        if retry_after is not None:
            delay = max(delay, retry_after)
        message = str(exc) if isinstance(exc, SinkError) else f"{sink.name}: {type(exc).__name__}: {exc}"
        log.warning("write failed (attempt %d): %s; retry in %.1fs", self._failures, message, delay)
        self._spool.record_failure(message, reachable=reachable)
        self._fire(UNREACHABLE, message)
        return delay

    def _backoff_s(self) -> float:
        """Count a failure; full jitter over the capped exponential backoff."""
        self._failures += 1
        cfg = self._config
        cap = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2.0 ** min(self._failures - 1, 64))
        return self._rand() * cap

    def _fire(self, condition: str, message: str) -> None:
        if condition not in self._active:
            self._active.add(condition)
            if self._on_state is not None:
                self._on_state(condition, True, message)

    def _resolve(self, condition: str, message: str) -> None:
        if condition in self._active:
            self._active.discard(condition)
            if self._on_state is not None:
                self._on_state(condition, False, message)

    # -- pacing --------------------------------------------------------------------------------

    def _delay_after(self, outcome: _Outcome) -> float:
        if outcome.retry_in_s is not None:
            return outcome.retry_in_s
        return 0.0 if outcome.full else self._config.flush_interval_s

    def _final_flush(self) -> None:
        """After stop: send what is waiting until it is gone, a write fails, or timeout_s passes."""
        deadline = self._clock() + self._config.timeout_s
        shipped = 0
        while self._clock() < deadline:
            try:
                outcome = self._attempt()
            except Exception:
                log.exception("final flush failed")
                break
            shipped += outcome.shipped
            if outcome.retry_in_s is not None or not outcome.full:
                break
        log.info("final flush sent %d samples; anything left stays spooled for the next start", shipped)

    def _interruptible_sleep(self, seconds: float) -> None:
        """Sleep SECONDS, or until wake() (replace_sink() calls it): a wake-up meanwhile is not lost."""
        if not self._stop.is_set():
            self._wake.wait(seconds)
        self._wake.clear()
