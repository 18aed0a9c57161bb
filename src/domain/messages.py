"""Wire formats: request parsing (reference example's format) and completion/failure encoding."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import InvalidRecordId, PoisonMessage
from .model import Answer, InboundMessage, RecordId

MAX_REQUEST_BYTES = 64 * 1024
_ACCEPTED = 'a JSON string ("abc") or a JSON array whose first element is the id (["abc", ...])'


def parse_request(value: bytes | None) -> RecordId:
    """Parse a request value as the reference example does, but reject what it would crash on.

    Accepted: a JSON string or a JSON array whose first element is a string. Anything else raises
    PoisonMessage with a reason naming what is wrong and what is allowed.
    """
    if value is None:
        raise PoisonMessage(f"message has no value (tombstone); expected {_ACCEPTED}")
    if len(value) == 0:
        raise PoisonMessage(f"message value is empty; expected {_ACCEPTED}")
    if len(value) > MAX_REQUEST_BYTES:
        raise PoisonMessage(f"message value is {len(value)} bytes; at most {MAX_REQUEST_BYTES} are accepted")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PoisonMessage(f"message value is not UTF-8 (byte {exc.start}); expected {_ACCEPTED}") from exc
    try:
        decoded = json.loads(text)
    except ValueError as exc:
        raise PoisonMessage(f"message value is not JSON ({exc}); expected {_ACCEPTED}") from exc
    except RecursionError as exc:
        raise PoisonMessage(
            f"message value is JSON nested too deeply to parse; expected {_ACCEPTED}"
        ) from exc
    if isinstance(decoded, list):
        if not decoded:
            raise PoisonMessage(f"message value is an empty JSON array; expected {_ACCEPTED}")
        candidate = decoded[0]
    else:
        candidate = decoded
    if not isinstance(candidate, str):
        kind = "null" if candidate is None else type(candidate).__name__
        raise PoisonMessage(f"record id must be a JSON string, got {kind} {json.dumps(candidate)[:40]}")
    try:
        return RecordId(candidate)
    except InvalidRecordId as exc:
        raise PoisonMessage(f"invalid record id: {exc}") from exc


def encode_request(record_id: RecordId) -> bytes:
    """The reference example's request format: a JSON string."""
    return json.dumps(record_id.value).encode()


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message to publish: key, value and headers, broker-agnostic."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


# Headers the worker sets on an answer; a request header of the same name is not carried over.
ANSWER_HEADERS = frozenset(
    {
        "rows-deleted",
        "batches",
        "idempotency-key",
        "attempt",
        "request-topic",
        "request-partition",
        "request-offset",
    }
)


def encode_answer(answer: Answer) -> OutboundMessage:
    """The answer to one request.

    A completion's value is `[record_id, offset]` exactly as the reference example publishes it;
    a failure's is a JSON object with the sanitized reason. Both carry the request's own headers
    (trace and correlation ids) and, in headers of their own, the request's coordinates, the
    attempt, the exact rows and batches from the audit trail, and the idempotency key.
    """
    rid, request = answer.record_id.value, answer.request
    if answer.failure is None:
        value = json.dumps([rid, request.offset]).encode()
    else:
        value = json.dumps(
            {
                "record_id": rid,
                "offset": request.offset,
                "error": answer.failure,
                "rows_deleted": answer.totals.rows_deleted,
                "batches": answer.totals.batches,
                "attempt": answer.attempt,
            }
        ).encode()
    carried = tuple((k, v) for k, v in request.headers if k not in ANSWER_HEADERS)
    return OutboundMessage(
        key=rid.encode(),
        value=value,
        headers=(
            *carried,
            ("rows-deleted", str(answer.totals.rows_deleted).encode()),
            ("batches", str(answer.totals.batches).encode()),
            ("attempt", str(answer.attempt).encode()),
            ("request-topic", request.topic.encode()),
            ("request-partition", str(request.partition).encode()),
            ("request-offset", str(request.offset).encode()),
            ("idempotency-key", answer.idempotency_key.encode()),
        ),
    )


def dead_letter(message: InboundMessage, reason: str) -> OutboundMessage:
    """The original bytes, with where they came from and why they were rejected in headers."""
    return OutboundMessage(
        key=message.key,
        value=message.value or b"",
        headers=(
            *message.headers,
            ("dlq-error", reason.encode()),
            ("dlq-topic", message.topic.encode()),
            ("dlq-partition", str(message.partition).encode()),
            ("dlq-offset", str(message.offset).encode()),
            ("dlq-value-null", b"true" if message.value is None else b"false"),
        ),
    )


def decode_completion(value: bytes) -> tuple[str, int]:
    """Read back a completion value (for verification tools and tests)."""
    record_id, offset = json.loads(value)
    return str(record_id), int(offset)
