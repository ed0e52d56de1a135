"""The shipper against a real spool and fake sinks: batch fates, backoff, alerts, stop, SIGHUP, replay."""

from __future__ import annotations

import logging
import random
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import ShipperConfig, SpoolConfig
from monitor.errors import AuthFailed, Rejected, Unavailable
from monitor.shipper import Shipper
from monitor.spool import Spool

NOW_S = 1_700_000_000.0
FLUSH_S = 5.0


class FakeSink:
    """A Sink that fails its first attempts as scripted (an exception, or None for success)."""

    def __init__(self, script: Iterable[Exception | None] = (), name: str = "fake") -> None:
        self.name = name
        self.script = list(script)
        self.attempts: list[tuple[list[str], Exception | None]] = []
        self.accepted: list[str] = []
        self.closed = False
        self.on_write: Callable[[], None] | None = None

    def write(self, lines: Sequence[str]) -> None:
        if self.on_write is not None:
            self.on_write()
        outcome = self.script.pop(0) if self.script else None
        self.attempts.append((list(lines), outcome))
        if outcome is not None:
            raise outcome
        self.accepted.extend(lines)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeTime:
    """Clock and sleep for run(): sleeping advances the clock; ``then`` runs after each sleep."""

    now_s: float = NOW_S
    sleeps: list[float] = field(default_factory=list)
    then: Callable[[int], None] | None = None

    def clock(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds
        if self.then is not None:
            self.then(len(self.sleeps))


class States:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, str]] = []

    def __call__(self, condition: str, active: bool, message: str) -> None:
        self.calls.append((condition, active, message))

    def changes(self) -> list[tuple[str, bool]]:
        return [(c, a) for c, a, _ in self.calls]


def shipper_config(**settings: object) -> ShipperConfig:
    values: dict[str, object] = {
        "batch_size": 3,
        "flush_interval_s": FLUSH_S,
        "backoff_initial_s": 1.0,
        "backoff_max_s": 8.0,
        "timeout_s": 10.0,
    }
    values.update(settings)
    return ShipperConfig(**values)  # type: ignore[arg-type]


def open_spool(directory: Path) -> Spool:
    config = SpoolConfig(path=directory / "spool.db", spill_path=directory / "spill.lp", buffer_size=10_000)
    return Spool(config, clock=lambda: NOW_S)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = open_spool(tmp_path)
    yield spool
    spool.close()


def fill(spool: Spool, timestamps: Iterable[int]) -> list[str]:
    """Append one line per timestamp; the lines in timestamp order."""
    lines = {ts: f"system,host=web-1 cpu_usage_overall={ts % 97}.5 {ts}" for ts in timestamps}
    for ts, text in lines.items():
        spool.append(ts, text)
    return [lines[ts] for ts in sorted(lines)]


def unavailable(status: int | None = None, retry_after_s: float | None = None) -> Unavailable:
    reason = "connection refused" if status is None else f"HTTP {status}"
    return Unavailable("http://db:8086", reason, status=status, retry_after_s=retry_after_s)


def stop_when_drained(spool: Spool, stop: threading.Event) -> Callable[[int], None]:
    def then(_: int) -> None:
        if spool.status().depth == 0:
            stop.set()

    return then


# -- one batch -----------------------------------------------------------------------------------


def test_ship_once_sends_the_oldest_batch_in_timestamp_order_and_acks_it(spool: Spool) -> None:
    lines = fill(spool, [70, 10, 50, 30, 60, 20, 40])
    sink = FakeSink()
    shipper = Shipper(spool, sink, shipper_config(batch_size=5), clock=lambda: NOW_S)

    assert shipper.ship_once() == 5
    assert sink.accepted == lines[:5]
    assert spool.status().depth == 2
    assert shipper.ship_once() == 2
    assert shipper.ship_once() == 0
    assert sink.accepted == lines
    assert len(sink.attempts) == 2  # an empty spool makes no write
    status = spool.status()
    assert (status.last_success_ms, status.last_error, status.sink_reachable) == (int(NOW_S * 1000), "", True)


