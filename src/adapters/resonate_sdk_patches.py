"""Workarounds for resonate-sdk 0.6.7 (pinned `>=0.6.7,<0.7` in pyproject.toml).

Each one is headed by the SDK version it targets, the bug, and the test that pins it. They reach
into the SDK's internals, so re-check every one of them (run its test) before moving the pin; a
fixed bug's workaround goes away with the pin. The adapter that uses them is `resonate_runtime`.
"""

from __future__ import annotations

import functools
import http.client
import inspect
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from requests import PreparedRequest
from resonate import Resonate
from resonate.errors import ResonateStoreError
from resonate.stores import LocalStore, RemoteStore

log = logging.getLogger(__name__)

SDK_VERSION = "0.6.7"

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
    """Workaround 1 (resonate-sdk 0.6.7): LocalStore is not thread-safe.

    Pinned by tests/unit/test_runtime_concurrent_start.py (1,000+ workflows started at once).
    The SDK's LocalStore with every promise/task/schedule operation under the store's lock.

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
    """Workaround 2 (resonate-sdk 0.6.7): a new HTTP session per request to the Resonate server.

    Pinned by tests/integration/test_resonate_store.py (the same results, fewer connections).
    The SDK's RemoteStore over one keep-alive `http.client` connection per thread.

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
    """Workaround 3 (resonate-sdk 0.6.7 with Resonate server v0.8.2): a lost wake-up.

    Pinned by tests/unit/test_callback_race_guard.py (RELIABILITY.md, finding F5).
    Make callback/subscription registration safe against a promise completing concurrently.

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


class SharedContextLogger:
    """Workaround 4 (resonate-sdk 0.6.7): a logger per workflow and step, each costing time linear
    in the number of loggers in the process.

    Pinned by tests/unit/test_runtime_loggers.py.
    The SDK's ContextLogger does `logging.getLogger(f"resonate:{root}:{id}")`, gives it a handler
    of its own and calls `setLevel`, for every workflow and every step context, and never releases
    them: memory grows with every record ever processed, and `setLevel` clears the cache of every
    logger in the process, so each new context costs time linear in their number (17% of the
    worker's CPU with 1,000 workflows in flight, in a profile of the benchmark's end-to-end run).
    This one writes the same lines, in the same format, through one shared logger; install it
    with `share_context_loggers` before the SDK makes its first context.

    With `redact_args` (WORKER_LOG_RECORD_IDS=hashed) a line keeps the function's name, numbers
    (a retry delay) and an error's class, and drops the rest of its arguments: the SDK writes a
    step's arguments (the record id first), its result and the error's text into them
    ("Function delete_batches('ada@example.com', 1, ...) failed with ... (retrying in 2.0s)").
    The context ids (`cid`, `id`) derive from a request's coordinates, never from a record id.
    """

    _logger = logging.getLogger("resonate.context")
    redact_args = False

    def __init__(self, cid: str, id: str, level: int | str = logging.NOTSET) -> None:
        self.cid, self.id = cid, id

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.redact_args and args:
            args = (args[0], *map(_redacted, args[1:]))
        self._logger.log(level, msg, *args, **{**kwargs, "extra": {"cid": self.cid, "id": self.id}})

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.CRITICAL, msg, *args, **kwargs)


_ERROR_REPR = re.compile(r"([A-Za-z_][\w.]*)\(")


def _redacted(arg: Any) -> Any:
    """An SDK log argument without values: numbers kept, an exception's repr cut to its class."""
    if isinstance(arg, int | float):
        return arg
    found = _ERROR_REPR.match(arg) if isinstance(arg, str) else None
    return f"{found.group(1)}(...)" if found else "..."


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is written, not when the handler was made."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def share_context_loggers(level: int, *, redact_args: bool = False) -> None:
    """Make every Resonate client of this process log its contexts through `SharedContextLogger`
    (at `level`, to stderr, in the SDK's own line format; `redact_args`: without the functions'
    arguments). Idempotent."""
    import resonate.resonate as sdk

    shared = SharedContextLogger._logger
    shared.setLevel(level)
    SharedContextLogger.redact_args = redact_args
    if not shared.handlers:
        handler = _StderrHandler()
        handler.setFormatter(
            logging.Formatter(
                "[%(asctime)s] [%(levelname)s] [%(cid)s] [%(id)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
            )
        )
        shared.addHandler(handler)
        shared.propagate = False
    setattr(sdk, "ContextLogger", SharedContextLogger)  # noqa: B010 - replacing the SDK's class


