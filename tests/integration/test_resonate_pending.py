"""The dashboard's "requests not yet joined": pending request workflows read from the real
Resonate server (its promise search, basic auth), and told apart from the ledger's requests."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest
from sqlalchemy import insert

from record_deleter.adapters.dashboard_overview import DashboardOverview, OverviewLimits
from record_deleter.adapters.resonate_pending import ResonatePendingRequests, parse_key
from record_deleter.adapters.sql_schema import deletion_requests
from tests import builders
from tests.harness import resonate_endpoint, scratch_database, unique
from tests.harness.endpoints import endpoint

pytestmark = pytest.mark.integration


def credentials() -> tuple[str, str]:
    return (
        endpoint("RESONATE_USERNAME", "the Resonate server's user"),
        endpoint("RESONATE_PASSWORD", "the Resonate server's password"),
    )


def create_promise(url: str, promise_id: str, root: str) -> None:
    """A pending promise as the SDK creates one (a workflow's, or a step's inside it)."""
    user, password = credentials()
    body = {
        "id": promise_id,
        "timeout": int(time.time() * 1000) + 120_000,
        "param": {},
        "tags": {"resonate:root": root},
    }
    request = urllib.request.Request(
        f"{url}/promises",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status in (200, 201)


def test_pending_request_workflows_of_one_namespace_not_yet_in_the_ledger() -> None:
    url, _ = resonate_endpoint()
    namespace = unique("dash")
    first, second = (f"rd:req:{namespace}:requests:1:{offset}:1700000000000" for offset in (41, 42))
    create_promise(url, first, first)
    create_promise(url, second, second)
    create_promise(url, f"{second}.1", second)  # a step of the second: not a request
    create_promise(url, f"rd:req:{unique('other')}:requests:0:1:1", "x")  # another deployment's
    pending = ResonatePendingRequests(url, namespace, credentials())()
    assert [(p.key, p.topic, p.partition, p.offset) for p in pending] == [
        (first, "requests", 1, 41),
        (second, "requests", 1, 42),
    ]
    assert all(p.created_at is not None for p in pending)

    with scratch_database("sqlite") as db_url:
        engine = builders.engine(db_url)
        with engine.begin() as conn:  # the first one's workflow started: its request joined the ledger
            conn.execute(
                insert(deletion_requests).values(
                    request_key=first,
                    record_id="r",
                    attempt=1,
                    topic="requests",
                    partition=1,
                    offset=41,
                    headers="{}",
                )
            )
        reader = ResonatePendingRequests(url, namespace, credentials())
        overview = DashboardOverview(
            engine, lambda _id: None, OverviewLimits(cache_seconds=0), pending=reader
        )
        not_joined = overview()["not_joined"]
        engine.dispose()
    assert not_joined["error"] is None
    assert not_joined["count"] == 1
    assert [r["offset"] for r in not_joined["requests"]] == [42]
    assert not_joined["requests"][0]["age_seconds"] >= 0


def test_refused_credentials_are_an_error_without_the_password() -> None:
    url, _ = resonate_endpoint()
    user, _password = credentials()
    with pytest.raises(urllib.error.HTTPError) as info:
        ResonatePendingRequests(url, "ns", (user, "wrong-password"))()
    assert info.value.code in (401, 403)
    with scratch_database("sqlite") as db_url:
        engine = builders.engine(db_url)
        reader = ResonatePendingRequests(url, "ns", (user, "wrong-password"))
        document = DashboardOverview(engine, lambda _id: None, OverviewLimits(), pending=reader)()
        engine.dispose()
    assert document["not_joined"]["error"] == "the Resonate server cannot be read (HTTPError)"
    assert "wrong-password" not in json.dumps(document)


def test_only_request_workflow_ids_are_requests() -> None:
    assert parse_key("rd:req:ns:topic:0:7:123", 1_700_000_000_000) is not None
    assert parse_key("rd:req:ns:topic:0:7:123.4", None) is None
    assert parse_key("rd:req:ns:topic:x:7:123", None) is None
    assert parse_key("other", None) is None
