"""The shipper's read-ahead: the next batch read and prepared while one is in flight, and dropped
whenever that batch is not accepted, so nothing is skipped, duplicated or reordered."""

from __future__ import annotations

import gzip
import random
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import ShipperConfig, SinkConfig, SpoolConfig
from monitor.errors import AuthFailed, Rejected
from monitor.readahead import start_thread
from monitor.shipper import Shipper
from monitor.sinks import PreparedBatch, PreparingSink
from monitor.sinks.influx_v1 import InfluxV1Sink
from monitor.spool import Spool
from tests.unit.test_shipper import (
    FAILURES,
    FakeSink,
    FakeTime,
    fill,
    open_spool,
    shipper_config,
    unavailable,
)
from tests.unit.test_sinks_status import FakeServer

Job = Callable[[], None]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = open_spool(tmp_path)
    yield spool
    spool.close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


class PreparingFakeSink(FakeSink):
    """A FakeSink split into prepare/send; ``events`` logs both, in the order they happened."""

    def __init__(self, script: Iterable[Exception | None] = (), name: str = "preparing") -> None:
        super().__init__(script, name)
        self.events: list[tuple[str, list[str]]] = []
        self.on_prepare: Callable[[list[str]], None] | None = None

    def prepare(self, lines: Sequence[str]) -> PreparedBatch:
        self.events.append(("prepare", list(lines)))
        if self.on_prepare is not None:
            self.on_prepare(list(lines))
        return PreparedBatch(lines, "\n".join(lines).encode())

    def send(self, batch: PreparedBatch) -> None:
        assert batch.body == "\n".join(batch.lines).encode()
        self.events.append(("send", list(batch.lines)))
        self.write(batch.lines)


class Spawner:
    """``spawn`` for the shipper: runs each job inline (deterministic) and counts them."""

    def __init__(self) -> None:
        self.jobs = 0

    def __call__(self, job: Job) -> Job:
        self.jobs += 1
        job()
        return lambda: None


def pipelined(spool: Spool, sink: FakeSink, **settings: object) -> tuple[Shipper, Spawner]:
    spawner = Spawner()
    return Shipper(spool, sink, shipper_config(**settings), clock=lambda: 0.0, spawn=spawner), spawner


def drain(shipper: Shipper, spool: Spool) -> None:
    """ship_once until the spool is empty (a failed or rejected batch returns 0 too)."""
    for _ in range(1000):
        if not shipper.ship_once() and spool.status().depth == 0:
            return
    raise AssertionError("the spool never drained")


def sent(sink: FakeSink) -> list[list[str]]:
    return [lines for lines, _ in sink.attempts]


def test_preparing_fake_sink_is_a_preparing_sink_and_the_plain_one_is_not() -> None:
    assert isinstance(PreparingFakeSink(), PreparingSink)
    assert not isinstance(FakeSink(), PreparingSink)


# -- order -----------------------------------------------------------------------------------------


def test_each_full_batch_has_the_next_one_read_and_prepared_before_it_is_sent(spool: Spool) -> None:
    lines = fill(spool, [70, 10, 50, 30, 60, 20, 40])
    sink = PreparingFakeSink()
    shipper, spawner = pipelined(spool, sink, batch_size=3)

    drain(shipper, spool)

    assert sink.accepted == lines
    assert sent(sink) == [lines[0:3], lines[3:6], lines[6:7]]
    assert (
        sink.events
        == [
            ("prepare", lines[3:6]),  # read ahead before the first batch (a plain write) went out
            ("prepare", lines[6:7]),  # read ahead before the second one went out
            ("send", lines[3:6]),  # the read-ahead, as prepared
            ("send", lines[6:7]),
        ]
    )
    assert spawner.jobs == 2  # after each full batch; the last, partial one starts none
    assert spool.status().depth == 0


def test_a_batch_that_is_not_full_never_starts_a_read_ahead(spool: Spool) -> None:
    fill(spool, range(2))
    sink = FakeSink()
    shipper, spawner = pipelined(spool, sink, batch_size=3)

    assert shipper.ship_once() == 2
    fill(spool, [10])
    assert shipper.ship_once() == 1

    assert spawner.jobs == 0
    assert len(sink.accepted) == 3


