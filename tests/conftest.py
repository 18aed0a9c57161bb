"""Shared test helpers: real-service endpoints and condition waits, as pytest failures.

Endpoints of real services come from the environment (`scripts/services.sh up` writes them to
`.services/env`; the README's test command sources it). A test that needs a service whose
endpoint is missing FAILS with the variable to set; nothing is skipped. The helpers themselves
live in `tests/harness/`, which the benchmarks share.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests import harness
from tests.harness.endpoints import endpoint


def service_endpoint(variable: str, what: str) -> str:
    try:
        return endpoint(variable, what)
    except harness.MissingEndpoint as exc:
        pytest.fail(str(exc), pytrace=False)


def wait_for[T](
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll `condition` until it returns a truthy value; fail with `message` at the deadline."""
    try:
        return harness.wait_for(condition, timeout, interval, message)
    except TimeoutError as exc:
        pytest.fail(str(exc), pytrace=False)
