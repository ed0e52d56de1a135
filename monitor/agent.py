"""The agent (``hostmon collect``): ticks → collector → spool → shipper → sink, plus alerts.

Each tick's samples (:meth:`Collector.sample`: the host's, then one per mount, disk and
interface) are encoded and appended as ONE spool row, their lines joined by ``"\n"``; every
reader of spool rows (sinks, salvage, spill and replay) takes a row as one or more lines, and
counts of queued "samples" are counts of ticks. The sampling loop runs in the calling thread;
the shipper runs in its own thread. Every sample is in the spool before anything else
happens to it. ``stop`` (SIGTERM/SIGINT) ends the loop, lets the shipper make a last
bounded flush and closes everything; ``reload`` (SIGHUP) re-reads the config file and
applies it between ticks without touching the spooled data (a config with errors is
refused and the old one kept).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from monitor import access
from monitor import config as config_mod
from monitor.alerts import Alerts
from monitor.collector import Collector, SystemStats
from monitor.config import Config
from monitor.errors import ConfigError
from monitor.lineprotocol import encode
from monitor.shipper import Shipper
from monitor.sinks import make_sink
from monitor.spool import DROP_OLDEST, Overflowed, Spool, salvage
from monitor.ticker import Ticker

log = logging.getLogger(__name__)

QUIET_TICKS = 30  # ticks without a new event before spool_overflow, disk_full or clock_step resolves
SPOOL_OVERFLOW = "spool_overflow"  # the configured budget (buffer_size, max_spool_bytes) was reached
DISK_FULL = "disk_full"  # the file system's free space was the limit (or refused a write)
CLOCK_STEP = "clock_step"  # the wall clock stepped (forward or back)


@dataclass
class _Parts:
    collector: Collector
    ticker: Ticker
    spool: Spool
    alerts: Alerts
    shipper: Shipper


class Agent:
    """Owns the pieces and the two threads; ``run`` blocks until ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        *,
        stats: SystemStats | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        loader: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        self.stats = stats
        self.clock = clock  # wall clock: tick timestamps, alert times
        self.monotonic = monotonic  # elapsed time for rates, immune to clock steps
        self.loader = loader or (lambda: config_mod.load(config.source))
        self.stop_event = threading.Event()
        self._reload = threading.Event()
        self._quiet: dict[str, int] = {}  # firing condition -> ticks since its last event

    # -- signals ------------------------------------------------------------------------
    def stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        self._reload.set()

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> None:
        parts = self._build()
        ship_thread = threading.Thread(
            target=parts.shipper.run, args=(self.stop_event,), name="shipper", daemon=True
        )
        ship_thread.start()
        try:
            self._loop(parts)
        finally:
            self.stop_event.set()
            parts.shipper.wake()  # here, not in stop(): that runs in a signal handler
            ship_thread.join(2 * self.config.shipper.timeout_s + 5)  # a write may start at the deadline
            if ship_thread.is_alive():
                log.warning("shipper did not finish its final flush in time; samples stay spooled")
            parts.alerts.close()
            parts.spool.close()
            log.info("stopped")

    def _build(self) -> _Parts:
        c = self.config
        access.check_agent(c)
        alerts = Alerts(c.alerts, c.host, clock=self.clock)
        spool = Spool(c.spool, clock=self.clock, on_overflow=self._on_overflow(alerts))
        if spool.moved_aside is not None:
            alerts.set_condition("spool_damaged", True, "critical", salvage.describe(spool.moved_aside))
        ticker = self._ticker(c.agent.interval_s, alerts, spool)
        sink = make_sink(c.sink, c.shipper)
        log.info("collecting every %ss for host %s into %s", c.agent.interval_s, c.host, sink.name)
        shipper = Shipper(spool, sink, c.shipper, on_state=self._on_state(alerts))
        collector = Collector(c.host, self.stats, c.collectors)
        collector.prime(self.monotonic())
        return _Parts(collector, ticker, spool, alerts, shipper)

    def _ticker(self, interval_s: float, alerts: Alerts, spool: Spool) -> Ticker:
        def stepped(step_s: float, wall_s: float) -> None:
            self._quiet[CLOCK_STEP] = 0
            spool.record_clock_step(round(step_s * 1000), round(wall_s * 1000))
            direction = "forward" if step_s > 0 else "back"
            alerts.set_condition(
                CLOCK_STEP,
                True,
                "warning",
                f"wall clock stepped {direction} by {abs(step_s):.3f} s; sampling goes on, stamped by the"
                " wall clock",
            )

        return Ticker(interval_s, clock=self.clock, monotonic=self.monotonic, on_step=stepped)

    def _loop(self, parts: _Parts) -> None:
        measurement = self.config.sink.measurement
        while not self.stop_event.is_set():
            ts_ms = parts.ticker.wait_next(self.stop_event)
            if ts_ms is None:
                break
            samples = parts.collector.sample(ts_ms, self.monotonic())
            # One tick, one spool row: its lines (host first) joined by "\n".
            parts.spool.append(ts_ms, "\n".join([encode(s, measurement) for s in samples]))
            parts.alerts.observe_tick(samples)
            self._resolve_quiet_conditions(parts)
            if self._reload.is_set():
                self._reload.clear()
                parts = self._apply_reload(parts)
                measurement = self.config.sink.measurement

    # -- alerts from the spool and the shipper --------------------------------------------
    def _on_overflow(self, alerts: Alerts) -> Callable[[Overflowed], None]:
        """spool_overflow or disk_full, by what limited the spool; each fires once per episode."""

        def overflow(event: Overflowed) -> None:
            name = DISK_FULL if event.disk_full else SPOOL_OVERFLOW
            self._quiet[name] = 0
            verb = "dropped (oldest first)" if event.policy == DROP_OLDEST else "spilled to the spill file"
            what = "" if event.disk_full else "spool budget reached: "
            alerts.set_condition(name, True, "critical", f"{what}{event.reason}: {event.n} samples {verb}")

        return overflow

    def _on_state(self, alerts: Alerts) -> Callable[[str, bool, str], None]:
        def state(name: str, active: bool, message: str) -> None:
            alerts.set_condition(name, active, "critical", message)

        return state

    def _resolve_quiet_conditions(self, parts: _Parts) -> None:
        """Resolve spool_overflow, disk_full and clock_step once QUIET_TICKS ticks passed quietly."""
        for name, ticks in list(self._quiet.items()):
            if ticks + 1 < QUIET_TICKS:
                self._quiet[name] = ticks + 1
                continue
            del self._quiet[name]
            if name == CLOCK_STEP:
                parts.alerts.set_condition(name, False, "warning", f"no clock step for {QUIET_TICKS} ticks")
                continue
            depth = parts.spool.status().depth
            space = f", {parts.spool.free_bytes()} bytes free" if name == DISK_FULL else ""
            message = f"no sample lost for {QUIET_TICKS} ticks ({depth} samples queued{space})"
            parts.alerts.set_condition(name, False, "critical", message)

    # -- SIGHUP -------------------------------------------------------------------------
    def _apply_reload(self, parts: _Parts) -> _Parts:
        try:
            new = self.loader()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused, keeping the running config: %s", problem)
            return parts
        old = self.config
        self.config = new
        parts.alerts.reconfigure(new.alerts, host=new.host)
        parts.spool.reconfigure(new.spool)
        if (new.sink, new.shipper) != (old.sink, old.shipper):
            parts.shipper.replace_sink(make_sink(new.sink, new.shipper), new.shipper)
        if new.agent.interval_s != old.agent.interval_s:
            parts.ticker = self._ticker(new.agent.interval_s, parts.alerts, parts.spool)
        if (new.host, new.collectors) != (old.host, old.collectors):
            parts.collector = Collector(new.host, self.stats, new.collectors)
            parts.collector.prime(self.monotonic())
        log.info("configuration reloaded from %s", new.source or "defaults")
        return parts
