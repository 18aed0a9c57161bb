"""Shared test helpers: real-service endpoints and condition waits.

Endpoints of real services come from the environment (`scripts/services.sh up` writes them to
`.services/env`; the README's test command sources it). A test that needs a service whose
endpoint is missing FAILS with the variable to set; nothing is skipped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def service_endpoint(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if not value:
        pytest.fail(
            f"{what} is required but {variable} is not set: run the suite with `make test` "
            f"(which provisions it), or export {variable} to point at your own {what}",
            pytrace=False,
        )
    return value


def wait_for[T](
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll `condition` until it returns a truthy value; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for: {message or condition}", pytrace=False)
        time.sleep(interval)
        last = condition()
    return last