def test_the_read_ahead_runs_on_its_own_thread_while_the_batch_before_it_is_in_flight(spool: Spool) -> None:
    lines = fill(spool, range(6))
    prepared_next = threading.Event()
    overlapped: list[bool] = []
    sink = PreparingFakeSink()
    sink.on_prepare = lambda batch: prepared_next.set() if batch == lines[3:6] else None
    # the first write waits for the helper to prepare the second batch: only possible in parallel
    sink.on_write = lambda: overlapped.append(prepared_next.wait(timeout=30)) if not overlapped else None
    shipper = Shipper(spool, sink, shipper_config(batch_size=3), clock=lambda: 0.0)

    drain(shipper, spool)

    assert overlapped == [True]
    assert sink.accepted == lines
    assert sink.events[-1] == ("send", lines[3:6])


# -- failures of the batch in flight ----------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        unavailable(),
        unavailable(429, 3.0),
        AuthFailed("http://db:8086", "HTTP 401", status=401),
        ValueError("bug"),
    ],
    ids=["unavailable", "retry-after", "auth", "unexpected"],
)
def test_a_failed_batch_drops_the_read_ahead_and_is_sent_again_before_anything_newer(
    spool: Spool, failure: Exception
) -> None:
    lines = fill(spool, range(9))
    sink = PreparingFakeSink([None, failure])  # the second batch fails once
    shipper, _ = pipelined(spool, sink, batch_size=3)

    drain(shipper, spool)

    assert sent(sink) == [lines[0:3], lines[3:6], lines[3:6], lines[6:9]]
    assert sink.accepted == lines
    assert (
        sink.events
        == [
            ("prepare", lines[3:6]),
            ("prepare", lines[6:9]),  # read ahead while batch 2 was in flight, then dropped
            ("send", lines[3:6]),  # failed; re-sent by a plain write after a fresh peek
            ("prepare", lines[6:9]),
            ("send", lines[6:9]),
        ]
    )
    assert spool.status().depth == 0


def test_a_rejected_batch_is_dropped_and_the_queue_moves_on_from_the_spool(spool: Spool) -> None:
    lines = fill(spool, range(9))
    sink = PreparingFakeSink([None, Rejected("http://db:8086", "HTTP 400: bad", status=400)])
    shipper, _ = pipelined(spool, sink, batch_size=3)

    drain(shipper, spool)

    assert sent(sink) == [lines[0:3], lines[3:6], lines[6:9]]
    assert sink.accepted == lines[0:3] + lines[6:9]
    assert spool.status().rejected_total == 3


class AckFailsOnce(Spool):
    """The first ack, immediate or deferred, fails."""

    failed = False

    def ack(self, seqs: Sequence[int], *, success_ms: int | None = None) -> None:
        self._fail_once()
        super().ack(seqs, success_ms=success_ms)

    def ack_deferred(self, seqs: Sequence[int], *, success_ms: int | None = None) -> None:
        self._fail_once()
        super().ack_deferred(seqs, success_ms=success_ms)

    def _fail_once(self) -> None:
        if not self.failed:
            self.failed = True
            raise OSError("disk I/O error")


def test_an_ack_that_fails_drops_the_read_ahead_so_the_unacked_batch_goes_first_again(tmp_path: Path) -> None:
    spool = AckFailsOnce(SpoolConfig(path=tmp_path / "spool.db", spill_path=tmp_path / "spill.lp"))
    try:
        lines = fill(spool, range(6))
        sink = FakeSink()
        shipper = Shipper(spool, sink, shipper_config(batch_size=3), clock=lambda: 0.0, spawn=Spawner())

        with pytest.raises(OSError):
            shipper.ship_once()  # batch 1 accepted, its ack failed; batch 2 was read ahead
        drain(shipper, spool)

        assert sent(sink) == [lines[0:3], lines[0:3], lines[3:6]]  # re-sent (idempotent), in order
        assert spool.status().depth == 0
    finally:
        spool.close()


