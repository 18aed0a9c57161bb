"""The consumer side: hand each request off to a durable workflow, then mark its offset.

Contract: an offset is marked done only after its workflow durably exists (or, for a poison
message, after the dead-letter write was confirmed). If the runtime or broker stays unreachable
past the retry budget, `HandOffGaveUp` is raised and nothing further is marked: the process
exits non-zero and the unmarked messages are redelivered to whoever picks the partition up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from domain.errors import BrokerUnavailable, HandOffUnavailable, PoisonMessage
from domain.events import Events, NoEvents
from domain.messages import dead_letter, parse_request
from domain.model import InboundMessage
from domain.ports import DeadLetterSink, RequestSource, WorkflowStarter


class HandOffGaveUp(Exception):
    """The durable runtime or the broker stayed unreachable for the whole retry budget."""


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """Bounded exponential backoff for hand-off and dead-letter writes."""

    deadline_seconds: float = 60.0
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


class HandOff:
    """Polls requests and hands each off; at most `max_in_flight` workflows run here at once."""

    def __init__(
        self,
        source: RequestSource,
        starter: WorkflowStarter,
        dead_letters: DeadLetterSink,
        *,
        max_in_flight: int = 0,
        budget: RetryBudget | None = None,
        events: Events | None = None,
        sleep: Callable[[float], None] = time.sleep,
        poll_timeout: float = 0.2,
    ) -> None:
        self._source = source
        self._starter = starter
        self._dead_letters = dead_letters
        self._max_in_flight = max_in_flight
        self._budget = budget or RetryBudget()
        self._events = events or NoEvents()
        self._sleep = sleep
        self._poll_timeout = poll_timeout
        self._paused = False

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Loop until `should_stop()`; then commit what was handed off."""
        try:
            while not should_stop():
                self.step()
        finally:
            self._source.commit()

    def step(self) -> None:
        """One poll: apply backpressure, then hand off the message if one arrived."""
        self._apply_backpressure()
        message = self._source.poll(self._poll_timeout)
        if message is not None:
            self.handle(message)

    def handle(self, message: InboundMessage) -> None:
        self._events.emit("consumed", topic=message.topic, partition=message.partition, offset=message.offset)
        started = time.monotonic()
        try:
            record_id = parse_request(message.value)
        except PoisonMessage as poison:
            outbound = dead_letter(message, poison.reason)
            self._retrying("dead-letter write", lambda: self._dead_letters.send(outbound))
            self._source.mark_done(message)
            self._events.emit(
                "dead_lettered",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                reason=poison.reason,
            )
            return
        self._retrying("workflow hand-off", lambda: self._starter.start(record_id, message.offset))
        self._source.mark_done(message)
        self._events.emit(
            "handed_off",
            record_id=record_id.value,
            partition=message.partition,
            offset=message.offset,
            seconds=time.monotonic() - started,
        )

    def _apply_backpressure(self) -> None:
        if self._max_in_flight <= 0:
            return
        busy = self._starter.in_flight() >= self._max_in_flight
        if busy and not self._paused:
            self._source.pause()
            self._paused = True
            self._events.emit("paused", in_flight=self._max_in_flight)
        elif not busy and self._paused:
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
