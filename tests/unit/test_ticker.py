"""Ticker: aligned ticks, no drift, late ticks logged and never doubled, clock steps survived."""

from __future__ import annotations

import logging
import random

import pytest

from monitor.ticker import Ticker

pytestmark = pytest.mark.timeout(30)  # a ticker bug tends to loop forever on a fake clock


class FakeClock:
    """A wall clock and a monotonic clock that move only when the code under test sleeps.

    ``now_s`` is the wall clock; ``step(delta_s)`` moves it alone (NTP, an operator), as a
    real step leaves the monotonic clock alone. Sleeps move both (plus optional jitter).
    """

    def __init__(self, start_s: float, jitter_s: tuple[float, float] = (0.0, 0.0), seed: int = 0) -> None:
        self.now_s = start_s
        self.mono_s = 1000.0
        self.jitter_s = jitter_s
        self.rand = random.Random(seed)
        self.sleeps: list[float] = []
        self.steps_at: dict[int, float] = {}  # sleep number -> a step that happens during it

    def __call__(self) -> float:
        return self.now_s

    def monotonic(self) -> float:
        return self.mono_s

    def advance(self, duration_s: float) -> None:
        self.now_s += duration_s
        self.mono_s += duration_s

    def step(self, delta_s: float) -> None:
        self.now_s += delta_s

    def sleep(self, duration_s: float) -> None:
        assert duration_s > 0
        self.sleeps.append(duration_s)
        self.advance(duration_s + self.rand.uniform(*self.jitter_s))
        self.step(self.steps_at.pop(len(self.sleeps), 0.0))


def ticker_on(clock: FakeClock, interval_s: float, **kwargs: object) -> Ticker:
    return Ticker(interval_s, clock=clock, monotonic=clock.monotonic, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


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
            self.clock.advance(max(0.0, self.set_at_s - self.clock.now_s))
            return True
        self.clock.advance(timeout)
        return False


def test_first_tick_is_the_next_wall_clock_multiple_of_the_interval() -> None:
    clock = FakeClock(1_700_000_003.25)
    ticker = ticker_on(clock, 10.0)
    assert ticker.wait_next() == 1_700_000_010_000
    assert clock.sleeps == [pytest.approx(6.75)]


def test_ticks_follow_one_interval_apart_in_integer_ms() -> None:
    clock = FakeClock(1_000.0)
    ticker = ticker_on(clock, 0.1)
    ticks = [ticker.wait_next() for _ in range(50)]
    assert ticks == [1_000_100 + 100 * i for i in range(50)]
    assert all(isinstance(t, int) for t in ticks)


def test_no_drift_over_ten_thousand_ticks_with_jittery_sleeps() -> None:
    # Sleeps wake up to 4 ms early or 30 ms late; the ticker must re-aim every time.
    clock = FakeClock(1_700_000_000.0, jitter_s=(-0.004, 0.030), seed=42)
    ticker = ticker_on(clock, 5.0)
    first = ticker.wait_next()
    assert first is not None
    previous = first
    for i in range(1, 10_000):
        clock.advance(0.2)  # the work of one tick
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
        clock.advance(duration_s / 2 if duration_s > 0.001 else duration_s)

    ticker = Ticker(2.0, clock=clock, monotonic=clock.monotonic, sleep=half_sleep)
    assert ticker.wait_next() == 102_000
    assert clock.now_s >= 102.0
    assert len(clock.sleeps) > 1


def test_non_millisecond_interval_rounds_each_tick_from_its_index() -> None:
    clock = FakeClock(0.0)
    ticker = ticker_on(clock, 1 / 3)
    ticks = [ticker.wait_next() for _ in range(6)]
    assert ticks == [333, 667, 1000, 1333, 1667, 2000]


def test_late_tick_is_logged_with_lateness_and_skipped_count_and_takes_the_current_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1_000.0)
    ticker = ticker_on(clock, 10.0)
    assert ticker.wait_next() == 1_010_000
    clock.advance(34.5)  # work overran: ticks at 1020, 1030 and 1040 have passed
    with caplog.at_level(logging.WARNING, logger="monitor.ticker"):
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
    ticker = ticker_on(clock, 10.0)
    assert ticker.wait_next() == 10_000
    clock.advance(12.0)  # overran into the next interval, but not past the one after
    with caplog.at_level(logging.WARNING, logger="monitor.ticker"):
        assert ticker.wait_next() == 20_000
    assert "late by 2.000 s" in caplog.text
    assert "0 tick(s) skipped" in caplog.text
    assert ticker.wait_next() == 30_000


def test_oversleep_past_several_ticks_is_logged_too(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0.0)
    ticker = ticker_on(clock, 1.0)
    assert ticker.wait_next() == 1_000
    clock.jitter_s = (3.2, 3.2)  # e.g. the machine was suspended during the sleep
    with caplog.at_level(logging.WARNING, logger="monitor.ticker"):
        assert ticker.wait_next() == 5_000
    assert "3 tick(s) skipped" in caplog.text


def test_on_time_ticks_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0.0, jitter_s=(0.0, 0.01))
    ticker = ticker_on(clock, 1.0)
    with caplog.at_level(logging.WARNING, logger="monitor.ticker"):
        for _ in range(100):
            ticker.wait_next()
    assert caplog.records == []


