"""Ticker: aligned ticks, no drift, late ticks logged and never doubled, interruptible by stop."""

from __future__ import annotations

import logging
import random

import pytest

from monitor.collector import Ticker

pytestmark = pytest.mark.timeout(30)  # a ticker bug tends to loop forever on a fake clock


class FakeClock:
    """Wall clock that moves only when the code under test sleeps (plus optional jitter)."""

    def __init__(self, start_s: float, jitter_s: tuple[float, float] = (0.0, 0.0), seed: int = 0) -> None:
        self.now_s = start_s
        self.jitter_s = jitter_s
        self.rand = random.Random(seed)
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, duration_s: float) -> None:
        assert duration_s > 0
        self.sleeps.append(duration_s)
        self.now_s += duration_s + self.rand.uniform(*self.jitter_s)


class FakeStop:
    """A stop event on the fake clock: it becomes set at ``set_at_s``."""

    def __init__(self, clock: FakeClock, set_at_s: float | None = None) -> None:
        self.clock = clock
        self.set_at_s = set_at_s
        self.waits: list[float] = []

    def is_set(self) -> bool:
        return self.set_at_s is not None and self.clock.now_s >= self.set_at_s

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        if self.set_at_s is not None and self.clock.now_s + timeout >= self.set_at_s:
            self.clock.now_s = max(self.clock.now_s, self.set_at_s)
            return True
        self.clock.now_s += timeout
        return False


def test_first_tick_is_the_next_wall_clock_multiple_of_the_interval() -> None:
    clock = FakeClock(1_700_000_003.25)
    ticker = Ticker(10.0, clock=clock, sleep=clock.sleep)
    assert ticker.wait_next() == 1_700_000_010_000
    assert clock.sleeps == [pytest.approx(6.75)]


def test_ticks_follow_one_interval_apart_in_integer_ms() -> None:
    clock = FakeClock(1_000.0)
    ticker = Ticker(0.1, clock=clock, sleep=clock.sleep)
    ticks = [ticker.wait_next() for _ in range(50)]
    assert ticks == [1_000_100 + 100 * i for i in range(50)]
    assert all(isinstance(t, int) for t in ticks)


def test_no_drift_over_ten_thousand_ticks_with_jittery_sleeps() -> None:
    # Sleeps wake up to 4 ms early or 30 ms late; the ticker must re-aim every time.
    clock = FakeClock(1_700_000_000.0, jitter_s=(-0.004, 0.030), seed=42)
    ticker = Ticker(5.0, clock=clock, sleep=clock.sleep)
    first = ticker.wait_next()
    assert first is not None
    previous = first
    for i in range(1, 10_000):
        clock.now_s += 0.2  # the work of one tick
        ts = ticker.wait_next()
        assert ts == previous + 5_000, f"tick {i}"
        previous = ts
    assert previous == first + 9_999 * 5_000
    # The clock is still within one jitter of the last tick, ~14 hours later: no accumulation.
    assert 0.0 <= clock.now_s - previous / 1000 <= 0.030 + 0.2


def test_sleep_that_wakes_early_sleeps_again_for_the_remainder() -> None:
    clock = FakeClock(100.0)

    def half_sleep(duration_s: float) -> None:  # every sleep wakes halfway through
        clock.sleeps.append(duration_s)
        clock.now_s += duration_s / 2 if duration_s > 0.001 else duration_s

    ticker = Ticker(2.0, clock=clock, sleep=half_sleep)
    assert ticker.wait_next() == 102_000
    assert clock.now_s >= 102.0
    assert len(clock.sleeps) > 1


def test_non_millisecond_interval_rounds_each_tick_from_its_index() -> None:
    clock = FakeClock(0.0)
    ticker = Ticker(1 / 3, clock=clock, sleep=clock.sleep)
    ticks = [ticker.wait_next() for _ in range(6)]
    assert ticks == [333, 667, 1000, 1333, 1667, 2000]