def test_a_read_ahead_that_fails_is_read_again_by_the_shipper_itself(spool: Spool) -> None:
    lines = fill(spool, range(6))
    sink = PreparingFakeSink()
    failures = iter([RuntimeError("prepare bug")])

    def fail_once(batch: list[str]) -> None:
        if batch == lines[3:6] and (error := next(failures, None)) is not None:
            raise error

    sink.on_prepare = fail_once
    shipper, _ = pipelined(spool, sink, batch_size=3)

    drain(shipper, spool)

    assert sent(sink) == [lines[0:3], lines[3:6]]
    assert sink.accepted == lines


# -- samples appended meanwhile -------------------------------------------------------------------


def test_a_sample_appended_with_an_older_timestamp_during_the_drain_is_sent_once_when_it_ends(
    spool: Spool,
) -> None:
    lines = fill(spool, range(100, 107))
    late = "system,host=web-1 cpu_usage_overall=1.5 50"  # the clock stepped back
    sink = PreparingFakeSink()
    sink.on_write = lambda: spool.append(50, late) if len(sink.attempts) == 0 else None
    shipper, _ = pipelined(spool, sink, batch_size=3)

    drain(shipper, spool)

    # batch 2 was read ahead (after batch 1's last row) before the late sample came; the chain
    # ends with the partial batch 3, and the next plain peek finds it.
    assert sent(sink) == [lines[0:3], lines[3:6], lines[6:7], [late]]
    assert spool.status().depth == 0


def test_ship_once_returns_zero_only_when_the_spool_is_empty_even_after_a_late_sample(spool: Spool) -> None:
    lines = fill(spool, range(100, 106))
    late = "system,host=web-1 cpu_usage_overall=1.5 50"
    sink = FakeSink()
    sink.on_write = lambda: spool.append(50, late) if len(sink.attempts) == 1 else None
    shipper, _ = pipelined(spool, sink, batch_size=3)

    assert [shipper.ship_once() for _ in range(4)] == [3, 3, 1, 0]  # the empty read-ahead is not trusted

    assert sent(sink) == [lines[0:3], lines[3:6], [late]]


# -- stop and replace_sink ------------------------------------------------------------------------


def test_stop_during_a_drain_flushes_the_rest_in_order_and_leaves_no_helper_running(spool: Spool) -> None:
    lines = fill(spool, range(10))
    sink = PreparingFakeSink()
    stop = threading.Event()
    sink.on_write = lambda: stop.set() if len(sink.attempts) == 1 else None
    fake = FakeTime()
    shipper = Shipper(spool, sink, shipper_config(batch_size=3), clock=fake.clock, sleep=fake.sleep)

    shipper.run(stop)

    assert sent(sink) == [lines[0:3], lines[3:6], lines[6:9], lines[9:10]]
    assert fake.sleeps == [] and sink.closed
    assert not [t for t in threading.enumerate() if t.name == "shipper-read-ahead"]


def test_final_flush_that_fails_drops_the_read_ahead_and_keeps_the_rest_spooled(spool: Spool) -> None:
    lines = fill(spool, range(10))
    sink = PreparingFakeSink([None, None, unavailable()])
    stop = threading.Event()
    sink.on_write = stop.set
    fake = FakeTime()
    spawner = Spawner()
    shipper = Shipper(
        spool, sink, shipper_config(batch_size=3), clock=fake.clock, sleep=fake.sleep, spawn=spawner
    )

    shipper.run(stop)

    assert sent(sink) == [lines[0:3], lines[3:6], lines[6:9]]
    assert sink.accepted == lines[0:6]
    assert [text for _, _, text in spool.peek(10)] == lines[6:10]
    assert spawner.jobs == 3  # the last read-ahead (line 9) was dropped, unsent


def test_replace_sink_during_a_drain_drops_what_the_old_sink_prepared(spool: Spool) -> None:
    lines = fill(spool, range(10))
    old, new = PreparingFakeSink(name="old"), PreparingFakeSink(name="new")
    shipper, _ = pipelined(spool, old, batch_size=3)
    old.on_write = lambda: shipper.replace_sink(new, shipper_config(batch_size=4))

    assert shipper.ship_once() == 3  # batch 4..6 was prepared for the old sink meanwhile
    drain(shipper, spool)

    assert ("prepare", lines[3:6]) in old.events
    assert sent(old) == [lines[0:3]] and old.closed
    assert sent(new) == [lines[3:7], lines[7:10]]  # the new batch size, from the spool
    assert not new.closed