def test_a_step_back_keeps_ticking_and_stamps_repeated_times_1_ms_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(100.0)
    steps: list[tuple[float, float]] = []
    ticker = ticker_on(clock, 10.0, on_step=lambda step_s, wall_s: steps.append((step_s, wall_s)))
    assert [ticker.wait_next() for _ in range(3)] == [110_000, 120_000, 130_000]
    clock.step(-25.0)  # NTP stepped the clock back: 105 s; ticks 110 and 120 were taken already
    with caplog.at_level(logging.WARNING, logger="monitor.ticker"):
        ticks = [ticker.wait_next() for _ in range(4)]
    assert ticks == [110_001, 120_001, 130_001, 140_000]  # no wait for the clock to catch up
    assert clock.sleeps[3:] == [pytest.approx(5.0), 10.0, 10.0, 10.0]  # the rhythm held
    assert steps == [(pytest.approx(-25.0), pytest.approx(105.0))]
    assert "wall clock stepped back by 25.000 s" in caplog.text
    assert len(set(ticks) | {110_000, 120_000, 130_000}) == 7


def test_a_small_step_back_waits_for_the_next_unused_tick_rather_than_repeat_one() -> None:
    clock = FakeClock(100.0)
    ticker = ticker_on(clock, 10.0)
    assert ticker.wait_next() == 110_000
    clock.step(-3.0)  # 107 s: tick 110 was taken; the next unused one, 120, is one tick away
    assert ticker.wait_next() == 120_000
    assert ticker.wait_next() == 130_000


def test_a_day_forward_and_back_stamps_a_few_ticks_ahead_and_then_resumes_aligned() -> None:
    clock = FakeClock(1_000.0)
    steps: list[float] = []
    ticker = ticker_on(clock, 10.0, on_step=lambda step_s, _wall: steps.append(step_s))
    assert ticker.wait_next() == 1_010_000
    clock.steps_at = {2: 86_400.0, 5: -86_400.0}  # during the 2nd sleep forward, the 5th back
    ticks = [ticker.wait_next() for _ in range(6)]
    day_ms = 86_400_000
    assert ticks == [
        1_020_000 + day_ms,  # what the wall clock said
        1_030_000 + day_ms,
        1_040_000 + day_ms,
        1_050_000,  # the wall clock is back: aligned again, never shifted (nothing taken there)
        1_060_000,
        1_070_000,
    ]
    assert steps == [pytest.approx(86_400.0), pytest.approx(-86_400.0)]
    assert all(s == pytest.approx(10.0) for s in clock.sleeps)  # sampling never paused


def test_a_tick_taken_twice_before_is_stamped_2_ms_later() -> None:
    clock = FakeClock(100.0)
    ticker = ticker_on(clock, 10.0)
    assert [ticker.wait_next() for _ in range(3)] == [110_000, 120_000, 130_000]
    clock.step(-25.0)
    assert [ticker.wait_next() for _ in range(2)] == [110_001, 120_001]
    clock.step(-15.0)  # back to 105 s again
    assert [ticker.wait_next() for _ in range(3)] == [110_002, 120_002, 130_001]


def test_drift_below_the_tolerance_is_not_a_step(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0.0)
    steps: list[float] = []
    ticker = ticker_on(clock, 1.0, on_step=lambda step_s, _wall: steps.append(step_s))
    with caplog.at_level(logging.WARNING, logger="monitor.ticker"):
        for _ in range(50):
            clock.step(0.01)  # slewing: 10 ms per second, far more than NTP ever does
            ticker.wait_next()
    assert steps == []
    assert caplog.records == []


def test_a_forward_step_is_reported_once_and_the_ticks_follow_the_wall_clock() -> None:
    clock = FakeClock(0.0)
    steps: list[float] = []
    ticker = ticker_on(clock, 1.0, on_step=lambda step_s, _wall: steps.append(step_s))
    assert ticker.wait_next() == 1_000
    clock.step(3600.0)
    assert [ticker.wait_next() for _ in range(3)] == [3_602_000, 3_603_000, 3_604_000]
    assert steps == [pytest.approx(3600.0)]


def test_stop_set_while_waiting_returns_none_via_stop_wait() -> None:
    clock = FakeClock(0.0)
    stop = FakeStop(clock, set_at_s=25.0)
    ticker = ticker_on(clock, 10.0)
    assert ticker.wait_next(stop) == 10_000
    assert ticker.wait_next(stop) == 20_000
    assert ticker.wait_next(stop) is None
    assert clock.sleeps == []  # with a stop event, waiting is stop.wait(timeout), never sleep
    assert stop.waits == [10.0, 10.0, 10.0]


def test_stop_already_set_returns_none_without_waiting() -> None:
    clock = FakeClock(0.0)
    stop = FakeStop(clock, set_at_s=0.0)
    ticker = ticker_on(clock, 10.0)
    assert ticker.wait_next(stop) is None
    assert stop.waits == []


def test_stop_beats_a_late_tick() -> None:
    clock = FakeClock(0.0)
    stop = FakeStop(clock)
    ticker = ticker_on(clock, 10.0)
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
