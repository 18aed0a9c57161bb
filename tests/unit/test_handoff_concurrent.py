"""Concurrent hand-off: parallel round trips, offsets still marked only as a contiguous prefix."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from record_deleter.adapters.memory_broker import (
    InMemoryBroker,
    InMemoryRequestSource,
)
from record_deleter.domain.errors import HandOffUnavailable
from record_deleter.domain.handoff import HandOff, HandOffGaveUp, OffsetTracker, RetryBudget
from record_deleter.domain.messages import encode_request
from record_deleter.domain.model import InboundMessage, RecordId
from record_deleter.domain.ports import WorkflowStarter
from tests import builders
from tests.conftest import wait_for

pytestmark = pytest.mark.unit

REQUESTS, DLQ, GROUP = "requests", "dlq", "g"


class GatedStarter(WorkflowStarter):
    """Blocks the hand-off of `gated` ids until released; counts how many run at once."""

    def __init__(self, gated: frozenset[str] = frozenset(), failing: frozenset[str] = frozenset()) -> None:
        self.gate = threading.Event()
        self.gated = gated
        self.failing = failing
        self.started: list[str] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def start(self, record_id: RecordId, message: InboundMessage) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if record_id.value in self.failing:
                raise HandOffUnavailable("down")
            if record_id.value in self.gated:
                assert self.gate.wait(10)
            else:
                time.sleep(0.005)  # a round trip's worth, so hand-offs overlap
            with self.lock:
                self.started.append(record_id.value)
        finally:
            with self.lock:
                self.active -= 1

    def in_flight(self) -> int:
        return 0


def until(condition: Callable[[], bool], timeout: float = 10.0) -> Callable[[], bool]:
    deadline = time.monotonic() + timeout
    return lambda: condition() or time.monotonic() > deadline


def settled_after(condition: Callable[[], bool]) -> Callable[[], bool]:
    """True from the second loop turn after `condition` first held (the loop reaped finished work)."""
    turns = [0]

    def check() -> bool:
        if condition():
            turns[0] += 1
        return turns[0] >= 2

    return check


@pytest.fixture
def broker() -> InMemoryBroker:
    b = InMemoryBroker()
    b.create_topic(REQUESTS, 2)
    b.create_topic(DLQ)
    return b


def make(broker: InMemoryBroker, starter: GatedStarter, concurrency: int = 8) -> HandOff:
    return HandOff(
        InMemoryRequestSource(broker, REQUESTS, GROUP),
        starter,
        builders.dead_letters(broker, DLQ),
        concurrency=concurrency,
        budget=RetryBudget(deadline_seconds=0.05, first_delay=0.01),
        sleep=lambda _: None,
        poll_timeout=0.01,
    )


def msg(offset: int, partition: int = 0) -> InboundMessage:
    return InboundMessage(REQUESTS, partition, offset, b'"x"')


def test_tracker_releases_only_the_contiguous_prefix() -> None:
    tracker = OffsetTracker()
    for o in range(5):
        tracker.submitted(msg(o))
    assert tracker.finished(msg(2)) is None
    assert tracker.finished(msg(1)) is None
    assert tracker.finished(msg(0)) == msg(2)
    assert tracker.finished(msg(4)) is None
    assert tracker.finished(msg(3)) == msg(4)
    assert len(tracker) == 0


def test_hand_offs_overlap_and_everything_is_committed(broker: InMemoryBroker) -> None:
    for i in range(40):
        broker.produce(REQUESTS, encode_request(RecordId(f"r{i}")), partition=i % 2)
    starter = GatedStarter()
    make(broker, starter).run(until(lambda: len(starter.started) == 40))
    assert sorted(starter.started) == sorted(f"r{i}" for i in range(40))
    assert starter.max_active > 1
    assert broker.lag(GROUP, REQUESTS) == 0


def test_a_slow_hand_off_holds_back_the_commit_of_later_offsets(broker: InMemoryBroker) -> None:
    for rid in ("a", "slow", "c", "d", "e"):
        broker.produce(REQUESTS, encode_request(RecordId(rid)), partition=0)
    starter = GatedStarter(gated=frozenset({"slow"}))
    handoff = make(broker, starter)
    source_commits: list[int] = []
    ready = settled_after(lambda: len(starter.started) == 4)

    def stop() -> bool:
        if ready() and not source_commits:
            # later hand-offs are done, the slow one is not: commit now must stop before it
            handoff._source.commit()
            source_commits.append(broker.committed(GROUP, REQUESTS, 0))
            starter.gate.set()
        return len(starter.started) == 5

    handoff.run(until(stop))
    assert source_commits == [1], "only offset 0 ('a') may be committed while 'slow' (offset 1) is pending"
    assert sorted(starter.started) == ["a", "c", "d", "e", "slow"]
    assert broker.committed(GROUP, REQUESTS, 0) == 5


def test_give_up_keeps_every_offset_from_the_failed_one_on(broker: InMemoryBroker) -> None:
    for rid in ("a", "b", "stuck", "d", "e"):
        broker.produce(REQUESTS, encode_request(RecordId(rid)), partition=0)
    starter = GatedStarter(failing=frozenset({"stuck"}))
    with pytest.raises(HandOffGaveUp):
        make(broker, starter).run(until(lambda: False))
    wait_for(lambda: broker.committed(GROUP, REQUESTS, 0) == 2, timeout=5, message="prefix committed")
    assert broker.committed(GROUP, REQUESTS, 0) == 2, "d and e may have started but must not be committed"


def test_partitions_are_tracked_independently(broker: InMemoryBroker) -> None:
    broker.produce(REQUESTS, encode_request(RecordId("slow")), partition=0)
    for i in range(5):
        broker.produce(REQUESTS, encode_request(RecordId(f"p1-{i}")), partition=1)
    starter = GatedStarter(gated=frozenset({"slow"}))
    handoff = make(broker, starter)
    seen: list[tuple[int, int]] = []
    ready = settled_after(lambda: len(starter.started) == 5)

    def stop() -> bool:
        if ready() and not seen:
            handoff._source.commit()
            seen.append((broker.committed(GROUP, REQUESTS, 0), broker.committed(GROUP, REQUESTS, 1)))
            starter.gate.set()
        return len(starter.started) == 6

    handoff.run(until(stop))
    assert seen == [(0, 5)], "partition 1 commits past its offsets while partition 0 waits for 'slow'"


def test_concurrency_must_be_positive(broker: InMemoryBroker) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        make(broker, GatedStarter(), concurrency=0)


def test_a_partition_fetched_again_mid_hand_off_keeps_committing() -> None:
    """A rebalance re-assigns a partition while its hand-offs are under way: the consumer fetches
    the same offsets again. The old fetch's hand-offs must not wedge the partition (RELIABILITY.md, F7)."""
    source = RecordingSource()
    # the first fetch's 6 and 7 and the second fetch's finish in the order 7, 7, 6, 6; then 8, 9, 10
    starter = ScheduledStarter([0.12, 0.03, 0.16, 0.06, 0.2, 0.2, 0.2])
    handoff = HandOff(
        source, starter, builders.dead_letters(InMemoryBroker(), DLQ), budget=builders.budget(), concurrency=4
    )
    try:
        for offset in (6, 7, 6, 7, 8, 9, 10):  # 6 and 7 fetched twice before their hand-offs finished
            handoff.submit(msg(offset))
        while handoff._pending:
            handoff._drain(timeout=5, at_least_one=True)
        assert source.marked[-1:] == [10], f"partition stopped committing: marked {source.marked}"
        assert source.marked == sorted(source.marked), f"an offset was marked backwards: {source.marked}"
    finally:
        handoff.run(lambda: True)


class RecordingSource:
    """A request source that records which offsets the hand-off marks done."""

    def __init__(self) -> None:
        self.marked: list[int] = []

    def poll(self, timeout: float) -> InboundMessage | None:
        return None

    def mark_done(self, message: InboundMessage) -> None:
        self.marked.append(message.offset)

    def commit(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class ScheduledStarter(WorkflowStarter):
    """The n-th hand-off takes `delays[n]` seconds."""

    def __init__(self, delays: list[float]) -> None:
        self.delays = iter(delays)
        self.lock = threading.Lock()

    def start(self, record_id: RecordId, message: InboundMessage) -> None:
        with self.lock:
            delay = next(self.delays)
        time.sleep(delay)

    def in_flight(self) -> int:
        return 0