def test_a_batch_counts_ticks_and_hands_the_sink_every_line_of_each_tick(spool: Spool) -> None:
    ticks = {
        ts: f"system,host=h v=1 {ts}\nsystem_filesystem,host=h,mount=/ filesystem_used_percent=5 {ts}"
        for ts in (10, 20, 30, 40)
    }
    for ts, row in ticks.items():
        spool.append(ts, row)
    sink = FakeSink()
    shipper = Shipper(spool, sink, shipper_config(batch_size=3), clock=lambda: NOW_S)

    assert shipper.ship_once() == 3  # rows: ticks, whatever their number of lines
    assert sink.accepted == [line for ts in (10, 20, 30) for line in ticks[ts].split("\n")]
    assert shipper.ship_once() == 1
    assert len(sink.accepted) == 8 and spool.status().depth == 0


@pytest.mark.parametrize(
    ("error", "reachable"),
    [(unavailable(), False), (unavailable(503), True), (unavailable(429, 2.0), True)],
    ids=["connection-refused", "http-503", "http-429"],
)
def test_unavailable_keeps_the_batch_and_records_whether_the_server_answered(
    spool: Spool, error: Unavailable, reachable: bool
) -> None:
    lines = fill(spool, range(3))
    states = States()
    shipper = Shipper(spool, FakeSink([error]), shipper_config(), on_state=states)

    assert shipper.ship_once() == 0

    assert [text for _, _, text in spool.peek(10)] == lines
    status = spool.status()
    assert (status.last_error, status.sink_reachable) == (str(error), reachable)
    assert states.calls == [("sink_unreachable", True, str(error))]


def test_auth_failure_keeps_the_batch_and_raises_the_auth_alert(spool: Spool) -> None:
    lines = fill(spool, range(3))
    states = States()
    sink = FakeSink([AuthFailed("http://db:8086", "HTTP 401: unauthorized", status=401)])
    shipper = Shipper(spool, sink, shipper_config(), on_state=states)

    assert shipper.ship_once() == 0
    assert [text for _, _, text in spool.peek(10)] == lines
    assert spool.status().sink_reachable is True
    assert states.changes() == [("sink_auth_failed", True)]

    assert shipper.ship_once() == 3
    assert states.changes() == [("sink_auth_failed", True), ("sink_auth_failed", False)]


