"""The Resonate runtime adapter (resonate-sdk 0.6.x): local (in-memory) or remote (a server).

Registers the domain workflow under its stable name, hands it its ports as one `WorkflowPorts`
dependency, and implements the WorkflowStarter port with `begin_run`, which creates the durable
promise synchronously before returning. The SDK's bugs are worked around in
`resonate_sdk_patches`, not here.
"""

from __future__ import annotations

import base64
import functools
import http.client
import logging
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from resonate import Resonate
from resonate.errors import ResonateStoreError
from resonate.message_sources import Poller
from resonate.retry_policies import Constant, Exponential

from ..domain.errors import PERMANENT_ERRORS, HandOffUnavailable, RuntimeStopped
from ..domain.events import Events
from ..domain.model import InboundMessage, RecordId, WorkflowParams
from ..domain.ports import CompletionPublisher, RecordStore, WorkflowStarter
from ..domain.workflow import PORTS, REQUEST_WORKFLOW, WorkflowPorts, answer_request, request_args
from .resonate_sdk_patches import (
    KeepAliveRemoteStore,
    ThreadSafeLocalStore,
    forget_computation,
    guard_callback_race,
    observe_creation,
    sdk_shut_down,
    share_context_loggers,
    skip_redundant_task_completion,
)


@dataclass(frozen=True, slots=True)
class StepRetry:
    """Retry policy of every step: exponential backoff up to `max_delay`, without limit.

    Transient trouble (database or broker unreachable, a lock timeout) must never end a record as
    failed: the step keeps waiting, visible in the `store_error` event and metric. Only the
    permanent errors below fail an attempt at once.
    """

    delay: float
    max_delay: float
    factor: float = 2.0

    def options(self) -> dict[str, Any]:
        return {
            "retry_policy": Exponential(
                delay=self.delay, factor=self.factor, max_delay=self.max_delay, max_retries=sys.maxsize
            ),
            "non_retryable_exceptions": PERMANENT_ERRORS,
        }


def probe_server(url: str, auth: tuple[str, str] | None, timeout: float = 5.0) -> str | None:
    """None if the Resonate server at `url` answers its API (with these credentials), else why not."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("GET", f"{parts.path.rstrip('/')}/promises/record-deleter-probe", headers=headers)
        status = conn.getresponse().status
    except OSError as exc:
        return f"cannot connect ({type(exc).__name__}: {exc})"
    finally:
        conn.close()
    if status in (401, 403):
        return f"refused the credentials (HTTP {status}); check RESONATE_USERNAME and RESONATE_PASSWORD"
    if status in (200, 404):
        return None
    return f"answered HTTP {status}"


def sdk_host_and_port(url: str) -> tuple[str, str]:
    """`url` as the SDK's (host, port) pair, which it joins as f"{host}:{port}" and appends its
    own paths to (RemoteStore: /promises/...; Poller: /GROUP/ID): the port carries the URL's path,
    so a server behind a proxy on a path is reached there. The port defaults to the scheme's."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError("a Resonate URL must not carry credentials; they come from `auth`")
    host = parts.netloc.rpartition(":")[0] if parts.port is not None else parts.netloc
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{host}", f"{port}{parts.path.rstrip('/')}"


def build_resonate(
    mode: str,
    *,
    store_url: str,
    poll_url: str,
    group: str,
    ttl: int,
    workers: int,
    request_retries: int,
    auth: tuple[str, str] | None,
    log_level: int = logging.WARNING,
    redact_log_args: bool = False,
) -> Resonate:
    """A Resonate client. Remote requests retry `request_retries` times, 1 s apart, then fail.

    `store_url` and `poll_url` are base URLs in full (scheme, host, port, path): the API's and the
    long-poll endpoint's. Credentials come only from `auth`, never from a URL. `redact_log_args`:
    the SDK's step lines leave out the steps' arguments (record ids)."""
    share_context_loggers(log_level, redact_args=redact_log_args)
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
        resonate = Resonate(
            store=guard_callback_race(
                KeepAliveRemoteStore(
                    *sdk_host_and_port(store_url),
                    auth=auth,
                    retry_policy=Constant(delay=1, max_retries=request_retries),
                )
            ),
            message_source=Poller(group, uuid.uuid4().hex, *sdk_host_and_port(poll_url), auth=auth),
            group=group,
            ttl=ttl,
            workers=workers,
            log_level=log_level,
        )
        skip_redundant_task_completion(resonate)
        return resonate
    raise ValueError(f"resonate mode must be 'local' or 'remote', got {mode!r}")