def observe_creation(resonate: Resonate) -> threading.local:
    """Workaround 5 (resonate-sdk 0.6.7): `begin_run` does not say whether the workflow was new.

    Pinned by tests/unit/test_runtime_duplicates.py.
    Record, per thread, whether the last `create_with_task` made a new workflow.

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


def sdk_shut_down(resonate: Resonate) -> bool:
    """Workaround 6 (resonate-sdk 0.6.7): the SDK stops itself silently after a store error.

    Pinned by tests/integration/test_resonate_remote.py (a worker whose server stays away exits).
    It stops its bridge (no more steps run, no heartbeats) when a store request fails beyond the
    store's retry policy, but leaves the process running; a worker in that state would keep
    claiming work it never runs. Reads the SDK's private `_bridge._shutdown`.
    """
    shutdown = getattr(getattr(resonate, "_bridge", None), "_shutdown", None)
    return shutdown is not None and shutdown.is_set()


def skip_redundant_task_completion(resonate: Resonate) -> None:
    """Workaround 7 (resonate-sdk 0.6.7 with Resonate server v0.8.2): a request per workflow the
    server has already done, and a task per workflow kept in memory for good.

    Pinned by tests/integration/test_resonate_remote.py
    (test_a_one_batch_record_costs_the_server_two_requests_and_leaves_no_task_claimed).
    When a workflow's root promise is resolved or rejected, the server completes the tasks of that
    root in the same transaction (`completePromise`: `CompleteTasksCommand` by root promise id).
    resonate-sdk 0.6.x then still sends `POST /tasks/complete` for it, one more request on its
    single bridge thread per workflow, and never drops the task from `_promise_id_to_task`.
    Here a root's entry is dropped as its result is sent, so the bridge finds no task and sends
    no completion. A workflow that suspends (a durable sleep, another workflow's promise) still
    completes its task as before: it sends no result for its root.
    """
    bridge = getattr(resonate, "_bridge")  # noqa: B009 - the SDK keeps the task map on its bridge
    tasks: dict[str, Any] = bridge._promise_id_to_task
    promises = resonate.promises
    for name in ("resolve", "reject"):
        complete = getattr(promises, name)

        def completing(*args: Any, _complete: Callable[..., Any] = complete, **kwargs: Any) -> Any:
            result = _complete(*args, **kwargs)
            tasks.pop(kwargs.get("id", args[0] if args else ""), None)
            return result

        setattr(promises, name, completing)


def forget_computation(resonate: Resonate, workflow: str) -> None:
    """Workaround 8 (resonate-sdk 0.6.7): every workflow's computation kept in memory for good.

    Pinned by tests/unit/test_runtime_loggers.py (test_finished_workflows_leave_no_computation).
    The SDK's scheduler keeps a `Computation` (the call graph, its promises, its results) per
    workflow id in `Scheduler.computations` and never removes one: 12 KB per record, 219 MiB of
    peak RSS after 10,000 records and falling throughput as the garbage collector walks them all
    (the growth benchmark). Call this once a workflow this process started has finished, from its
    future's callback: the SDK processes a workflow's commands in order, so nothing of it is left
    to come (a workflow recovered here after a crash is not dropped: it was not started here).
    """
    bridge = getattr(resonate, "_bridge", None)
    scheduler = getattr(bridge, "_scheduler", None)
    computations = getattr(scheduler, "computations", None)
    if isinstance(computations, dict):
        computations.pop(workflow, None)