def test_rejected_batch_is_logged_counted_and_dropped_so_the_queue_moves_on(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    lines = fill(spool, range(7))
    sink = FakeSink([Rejected("http://db:8086", 'partial write: field type conflict: "cpu"', status=400)])
    shipper = Shipper(spool, sink, shipper_config())

    with caplog.at_level(logging.ERROR, logger="monitor.shipper"):
        assert shipper.ship_once() == 0
    assert shipper.ship_once() == 3
    assert shipper.ship_once() == 1

    assert sink.accepted == lines[3:]
    assert spool.status().rejected_total == 3
    assert spool.status().depth == 0
    assert 'field type conflict: "cpu"' in caplog.text
    assert caplog.records[0].levelno == logging.ERROR


def test_unexpected_exception_is_logged_with_traceback_and_treated_as_unavailable(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    lines = fill(spool, range(2))
    states = States()
    shipper = Shipper(spool, FakeSink([RuntimeError("bug in a sink")]), shipper_config(), on_state=states)

    with caplog.at_level(logging.ERROR, logger="monitor.shipper"):
        assert shipper.ship_once() == 0

    assert any(r.exc_info and "bug in a sink" in str(r.exc_info[1]) for r in caplog.records)
    assert spool.status().sink_reachable is False
    assert states.changes() == [("sink_unreachable", True)]
    assert shipper.ship_once() == 2
    assert states.changes() == [("sink_unreachable", True), ("sink_unreachable", False)]
    assert spool.status().depth == 0 and len(lines) == 2


# -- backoff and alerts under run() ---------------------------------------------------------------


def run_until_drained(
    spool: Spool, sink: FakeSink, *, rand: Callable[[], float] = lambda: 1.0, **settings: object
) -> tuple[FakeTime, States]:
    stop = threading.Event()
    fake = FakeTime(then=stop_when_drained(spool, stop))
    states = States()
    shipper = Shipper(
        spool,
        sink,
        shipper_config(**settings),
        on_state=states,
        clock=fake.clock,
        sleep=fake.sleep,
        rand=rand,
    )
    shipper.run(stop)
    return fake, states


def test_backoff_doubles_is_capped_and_resets_after_a_success(spool: Spool) -> None:
    fill(spool, range(2))
    sink = FakeSink([unavailable()] * 6 + [None] + [unavailable(503)] * 2)

    fake, _ = run_until_drained(spool, sink, batch_size=1)

    # 1, 2, 4, 8 (cap), 8, 8; success of a full batch: no wait; then from 1 again; then idle.
    assert fake.sleeps == [1, 2, 4, 8, 8, 8, 1, 2, FLUSH_S]
    assert len(sink.accepted) == 2


def test_backoff_is_full_jitter_over_the_capped_exponential(spool: Spool) -> None:
    fill(spool, range(1))
    draws = iter([0.25, 0.5, 0.75, 0.1, 0.9])
    sink = FakeSink([unavailable()] * 5)

    fake, _ = run_until_drained(spool, sink, rand=lambda: next(draws))

    assert fake.sleeps == pytest.approx([0.25 * 1, 0.5 * 2, 0.75 * 4, 0.1 * 8, 0.9 * 8, FLUSH_S])


@pytest.mark.parametrize(("retry_after_s", "expected_s"), [(30.0, 30.0), (0.5, 1.0)])
def test_retry_after_is_honoured_when_longer_than_the_backoff(
    spool: Spool, retry_after_s: float, expected_s: float
) -> None:
    fill(spool, range(1))
    sink = FakeSink([unavailable(429, retry_after_s)])

    fake, _ = run_until_drained(spool, sink)

    assert fake.sleeps == [expected_s, FLUSH_S]


def test_outage_alert_fires_once_and_resolves_once(spool: Spool) -> None:
    fill(spool, range(4))
    sink = FakeSink([unavailable()] * 3 + [unavailable(502)] * 2 + [None, unavailable(), None])

    _, states = run_until_drained(spool, sink, batch_size=2)

    assert states.changes() == [
        ("sink_unreachable", True),
        ("sink_unreachable", False),
        ("sink_unreachable", True),
        ("sink_unreachable", False),
    ]
    assert states.calls[0][2] == "http://db:8086: connection refused"


def test_auth_failure_keeps_retrying_with_backoff_until_credentials_work(spool: Spool) -> None:
    lines = fill(spool, range(2))
    refused = AuthFailed("http://db:8086", "HTTP 403: forbidden", status=403)
    sink = FakeSink([refused] * 4)

    fake, states = run_until_drained(spool, sink)

    assert fake.sleeps == [1, 2, 4, 8, FLUSH_S]
    assert states.changes() == [("sink_auth_failed", True), ("sink_auth_failed", False)]
    assert sink.accepted == lines


def test_full_batches_ship_back_to_back_and_a_small_one_waits_for_the_flush_interval(spool: Spool) -> None:
    fill(spool, range(7))
    sink = FakeSink()

    fake, _ = run_until_drained(spool, sink, batch_size=3)

    assert [len(lines) for lines, _ in sink.attempts] == [3, 3, 1]
    assert fake.sleeps == [FLUSH_S]


def test_run_never_dies_on_errors_around_the_spool(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = open_spool(tmp_path)
    fill(broken, range(3))
    sink = FakeSink()
    sink.on_write = broken.close  # the spool fails under the shipper: ack raises
    stop = threading.Event()
    fake = FakeTime(then=lambda n: stop.set() if n == 3 else None)
    shipper = Shipper(broken, sink, shipper_config(), clock=fake.clock, sleep=fake.sleep, rand=lambda: 1.0)

    with caplog.at_level(logging.ERROR, logger="monitor.shipper"):
        shipper.run(stop)

    assert fake.sleeps == [1, 2, 4]  # logged, backed off, carried on until told to stop
    assert "unexpected error around the spool" in caplog.text


# -- stop and the final flush --------------------------------------------------------------------


def test_stop_flushes_everything_waiting_before_run_returns(spool: Spool) -> None:
    lines = fill(spool, range(8))
    sink = FakeSink()
    stop = threading.Event()
    stop.set()
    fake = FakeTime()
    shipper = Shipper(spool, sink, shipper_config(), clock=fake.clock, sleep=fake.sleep)

    shipper.run(stop)

    assert sink.accepted == lines
    assert fake.sleeps == []
    assert sink.closed  # run() owns the sink once it has started


def test_final_flush_gives_up_at_the_first_failure_without_waiting(spool: Spool) -> None:
    lines = fill(spool, range(8))
    sink = FakeSink([None, unavailable()])
    stop = threading.Event()
    stop.set()
    fake = FakeTime()

    Shipper(spool, sink, shipper_config(), clock=fake.clock, sleep=fake.sleep).run(stop)

    assert sink.accepted == lines[:3]
    assert len(sink.attempts) == 2
    assert fake.sleeps == []
    assert spool.status().depth == 5  # the rest stays spooled for the next start


def test_final_flush_stops_when_timeout_has_passed(spool: Spool) -> None:
    fill(spool, range(30))
    fake = FakeTime()
    sink = FakeSink()

    def slow_write() -> None:
        fake.now_s += 4.0  # each write takes 4 s of the 10 s timeout

    sink.on_write = slow_write
    stop = threading.Event()
    stop.set()

    Shipper(spool, sink, shipper_config(timeout_s=10.0), clock=fake.clock, sleep=fake.sleep).run(stop)

    assert len(sink.attempts) == 3  # started at 0 s, 4 s and 8 s; none at 12 s
    assert spool.status().depth == 21


# -- SIGHUP: replace_sink ------------------------------------------------------------------------


def test_replace_sink_closes_the_old_sink_and_ships_the_kept_batch_with_new_settings(spool: Spool) -> None:
    lines = fill(spool, range(10))
    old = FakeSink([unavailable()])
    new = FakeSink(name="new")
    shipper = Shipper(spool, old, shipper_config(batch_size=3))

    assert shipper.ship_once() == 0
    shipper.replace_sink(new, shipper_config(batch_size=4))
    assert not old.closed  # swapped between batches, not before

    assert shipper.ship_once() == 4
    assert old.closed and not new.closed
    assert new.accepted == lines[:4]


def test_replace_sink_twice_before_a_batch_closes_the_unused_sink(spool: Spool) -> None:
    lines = fill(spool, range(2))
    old, unused, new = FakeSink(), FakeSink(name="unused"), FakeSink(name="new")
    shipper = Shipper(spool, old, shipper_config())

    shipper.replace_sink(unused, shipper_config())
    shipper.replace_sink(new, shipper_config())
    shipper.ship_once()

    assert old.closed and unused.closed and not new.closed
    assert (new.accepted, unused.attempts) == (lines, [])


def test_replace_sink_returns_without_waiting_for_the_write_in_flight(spool: Spool) -> None:
    lines = fill(spool, range(6))
    in_write, gate = threading.Event(), threading.Event()
    released: list[bool] = []
    old, new = FakeSink(), FakeSink(name="new")
    old.on_write = lambda: (in_write.set(), released.append(gate.wait(timeout=30)))
    shipper = Shipper(spool, old, shipper_config())
    writer = threading.Thread(target=shipper.ship_once)
    writer.start()
    assert in_write.wait(timeout=30)

    shipper.replace_sink(new, shipper_config())  # the write is still blocked in the old sink
    gate.set()
    writer.join(timeout=30)

    assert released == [True]
    assert old.accepted == lines[:3] and not old.closed
    assert shipper.ship_once() == 3
    assert new.accepted == lines[3:] and old.closed


def test_replace_sink_resets_the_backoff_and_nothing_is_lost(spool: Spool) -> None:
    lines = fill(spool, range(5))
    old = FakeSink([unavailable()] * 100)
    new = FakeSink([unavailable()], name="new")
    stop = threading.Event()
    fake = FakeTime()
    shipper = Shipper(spool, old, shipper_config(), clock=fake.clock, sleep=fake.sleep, rand=lambda: 1.0)

    def then(n: int) -> None:
        if n == 3:
            shipper.replace_sink(new, shipper_config(batch_size=2))
        if spool.status().depth == 0:
            stop.set()

    fake.then = then
    shipper.run(stop)

    assert fake.sleeps == [1, 2, 4, 1, FLUSH_S]  # the new sink's first failure backs off from 1 s again
    assert new.accepted == lines
    assert old.accepted == [] and old.closed


# -- the default, interruptible sleep (real threads, bounded waits) -------------------------------


def test_default_sleep_returns_as_soon_as_stop_is_set_and_the_shipper_woken(spool: Spool) -> None:
    fill(spool, range(1))
    wrote = threading.Event()
    sink = FakeSink()
    sink.on_write = wrote.set
    stop = threading.Event()
    shipper = Shipper(spool, sink, shipper_config(flush_interval_s=3600.0))
    thread = threading.Thread(target=shipper.run, args=(stop,))
    thread.start()

    assert wrote.wait(timeout=30)
    fill(spool, range(1, 3))  # arrives during the 3600 s sleep: the final flush sends it
    stop.set()
    shipper.wake()
    thread.join(timeout=30)

    assert not thread.is_alive()  # did not sit out the 3600 s flush interval
    assert len(sink.accepted) == 3
    assert sink.closed


def test_a_wake_during_an_attempt_ends_the_sleep_that_follows(spool: Spool) -> None:
    """replace_sink() while a write is in flight: the next sleep (3600 s) returns at once."""
    fill(spool, range(1))
    delivered = threading.Event()
    old, new = FakeSink(), FakeSink(name="new")
    new.on_write = delivered.set
    stop = threading.Event()
    shipper = Shipper(spool, old, shipper_config(flush_interval_s=3600.0))

    def replace_during_the_write() -> None:
        fill(spool, range(1, 3))
        shipper.replace_sink(new, shipper_config(flush_interval_s=3600.0))

    old.on_write = replace_during_the_write
    thread = threading.Thread(target=shipper.run, args=(stop,))
    thread.start()
    try:
        assert delivered.wait(timeout=30)
    finally:
        stop.set()
        shipper.wake()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(old.accepted) == 1
    assert len(new.accepted) == 2


def test_default_sleep_wakes_up_when_the_sink_is_replaced(spool: Spool) -> None:
    fill(spool, range(2))
    failed, delivered = threading.Event(), threading.Event()
    old = FakeSink([unavailable()] * 1000)
    old.on_write = failed.set
    new = FakeSink(name="new")
    new.on_write = delivered.set
    stop = threading.Event()
    shipper = Shipper(
        spool, old, shipper_config(backoff_initial_s=3600.0, backoff_max_s=3600.0), rand=lambda: 1.0
    )
    thread = threading.Thread(target=shipper.run, args=(stop,))
    thread.start()
    try:
        assert failed.wait(timeout=30)
        shipper.replace_sink(new, shipper_config())
        assert delivered.wait(timeout=30)  # did not sit out the 3600 s backoff
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(new.accepted) == 2


# -- property: exactly once, in order ------------------------------------------------------------

FAILURES: dict[str, Callable[[], Exception | None]] = {
    "ok": lambda: None,
    "unavailable": unavailable,
    "retry_after": lambda: unavailable(503, 7.0),
    "auth": lambda: AuthFailed("http://db:8086", "HTTP 401", status=401),
    "rejected": lambda: Rejected("http://db:8086", "HTTP 400: bad line", status=400),
    "boom": lambda: ValueError("unexpected"),
}


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=40),
    batch_size=st.integers(min_value=1, max_value=6),
    script=st.lists(st.sampled_from(sorted(FAILURES)), max_size=30),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_sample_leaves_the_spool_exactly_once_in_order_whatever_the_sink_does(
    n: int, batch_size: int, script: list[str], seed: int
) -> None:
    timestamps = list(range(1000, 1000 + n))
    random.Random(seed).shuffle(timestamps)
    with tempfile.TemporaryDirectory() as tmp:
        spool = open_spool(Path(tmp))
        try:
            lines = fill(spool, timestamps)
            sink = FakeSink([FAILURES[name]() for name in script])
            states = States()
            shipper = Shipper(spool, sink, shipper_config(batch_size=batch_size), on_state=states)
            for _ in range(len(script) + n + 1):
                shipper.ship_once()
            status = spool.status()
        finally:
            spool.close()

    # Each sample left the queue once, in timestamp order: accepted, or rejected with its batch.
    left = [
        line
        for batch, outcome in sink.attempts
        if outcome is None or isinstance(outcome, Rejected)
        for line in batch
    ]
    assert left == lines
    rejected = [line for batch, outcome in sink.attempts if isinstance(outcome, Rejected) for line in batch]
    assert sink.accepted == [line for line in lines if line not in set(rejected)]
    assert status.rejected_total == len(rejected)
    assert status.depth == 0
    # Alerts alternate: each condition fires once per streak and resolves once.
    for condition in ("sink_unreachable", "sink_auth_failed"):
        flips = [active for c, active in states.changes() if c == condition]
        assert flips == [i % 2 == 0 for i in range(len(flips))]
