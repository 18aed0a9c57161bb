"""The guard against the Resonate server's callback race (RELIABILITY.md, finding F5)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from record_deleter.adapters.resonate_sdk_patches import guard_callback_race

pytestmark = pytest.mark.unit


class Promises:
    """Answers registrations the way Resonate server v0.8.2 does when the promise completes between
    its read and its insert: 200, the promise as first read (pending), and no callback."""

    def __init__(self, *, completed_meanwhile: bool) -> None:
        self.completed_meanwhile = completed_meanwhile
        self.gets = 0

    def callback(self, promise_id: str, root_promise_id: str, recv: str, timeout: int) -> tuple[Any, Any]:
        return SimpleNamespace(id=promise_id, completed=False), None

    def subscribe(self, id: str, promise_id: str, recv: str, timeout: int) -> tuple[Any, Any]:
        return SimpleNamespace(id=promise_id, completed=False), None

    def get(self, promise_id: str) -> Any:
        self.gets += 1
        return SimpleNamespace(id=promise_id, completed=self.completed_meanwhile)


@pytest.mark.parametrize("register", ["callback", "subscribe"])
def test_a_promise_completed_during_registration_is_returned_completed(register: str) -> None:
    promises = Promises(completed_meanwhile=True)
    store = guard_callback_race(SimpleNamespace(promises=promises))  # type: ignore[arg-type]
    if register == "callback":
        promise, cb = store.promises.callback(promise_id="p", root_promise_id="r", recv="x", timeout=1)
    else:
        promise, cb = store.promises.subscribe(id="s", promise_id="p", recv="x", timeout=1)
    assert promise.completed, "the SDK would suspend on a promise nobody will ever resume"
    assert cb is None


def test_a_promise_still_pending_is_returned_as_answered() -> None:
    promises = Promises(completed_meanwhile=False)
    store = guard_callback_race(SimpleNamespace(promises=promises))  # type: ignore[arg-type]
    promise, cb = store.promises.callback(promise_id="p", root_promise_id="r", recv="x", timeout=1)
    assert not promise.completed
    assert cb is None
    assert promises.gets == 1