# -- the InfluxDB v1 sink's prepare/send split ------------------------------------------------------


def test_v1_sends_the_prepared_gzip_body_as_is_and_fresh_bodies_for_halves_after_413(
    server: FakeServer,
) -> None:
    lines = [f"system,host=a cpu_usage_overall={i} {1700000000000 + i}" for i in range(5)]
    server.reply = lambda seen: (413, {}, b"") if seen.body.count(b"\n") >= 2 else (204, {}, b"")
    sink = InfluxV1Sink(
        SinkConfig(kind="influxdb_v1", url=server.url, database="metrics"),
        ShipperConfig(gzip=True, timeout_s=5),
    )
    prepared = sink.prepare(lines)

    sink.send(prepared)
    sink.close()

    assert gzip.decompress(prepared.body) == "\n".join(lines).encode()
    assert server.seen[0].raw_body == prepared.body  # the whole batch: the body prepared ahead
    assert all(seen.headers["content-encoding"] == "gzip" for seen in server.seen)
    accepted = [seen.body.decode() for seen in server.seen if seen.body.count(b"\n") < 2]
    assert "\n".join(accepted).split("\n") == lines  # 5 → 2 + 3 → 2 + (1 + 2)


# -- property: exactly once, in order, whatever the sink does and whatever arrives late ---------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=40),
    batch_size=st.integers(min_value=1, max_value=6),
    script=st.lists(st.sampled_from(sorted(FAILURES)), max_size=30),
    late=st.dictionaries(st.integers(min_value=0, max_value=40), st.integers(0, 2000), max_size=5),
    preparing=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_pipelined_every_sample_leaves_exactly_once_in_order_even_with_late_samples(
    n: int, batch_size: int, script: list[str], late: dict[int, int], preparing: bool, seed: int
) -> None:
    """LATE maps a write attempt's number to a timestamp appended while it is in flight."""
    timestamps = list(range(1000, 1000 + n))
    random.Random(seed).shuffle(timestamps)
    late_lines = {i: f"late,i={i} v=1 {ts}" for i, ts in late.items()}
    with tempfile.TemporaryDirectory() as tmp:
        spool = open_spool(Path(tmp))
        try:
            lines = fill(spool, timestamps)
            sink = (PreparingFakeSink if preparing else FakeSink)([FAILURES[name]() for name in script])
            sink.on_write = lambda: (
                spool.append(late[i], late_lines[i]) if (i := len(sink.attempts)) in late else None
            )
            shipper, _ = pipelined(spool, sink, batch_size=batch_size)
            for _ in range(len(script) + n + len(late) + 2):
                shipper.ship_once()
            status = spool.status()
        finally:
            spool.close()

    appended_late = [late_lines[i] for i in sorted(late) if i < len(sink.attempts)]
    left = [
        line
        for batch, outcome in sink.attempts
        if outcome is None or isinstance(outcome, Rejected)
        for line in batch
    ]
    assert sorted(left) == sorted(lines + appended_late)  # each sample left the spool exactly once
    assert [line for line in left if not line.startswith("late")] == lines  # the backlog in order
    for batch, _ in sink.attempts:  # every batch in timestamp order
        stamps = [int(line.rsplit(" ", 1)[1]) for line in batch]
        assert stamps == sorted(stamps)
    assert status.depth == 0
    rejected = [line for batch, outcome in sink.attempts if isinstance(outcome, Rejected) for line in batch]
    assert status.rejected_total == len(rejected)


def test_default_spawn_runs_the_job_on_a_named_thread_and_returns_its_join() -> None:
    ran_on: list[str] = []
    gate = threading.Event()

    join = start_thread(lambda: (gate.wait(timeout=30), ran_on.append(threading.current_thread().name)))
    gate.set()
    join()

    assert ran_on == ["shipper-read-ahead"]
