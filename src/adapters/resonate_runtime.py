"""The Resonate runtime adapter (resonate-sdk 0.6.x): local (in-memory) or remote (a server).

Registers the domain workflow under its stable name, hands it its ports as one `WorkflowPorts`
dependency, and implements the WorkflowStarter port with `begin_run`, which creates the durable
promise synchronously before returning. The SDK's bugs are worked around in
`resonate_sdk_patches`, not here.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any, cast

from resonate import Resonate
from resonate.errors import ResonateStoreError
from resonate.message_sources import Poller
from resonate.options import Options
from resonate.retry_policies import Constant, Exponential

from ..domain.errors import DeletionPlanInvalid, HandOffUnavailable, InvalidRecordId, RuntimeStopped
from ..domain.events import Events
from ..domain.model import RecordId, WorkflowParams, workflow_id
from ..domain.ports import CompletionPublisher, RecordStore, WorkflowStarter
from ..domain.workflow import PORTS, WORKFLOW_NAME, WorkflowPorts, delete_record, workflow_args
from .resonate_sdk_patches import (
    KeepAliveRemoteStore,
    ThreadSafeLocalStore,
    forget_loggers,
    guard_callback_race,
    observe_creation,
    sdk_shut_down,
)


@dataclass(frozen=True, slots=True)
class StepRetry:
    """Retry policy of every step: exponential backoff, `max_attempts` in all (0 = unbounded)."""

    max_attempts: int
    delay: float
    max_delay: float
    factor: float = 2.0

    def options(self) -> dict[str, Any]:
        retries = sys.maxsize if self.max_attempts <= 0 else self.max_attempts - 1
        return {
            "retry_policy": Exponential(
                delay=self.delay, factor=self.factor, max_delay=self.max_delay, max_retries=retries
            ),
            # Retrying cannot fix these; fail the workflow at once.
            "non_retryable_exceptions": (DeletionPlanInvalid, InvalidRecordId),
        }


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    record_id: str
    state: str  # unknown | pending | resolved | rejected | canceled | timedout
    detail: Any = None


def build_resonate(
    mode: str,
    *,
    host: str,
    store_port: str,
    message_source_port: int,
    group: str,
    ttl: int,
    workers: int | None,
    request_retries: int,
    auth: tuple[str, str] | None,
    log_level: int = logging.WARNING,
) -> Resonate:
    """A Resonate client. Remote requests retry `request_retries` times, 1 s apart, then fail."""
    if mode == "local":
        store = ThreadSafeLocalStore()
        return Resonate(
            store=store,
            message_source=store.message_source(group, "local"),
            group=group,
            ttl=ttl,
            workers=workers,
            log_level=log_level,
        )
    if mode == "remote":
        return Resonate(
            store=guard_callback_race(
                KeepAliveRemoteStore(
                    host=host,
                    port=store_port,
                    auth=auth,
                    retry_policy=Constant(delay=1, max_retries=request_retries),
                )
            ),
            message_source=Poller(
                group=group, id=uuid.uuid4().hex, host=host, port=str(message_source_port), auth=auth
            ),
            group=group,
            ttl=ttl,
            workers=workers,
            log_level=log_level,
        )
    raise ValueError(f"resonate mode must be 'local' or 'remote', got {mode!r}")


class ResonateRuntime(WorkflowStarter):
    """Starts, tracks and reports the deletion workflows of this process."""

    def __init__(
        self,
        resonate: Resonate,
        store: RecordStore,
        publisher: CompletionPublisher,
        *,
        params: WorkflowParams,
        step_retry: StepRetry,
        events: Events,
        target: str | None,
    ) -> None:
        self._resonate = resonate
        self._events = events
        self._params = params
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()
        resonate.set_dependency(PORTS, WorkflowPorts(store, publisher, events, step_retry.options()))
        self._created = observe_creation(resonate)
        # The domain's DurableContext is a structural subset of resonate's Context.
        self._workflow = resonate.register(cast(Any, delete_record), name=WORKFLOW_NAME)
        if target:
            # Without a target the root promise is tagged `poll://any@default`: when its worker
            # dies mid-step, the server re-dispatches the task to a group nobody polls and no
            # other worker ever resumes it. Route recovery to the workers' own group.
            self._workflow.options(target=target)
        self._started = False
        self._start_lock = threading.Lock()

    def start_runtime(self) -> None:
        """Start the SDK threads so this process also picks up (recovered) work from the server.

        Once, under a lock: `Resonate.start()` (which `begin_run` also calls) checks
        `Thread.is_alive()` before `Thread.start()`, so two threads starting it at once both
        try to start the same threads and the SDK crashes. After this, its check is a no-op.
        """
        with self._start_lock:
            if not self._started:
                self._resonate.start()
                self._started = True

    def healthy(self) -> bool:
        """False once the SDK shut itself down.

        resonate-sdk 0.6.x stops its bridge (no more steps run, no heartbeats) when a store
        request fails beyond the store's retry policy, but leaves the process running. A worker in
        that state would keep claiming work it never runs, so the worker loop exits instead and
        its supervisor restarts it (`resonate_sdk_patches.sdk_shut_down`).
        """
        return not (self._started and sdk_shut_down(self._resonate))

    def start(self, record_id: RecordId, offset: int) -> None:
        self.start_runtime()
        if not self.healthy():
            raise RuntimeStopped("the Resonate runtime shut down after a store error; restart the worker")
        try:
            handle = self._workflow.begin_run(
                workflow_id(record_id), *workflow_args(record_id, offset, self._params)
            )
        except ResonateStoreError as exc:
            raise HandOffUnavailable(f"resonate: {exc}") from exc
        if not self._created.fresh:
            # The promise existed: a duplicate delivery (in flight here or elsewhere, or done).
            self._events.emit("duplicate", record_id=record_id.value, offset=offset)
        with self._lock:
            self._handles[handle.id] = handle
        # Subscribing makes the future resolve even when another worker runs the workflow (a
        # duplicate, or one recovered elsewhere); the callback keeps `in_flight` O(1).
        handle.done()
        handle.future.add_done_callback(functools.partial(self._finished, handle.id))

    def _finished(self, key: str, _future: object = None) -> None:
        with self._lock:
            self._handles.pop(key, None)
        forget_loggers(key)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._handles)

    def wait(self, record_id: RecordId, timeout: float | None = None) -> Any:
        """Block until the record's workflow completes; returns its result or raises its error."""
        with self._lock:
            handle = self._handles.get(workflow_id(record_id))
        if handle is None:
            handle = self._resonate.get(workflow_id(record_id))
        return handle.result(timeout)

    def status(self, record_id: RecordId) -> WorkflowStatus:
        try:
            promise = self._resonate.promises.get(workflow_id(record_id))
        except ResonateStoreError as exc:
            if getattr(exc, "code", None) in (40400, 404) or "not found" in str(exc).lower():
                return WorkflowStatus(record_id.value, "unknown")
            raise HandOffUnavailable(f"resonate: {exc}") from exc
        state = {
            "PENDING": "pending",
            "RESOLVED": "resolved",
            "REJECTED": "rejected",
            "REJECTED_CANCELED": "canceled",
            "REJECTED_TIMEDOUT": "timedout",
        }[promise.state]
        detail: Any = None
        if promise.completed:
            outcome = promise.result(Options().get_encoder())
            value = outcome.value
            detail = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else value
        return WorkflowStatus(record_id.value, state, detail)

    def stop(self) -> None:
        if self._started:
            self._resonate.stop()
