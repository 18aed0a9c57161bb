"""The Resonate runtime (resonate-sdk 0.6.x): local (in-memory) or remote (a Resonate server).

Registers the domain workflow under a stable name, hands the ports to it as named
dependencies, and implements the WorkflowStarter port with `begin_run`, which creates the
durable promise synchronously before returning.
"""

from __future__ import annotations

import functools
import http.client
import inspect
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from requests import PreparedRequest
from resonate import Resonate
from resonate.errors import ResonateStoreError
from resonate.message_sources import Poller
from resonate.retry_policies import Constant, Exponential
from resonate.stores import LocalStore, RemoteStore

from ..domain.errors import DeletionPlanInvalid, HandOffUnavailable, InvalidRecordId, RuntimeStopped
from ..domain.events import Events, NoEvents
from ..domain.model import RecordId, WorkflowParams, workflow_id
from ..domain.ports import CompletionPublisher, RecordStore, WorkflowStarter
from ..domain.workflow import (
    COMPLETION_PUBLISHER,
    EVENTS,
    RECORD_STORE,
    STEP_OPTIONS,
    WORKFLOW_NAME,
    delete_record,
)

log = logging.getLogger(__name__)

_LOCKED_METHODS: dict[str, tuple[str, ...]] = {
    "_promises": (
        "get",
        "create",
        "create_with_task",
        "resolve",
        "reject",
        "cancel",
        "callback",
        "subscribe",
        "scan",
        "transition",
    ),
    "_tasks": ("claim", "complete", "heartbeat", "scan", "transition"),
    "_schedules": ("create", "get", "delete", "scan", "transition"),
}


