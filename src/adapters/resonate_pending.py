"""The request workflows the Resonate server holds pending: for the dashboard's "not yet joined".

A request's workflow (durable id `rd:req:NAMESPACE:TOPIC:PARTITION:OFFSET:TIMESTAMP`, see
`RequestRef.key`) is created when a worker hands the message off, and its first step joins the
ledger. A pending workflow whose request the ledger does not hold yet is one handed off but not
started: a backlog the ledger alone cannot show (e.g. every step thread busy, or no worker alive).

Read with the server's promise search (`GET /promises?id=PATTERN&state=pending`), a bounded number
of pages; the credentials go in the Authorization header only and are never reported.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

PAGE = 100


@dataclass(frozen=True, slots=True)
class PendingRequest:
    key: str
    topic: str
    partition: int
    offset: int
    created_at: datetime | None


def parse_key(key: str, created_ms: int | None) -> PendingRequest | None:
    """A request workflow's id as its coordinates; None for anything else (a step's promise)."""
    parts = key.split(":")
    if len(parts) != 7 or parts[:2] != ["rd", "req"] or not all(p.lstrip("-").isdigit() for p in parts[4:]):
        return None
    created = datetime.fromtimestamp(created_ms / 1000, UTC) if created_ms else None
    return PendingRequest(key, parts[3], int(parts[4]), int(parts[5]), created)


class ResonatePendingRequests:
    """Pending request workflows of one namespace (the workers' BROKER_GROUP) on a Resonate server."""

    def __init__(
        self,
        url: str,
        namespace: str,
        auth: tuple[str, str] | None,
        *,
        pages: int = 3,
        timeout: float = 2.0,
    ) -> None:
        self._url, self._namespace, self._pages, self._timeout = url.rstrip("/"), namespace, pages, timeout
        self._headers = {"Accept": "application/json"}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def __call__(self) -> list[PendingRequest]:
        """Oldest first; raises OSError (or ValueError on a body that is not the API's)."""
        found: list[PendingRequest] = []
        cursor: str | None = None
        for _ in range(self._pages):
            body = self._page(cursor)
            for promise in body.get("promises") or []:
                tags = promise.get("tags") or {}
                if tags.get("resonate:root", promise.get("id")) != promise.get("id"):
                    continue  # a step's or a sleep's promise inside a workflow
                request = parse_key(str(promise.get("id")), promise.get("createdOn"))
                if request is not None:
                    found.append(request)
            cursor = body.get("cursor")
            if not cursor:
                break
        return sorted(found, key=lambda r: (r.created_at or datetime.max.replace(tzinfo=UTC), r.key))

    def _page(self, cursor: str | None) -> dict[str, Any]:
        query = {"id": f"rd:req:{self._namespace}:*", "state": "pending", "limit": str(PAGE)}
        if cursor:
            query = {"cursor": cursor}
        # RESONATE_URL is validated as http(s) (settings): no file: or other scheme reaches here
        url = f"{self._url}/promises?{urlencode(query)}"
        request = urllib.request.Request(url, headers=self._headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
            body = json.loads(response.read(10_000_000))
        if not isinstance(body, dict):
            raise ValueError("the Resonate server's answer is not a promise search result")  # noqa: TRY004
        return body