def test_late_tick_is_logged_with_lateness_and_skipped_count_and_takes_the_current_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1_000.0)
    ticker = Ticker(10.0, clock=clock, sleep=clock.sleep)
    assert ticker.wait_next() == 1_010_000
    clock.now_s += 34.5  # work overran: ticks at 1020, 1030 and 1040 have passed
    with caplog.at_level(logging.WARNING, logger="monitor.collector"):
        ts = ticker.wait_next()
    assert ts == 1_040_000  # the current tick's aligned time, no back-fill of 1020/1030
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "late by 24.500 s" in record.getMessage()
    assert "2 tick(s) skipped" in record.getMessage()
    caplog.clear()
    assert ticker.wait_next() == 1_050_000  # back on schedule, one interval later
    assert caplog.records == []


def test_slightly_late_tick_skips_none_and_never_repeats_a_timestamp(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(0.0)
    ticker = Ticker(10.0, clock=clock, sleep=clock.sleep)
    assert ticker.wait_next() == 10_000
    clock.now_s += 12.0  # overran into the next interval, but not past the one after
    with caplog.at_level(logging.WARNING, logger="monitor.collector"):
        assert ticker.wait_next() == 20_000
    assert "late by 2.000 s" in caplog.text
    assert "0 tick(s) skipped" in caplog.text
    assert ticker.wait_next() == 30_000


def test_oversleep_past_several_ticks_is_logged_too(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0.0)
    ticker = Ticker(1.0, clock=clock, sleep=clock.sleep)
    assert ticker.wait_next() == 1_000
    clock.jitter_s = (3.2, 3.2)  # e.g. the machine was suspended during the sleep
    with caplog.at_level(logging.WARNING, logger="monitor.collector"):
        assert ticker.wait_next() == 5_000
    assert "3 tick(s) skipped" in caplog.text


def test_on_time_ticks_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0.0, jitter_s=(0.0, 0.01))
    ticker = Ticker(1.0, clock=clock, sleep=clock.sleep)
    with caplog.at_level(logging.WARNING, logger="monitor.collector"):
        for _ in range(100):
            ticker.wait_next()
    assert caplog.records == []


def test_clock_stepping_back_never_reuses_a_timestamp(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(100.0)
    ticker = Ticker(10.0, clock=clock, sleep=clock.sleep)
    assert ticker.wait_next() == 110_000
    clock.now_s -= 60.0  # NTP stepped the clock back a minute
    with caplog.at_level(logging.WARNING, logger="monitor.collector"):
        assert ticker.wait_next() == 120_000
    assert "stepped back" in caplog.text
    assert max(clock.sleeps[1:]) <= 10.0  # waits in interval-sized steps, noticing clock changes


def test_stop_set_while_waiting_returns_none_via_stop_wait() -> None:
    clock = FakeClock(0.0)
    stop = FakeStop(clock, set_at_s=25.0)
    ticker = Ticker(10.0, clock=clock, sleep=clock.sleep)
    assert ticker.wait_next(stop) == 10_000
    assert ticker.wait_next(stop) == 20_000
    assert ticker.wait_next(stop) is None
    assert clock.sleeps == []  # with a stop event, waiting is stop.wait(timeout), never sleep
    assert stop.waits == [10.0, 10.0, 10.0]


def test_stop_already_set_returns_none_without_waiting() -> None:
    clock = FakeClock(0.0)
    stop = FakeStop(clock, set_at_s=0.0)
    ticker = Ticker(10.0, clock=clock, sleep=clock.sleep)
    assert ticker.wait_next(stop) is None
    assert stop.waits == []


def test_stop_beats_a_late_tick() -> None:
    clock = FakeClock(0.0)
    stop = FakeStop(clock)
    ticker = Ticker(10.0, clock=clock, sleep=clock.sleep)
    assert ticker.wait_next(stop) == 10_000
    clock.now_s = 55.0
    stop.set_at_s = 50.0
    assert ticker.wait_next(stop) is None


def test_real_threading_event_set_before_waiting_stops_at_once() -> None:
    import threading

    stop = threading.Event()
    stop.set()
    assert Ticker(3600.0).wait_next(stop) is None


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        Ticker(0.0)