class ThreadSafeLocalStore(LocalStore):
    """The SDK's LocalStore with every promise/task/schedule operation under the store's lock.

    The stock LocalStore mutates its dicts from the store thread and from callers' threads
    without a lock; with hundreds of workflows started at once that races (task claimed twice,
    'dictionary changed size during iteration'), and the SDK answers by ending the process.
    The store loop already holds `_cond` (a re-entrant lock) while it steps, so taking the same
    lock around each operation serializes them without deadlock. `scan` returns a snapshot.
    """

    def __init__(self) -> None:
        super().__init__()
        for attr, names in _LOCKED_METHODS.items():
            sub = getattr(self, attr)
            for name in names:
                setattr(sub, name, self._locked(getattr(sub, name)))

    def _locked(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._cond:
                result = fn(*args, **kwargs)
                if inspect.isgenerator(result):
                    return iter(list(result))
                return result

        return wrapper


class KeepAliveRemoteStore(RemoteStore):
    """The SDK's RemoteStore over one keep-alive `http.client` connection per thread.

    resonate-sdk 0.6.x sends every request through a new `requests.Session`: a TCP handshake and
    the session's setup on every checkpoint, from every thread, ~0.4-0.5 ms of CPU per request
    in a process whose threads share one GIL. Here a request costs ~0.2 ms of CPU (measured on
    the benchmark machine). Same retry semantics as the SDK: timeouts, connection errors and
    HTTP 500 are retried per the retry policy; other HTTP errors raise at once with the server's
    message. A pooled connection the server closed is retried at once on a fresh one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._netloc = (parts.hostname or "127.0.0.1", parts.port)
        timeout = self._timeout
        self._socket_timeout = float(max(timeout) if isinstance(timeout, tuple) else timeout)

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            host, port = self._netloc
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = cls(host, port, timeout=self._socket_timeout)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def call(self, req: PreparedRequest) -> Any:
        req.prepare_auth(self._auth)
        attempt = 0
        while True:
            pooled = getattr(self._local, "conn", None) is not None
            delay = self._retry_policy.next(attempt)
            attempt += 1
            try:
                return self._send(req, retry_500=delay is not None)
            except (_Retry, http.client.HTTPException, OSError, ValueError) as exc:
                self._drop_connection()  # start over on a fresh connection
                if pooled and isinstance(exc, ConnectionError):
                    attempt -= 1  # the server closed an idle pooled connection: retry now, for free
                    continue
                if delay is None:
                    raise ResonateStoreError(mesg=f"request failed: {exc!r}", code=0) from exc
                log.warning("resonate server %s: %r; retrying in %s s", self.url, exc, delay)
            time.sleep(delay)

    def _send(self, req: PreparedRequest, *, retry_500: bool) -> Any:
        target = urlsplit(str(req.url))
        path = target.path + (f"?{target.query}" if target.query else "")
        conn = self._connection()
        body = cast(bytes | str | None, req.body)  # the SDK's requests carry JSON or nothing
        conn.request(req.method or "GET", path, body=body, headers=dict(req.headers))
        res = conn.getresponse()
        answer = res.read()
        if res.status == 204:
            return None
        if res.status == 500 and retry_500:
            raise _Retry(f"HTTP 500: {answer[:200]!r}")
        if res.status >= 400:
            raise _store_error(answer)
        return json.loads(answer)


def _store_error(body: bytes) -> ResonateStoreError:
    try:
        error = json.loads(body)["error"]
    except Exception:
        error = {"message": body.decode(errors="replace"), "code": 0}
    return ResonateStoreError(
        mesg=error.get("message", "Unknown exception"),
        code=error.get("code", 0),
        details=error.get("details"),
    )


class _Retry(Exception):
    """An answer worth retrying (HTTP 500)."""


def guard_callback_race(store: RemoteStore) -> RemoteStore:
    """Make callback/subscription registration safe against a promise completing concurrently.

    The Resonate server (v0.8.x) registers a callback in two transactions: it reads the promise,
    then inserts the callback only `WHERE state = pending`. If the promise completes in between
    (typically a durable sleep's timer firing just as the workflow suspends on it), it answers
    200 with the promise as first read (pending) and no callback. resonate-sdk 0.6.x takes that
    as "registered", suspends the workflow and completes its task: nothing ever resumes it. A
    re-read tells the cases apart: completed now means no callback exists, so return the
    completed promise and the SDK resumes at once; still pending means the callback existed.
    """
    promises = store.promises
    register = promises.callback
    subscribe = promises.subscribe

    def callback(promise_id: str, root_promise_id: str, recv: str, timeout: int) -> Any:
        promise, cb = register(
            promise_id=promise_id, root_promise_id=root_promise_id, recv=recv, timeout=timeout
        )
        if cb is None and not promise.completed:
            fresh = promises.get(promise_id)
            if fresh.completed:
                log.warning(
                    "promise %s completed while a callback on it was registered; resuming", promise_id
                )
                return fresh, None
        return promise, cb

    def subscription(id: str, promise_id: str, recv: str, timeout: int) -> Any:
        promise, cb = subscribe(id=id, promise_id=promise_id, recv=recv, timeout=timeout)
        if cb is None and not promise.completed:
            fresh = promises.get(promise_id)
            if fresh.completed:
                log.warning("promise %s completed while a subscription to it was registered", promise_id)
                return fresh, None
        return promise, cb

    promises.callback = callback  # type: ignore[method-assign]
    promises.subscribe = subscription  # type: ignore[method-assign]
    return store


@dataclass(frozen=True, slots=True)
class StepRetry:
    """Retry policy of every step: exponential backoff, `max_attempts` in all (0 = unbounded)."""

    max_attempts: int = 10
    delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0

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
    host: str = "http://127.0.0.1",
    store_port: str = "8001",
    message_source_port: str = "8002",
    group: str = "record-deleter",
    ttl: int = 10,
    workers: int | None = None,
    request_retries: int = 30,
    auth: tuple[str, str] | None = None,
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
            message_source=Poller(group=group, id=_pid(), host=host, port=message_source_port, auth=auth),
            group=group,
            ttl=ttl,
            workers=workers,
            log_level=log_level,
        )
    raise ValueError(f"resonate mode must be 'local' or 'remote', got {mode!r}")


def _pid() -> str:
    import uuid

    return uuid.uuid4().hex


def _forget_loggers(workflow: str) -> None:
    """Drop the loggers resonate-sdk 0.6.x made for a finished workflow and its steps.

    The SDK builds `logging.getLogger(f"resonate:{root}:{id}")` (with its own handler) for every
    workflow and step context and never releases them; `setLevel` on each new one clears the
    cache of every logger in the process. Left alone, memory grows with every record ever
    processed and each new context costs time linear in that number (BENCHMARKS.md, profile).
    Step ids are `<root>.1`, `<root>.2`, ... in order, so the names are enumerable.
    """
    manager = logging.Logger.manager
    prefix = f"resonate:{workflow}:{workflow}"
    with getattr(logging, "_lock"):  # noqa: B009 - the lock logging.getLogger takes
        manager.loggerDict.pop(prefix, None)
        n = 1
        while manager.loggerDict.pop(f"{prefix}.{n}", None) is not None:
            n += 1


def _observe_creation(resonate: Resonate) -> threading.local:
    """Record, per thread, whether the last `create_with_task` made a new workflow.

    `begin_run` calls it in the caller's thread; the SDK does not say whether the promise was
    new. It was if the server handed this process its task and the promise is not completed; a
    duplicate delivery gets the existing promise and no task.
    """
    seen = threading.local()
    seen.fresh = True
    promises = resonate.promises
    create_with_task = promises.create_with_task

    def observed(*args: Any, **kwargs: Any) -> Any:
        promise, task = create_with_task(*args, **kwargs)
        seen.fresh = task is not None and not promise.completed
        return promise, task

    promises.create_with_task = observed  # type: ignore[method-assign]
    return seen


class ResonateRuntime(WorkflowStarter):
    """Starts, tracks and reports the deletion workflows of this process."""

    def __init__(
        self,
        resonate: Resonate,
        store: RecordStore,
        publisher: CompletionPublisher,
        *,
        params: WorkflowParams | None = None,
        step_retry: StepRetry | None = None,
        events: Events | None = None,
        target: str | None = None,
    ) -> None:
        self._resonate = resonate
        self._events = events or NoEvents()
        self._params = params or WorkflowParams()
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()
        resonate.set_dependency(RECORD_STORE, store)
        resonate.set_dependency(COMPLETION_PUBLISHER, publisher)
        resonate.set_dependency(STEP_OPTIONS, (step_retry or StepRetry()).options())
        resonate.set_dependency(EVENTS, self._events)
        self._created = _observe_creation(resonate)
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
        its supervisor restarts it. Reads the SDK's private `_bridge._shutdown` (pinned < 0.7).
        """
        shutdown = getattr(getattr(self._resonate, "_bridge", None), "_shutdown", None)
        return not (self._started and shutdown is not None and shutdown.is_set())

    def start(self, record_id: RecordId, offset: int) -> None:
        self.start_runtime()
        if not self.healthy():
            raise RuntimeStopped("the Resonate runtime shut down after a store error; restart the worker")
        try:
            handle = self._workflow.begin_run(
                workflow_id(record_id),
                record_id.value,
                offset,
                self._params.batch_size,
                self._params.pause_seconds,
                self._params.step_seconds,
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
        _forget_loggers(key)

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
            from resonate.options import Options

            outcome = promise.result(Options().get_encoder())
            value = outcome.value
            detail = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else value
        return WorkflowStatus(record_id.value, state, detail)

    def stop(self) -> None:
        if self._started:
            self._resonate.stop()