class ResonateRuntime(WorkflowStarter):
    """Starts and tracks the request workflows of this process (and runs any workflow it is sent)."""

    def __init__(
        self,
        resonate: Resonate,
        store: RecordStore,
        publisher: CompletionPublisher,
        *,
        params: WorkflowParams,
        step_retry: StepRetry,
        events: Events,
        namespace: str,
        target: str | None,
    ) -> None:
        self._resonate = resonate
        self._events = events
        self._params = params
        self._namespace = namespace
        self._handles: dict[str, Any] = {}
        self._started_at: dict[str, float] = {}  # insertion order = start order
        self._ran_here: set[str] = set()  # workflows this process created and runs (not duplicates)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified as each workflow ends
        resonate.set_dependency(
            PORTS, WorkflowPorts(store, publisher, events, step_retry.options(), namespace)
        )
        self._created = observe_creation(resonate)
        # The domain's DurableContext is a structural subset of resonate's Context.
        self._workflow = resonate.register(cast(Any, answer_request), name=REQUEST_WORKFLOW)
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

    def request_key(self, message: InboundMessage) -> str:
        """The durable id of the workflow answering `message`."""
        return message.ref.key(self._namespace)

    def start(self, record_id: RecordId, message: InboundMessage) -> None:
        self.start_runtime()
        if not self.healthy():
            raise RuntimeStopped("the Resonate runtime shut down after a store error; restart the worker")
        key = self.request_key(message)
        try:
            handle = self._workflow.begin_run(key, *request_args(record_id, message.ref, self._params))
        except ResonateStoreError as exc:
            raise HandOffUnavailable(f"resonate: {exc}") from exc
        if not self._created.fresh:
            # The promise existed: this very message was delivered before (in flight or answered).
            self._events.emit(
                "duplicate", record_id=record_id.value, partition=message.partition, offset=message.offset
            )
        with self._lock:
            self._handles[handle.id] = handle
            self._started_at.setdefault(handle.id, time.monotonic())
            if self._created.fresh:
                self._ran_here.add(handle.id)
        # Subscribing makes the future resolve even when another worker runs the workflow (a
        # duplicate, or one recovered elsewhere); the callback keeps `in_flight` O(1).
        handle.done()
        handle.future.add_done_callback(functools.partial(self._finished, handle.id))

    def _finished(self, key: str, _future: object = None) -> None:
        with self._lock:
            self._handles.pop(key, None)
            self._started_at.pop(key, None)
            ran_here = key in self._ran_here
            self._ran_here.discard(key)
            self._room.notify_all()
        if ran_here:
            forget_computation(self._resonate, key)

    def wait_for_room(self, limit: int, timeout: float) -> bool:
        with self._lock:
            return self._room.wait_for(lambda: len(self._handles) < limit, timeout)

    def oldest_in_flight_seconds(self) -> float:
        """Age of the oldest workflow started here and not done (0 with none in flight)."""
        with self._lock:
            oldest = min(self._started_at.values(), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest

    def in_flight(self) -> int:
        with self._lock:
            return len(self._handles)

    def wait(self, key: str, timeout: float | None = None) -> Any:
        """Block until the request workflow `key` completes; returns its result or raises its error."""
        with self._lock:
            handle = self._handles.get(key)
        if handle is None:
            handle = self._resonate.get(key)
        return handle.result(timeout)

    def stop(self) -> None:
        if self._started:
            self._resonate.stop()
