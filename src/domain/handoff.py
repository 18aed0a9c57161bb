"""The consumer side: hand each request off to a durable workflow, then mark its offset.

Contract: an offset is marked done only after its workflow durably exists (or, for a poison
message, after the dead-letter write was confirmed). If the runtime or broker stays unreachable
past the retry budget, `HandOffGaveUp` is raised and nothing further is marked: the process
exits non-zero and the unmarked messages are redelivered to whoever picks the partition up.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from .errors import BrokerUnavailable, HandOffUnavailable, PoisonMessage
from .events import Events, NoEvents
from .messages import dead_letter, parse_request
from .model import InboundMessage
from .ports import DeadLetterSink, RequestSource, WorkflowStarter


class HandOffGaveUp(Exception):
    """The durable runtime or the broker stayed unreachable for the whole retry budget."""


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """Bounded exponential backoff for hand-off and dead-letter writes."""

    deadline_seconds: float
    first_delay: float = 0.2
    max_delay: float = 5.0

    def delays(self) -> list[float]:
        out: list[float] = []
        delay, total = self.first_delay, 0.0
        while total + delay <= self.deadline_seconds:
            out.append(delay)
            total += delay
            delay = min(delay * 2, self.max_delay)
        return out


class OffsetTracker:
    """Offsets of one partition in poll order; yields the contiguous prefix that is done.

    With concurrent hand-offs, offset 7 may finish before offset 5. Only when 5 and 6 are done
    too may 7 be marked: committing 7 first would skip 5 and 6 if the worker died now.
    """

    def __init__(self) -> None:
        self._order: deque[InboundMessage] = deque()
        self._done: set[int] = set()
        self._last = -1

    def rewinds(self, offset: int) -> bool:
        """True if `offset` is not past every offset submitted: the partition was fetched again."""
        return offset <= self._last

    def submitted(self, message: InboundMessage) -> None:
        self._last = message.offset
        self._order.append(message)

    def finished(self, message: InboundMessage) -> InboundMessage | None:
        """Record `message` as handed off; return the newest message of the done prefix, if it grew."""
        self._done.add(message.offset)
        newest: InboundMessage | None = None
        while self._order and self._order[0].offset in self._done:
            newest = self._order.popleft()
            self._done.discard(newest.offset)
        return newest

    def __len__(self) -> int:
        return len(self._order)


class HandOff:
    """Polls requests and hands each off; at most `max_in_flight` workflows run here at once.

    With `concurrency` > 1, hand-offs run on that many threads so one slow round trip to the
    durable runtime does not serialize the partition; offsets are still marked in order, only
    up to the contiguous prefix of finished hand-offs (see OffsetTracker).
    """

    def __init__(
        self,
        source: RequestSource,
        starter: WorkflowStarter,
        dead_letters: DeadLetterSink,
        *,
        max_in_flight: int = 0,
        concurrency: int = 1,
        budget: RetryBudget,
        events: Events | None = None,
        sleep: Callable[[float], None] = time.sleep,
        poll_timeout: float = 0.2,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"hand-off concurrency must be at least 1, got {concurrency}")
        self._source = source
        self._starter = starter
        self._dead_letters = dead_letters
        self._max_in_flight = max_in_flight
        self._budget = budget
        self._events = events or NoEvents()
        self._sleep = sleep
        self._poll_timeout = poll_timeout
        self._paused = False
        self._concurrency = concurrency
        self._pool = (
            ThreadPoolExecutor(concurrency, thread_name_prefix="handoff") if concurrency > 1 else None
        )
        self._pending: dict[Future[None], tuple[InboundMessage, OffsetTracker]] = {}
        self._trackers: dict[tuple[str, int], OffsetTracker] = {}
        self._stepped_at = time.monotonic()

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Loop until `should_stop()`; finish the hand-offs under way; commit what was handed off."""
        try:
            while not should_stop():
                self.step()
            self._drain(timeout=None)
        except BaseException:
            # keep what the other hand-offs under way achieve: mark their finished prefix too
            self._drain(timeout=self._budget.deadline_seconds + 5, reraise=False)
            raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._source.commit()

    def loop_age(self) -> float:
        """Seconds since the loop last began a step (liveness: a stuck loop's age grows)."""
        return time.monotonic() - self._stepped_at

    def step(self) -> None:
        """One poll: reap finished hand-offs, apply backpressure, hand off the message if one arrived."""
        self._stepped_at = time.monotonic()
        self._drain(timeout=0)
        if len(self._pending) >= 2 * self._concurrency:
            self._drain(timeout=self._poll_timeout, at_least_one=True)
            return
        self._apply_backpressure()
        if self._paused:
            # Serve the group's callbacks, then wait for a workflow to end rather than a poll
            # timeout: the hand-off resumes the moment there is room (a blind poll of a paused
            # consumer idled up to poll_timeout per pause, which capped a worker at about
            # max_in_flight / poll_timeout records per second).
            message = self._source.poll(0)
            if message is None:
                self._starter.wait_for_room(self._resume_below, self._poll_timeout)
                return
        else:
            message = self._source.poll(self._poll_timeout)
        if message is not None:
            self.submit(message)

    def submit(self, message: InboundMessage) -> None:
        """Hand `message` off (on the pool when concurrent); its offset is marked once its prefix is done."""
        if self._pool is None:
            self.handle(message)
            return
        tracker = self._tracker(message)
        tracker.submitted(message)
        self._pending[self._pool.submit(self._process, message)] = (message, tracker)

    def handle(self, message: InboundMessage) -> None:
        """Hand one message off on the calling thread and mark its offset."""
        self._process(message)
        self._source.mark_done(message)

    def _tracker(self, message: InboundMessage) -> OffsetTracker:
        key = (message.topic, message.partition)
        tracker = self._trackers.get(key)
        if tracker is None or tracker.rewinds(message.offset):
            # Fetched again from the committed offset (a rebalance revoked and re-assigned the
            # partition while hand-offs were under way): start over. The hand-offs of the old
            # fetch may still finish, but they mark nothing; their messages come again in this one.
            tracker = self._trackers[key] = OffsetTracker()
        return tracker

    def _drain(self, timeout: float | None, *, at_least_one: bool = False, reraise: bool = True) -> None:
        """Mark the offsets of finished hand-offs; re-raise the first failure (nothing after it is marked)."""
        if not self._pending:
            return
        if timeout == 0 and not at_least_one:
            finished = {f for f in self._pending if f.done()}
        else:
            finished, _ = wait(
                self._pending, timeout=timeout, return_when=FIRST_COMPLETED if at_least_one else ALL_COMPLETED
            )
        failure: BaseException | None = None
        for future in finished:
            message, tracker = self._pending.pop(future)
            error = future.exception()
            if error is not None:
                # this offset stays unmarked, and so does every later one of its partition
                failure = failure or error
                continue
            newest = tracker.finished(message)
            if newest is not None and self._trackers.get((message.topic, message.partition)) is tracker:
                self._source.mark_done(newest)
        if failure is not None and reraise:
            raise failure

    def _process(self, message: InboundMessage) -> None:
        self._events.emit("consumed", topic=message.topic, partition=message.partition, offset=message.offset)
        started = time.monotonic()
        try:
            record_id = parse_request(message.value)
        except PoisonMessage as poison:
            outbound = dead_letter(message, poison.reason)
            self._retrying("dead-letter write", lambda: self._dead_letters.send(outbound))
            self._events.emit(
                "dead_lettered",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                reason=poison.reason,
            )
            return
        self._retrying("workflow hand-off", lambda: self._starter.start(record_id, message))
        self._events.emit(
            "handed_off",
            record_id=record_id.value,
            partition=message.partition,
            offset=message.offset,
            seconds=time.monotonic() - started,
        )

    @property
    def _resume_below(self) -> int:
        """Resume once fewer than this many are in flight: half the bound, so the consumer's
        re-fetch after a resume (~0.2 s, measured) overlaps the work still in flight instead of
        idling the worker once per pause."""
        return max(1, self._max_in_flight // 2)

    def _apply_backpressure(self) -> None:
        if self._max_in_flight <= 0:
            return
        in_flight = self._starter.in_flight()
        if in_flight >= self._max_in_flight and not self._paused:
            self._source.pause()
            self._paused = True
            self._events.emit("paused", in_flight=self._max_in_flight)
        elif in_flight < self._resume_below and self._paused:
            self._source.resume()
            self._paused = False
            self._events.emit("resumed")

    def _retrying(self, what: str, action: Callable[[], None]) -> None:
        delays = self._budget.delays()
        for attempt in range(len(delays) + 1):
            try:
                action()
                return
            except (HandOffUnavailable, BrokerUnavailable) as exc:
                if attempt == len(delays):
                    raise HandOffGaveUp(
                        f"{what} failed for {self._budget.deadline_seconds:.0f}s ({exc}); exiting so a "
                        "supervisor restarts the worker and the unacknowledged messages are redelivered"
                    ) from exc
                self._events.emit("retrying", what=what, attempt=attempt + 1, error=str(exc))
                self._sleep(delays[attempt])
