"""Record ids and the wire formats: what is accepted, what is poison and why, what is published."""

from __future__ import annotations

import json

import pytest

from record_deleter.domain.errors import InvalidRecordId, PoisonMessage
from record_deleter.domain.messages import (
    MAX_REQUEST_BYTES,
    dead_letter,
    decode_completion,
    encode_completion,
    encode_request,
    parse_request,
)
from record_deleter.domain.model import RECORD_ID_MAX_LENGTH, Completion, InboundMessage, RecordId

pytestmark = pytest.mark.unit


# --- RecordId ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "A-1", "user_42", "tenant:7:record", "x@example", "9" * 128])
def test_record_id_accepts_safe_values(value: str) -> None:
    assert RecordId(value).value == value
    assert str(RecordId(value)) == value


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("", "empty"),
        ("a" * (RECORD_ID_MAX_LENGTH + 1), "129 characters"),
        ("'; DROP TABLE x;--", "';'"),
        ("../etc", "'.'"),
        ("a/b", "'/'"),
        ("a.1", "'.'"),
        ("a b", "' '"),
        ("a\nb", "'\\n'"),
        ("a\x00b", "'\\x00'"),
        ("caf\u00e9", "'\u00e9'"),
    ],
)
def test_record_id_rejects_unsafe_values_naming_the_problem(value: str, named: str) -> None:
    with pytest.raises(InvalidRecordId) as caught:
        RecordId(value)
    assert named in str(caught.value)


def test_record_id_rejection_says_what_is_allowed() -> None:
    with pytest.raises(InvalidRecordId, match="only letters, digits"):
        RecordId("a/b")


def test_record_id_rejects_non_strings() -> None:
    with pytest.raises(InvalidRecordId, match="must be a string, got int"):
        RecordId(7)  # type: ignore[arg-type]


def test_invalid_record_id_is_a_value_error() -> None:
    """Callers that only know ValueError (settings, CLI arguments) still catch it."""
    with pytest.raises(ValueError, match="empty"):
        RecordId("")


# --- parse_request: accepted forms --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'"abc"',
        b'["abc", 1]',
        b'["abc", 1, "anything", {"else": true}]',
        b'["abc"]',
        b'  "abc"  \n',
    ],
)
def test_parse_request_accepts_the_reference_wire_format(raw: bytes) -> None:
    assert parse_request(raw) == RecordId("abc")


def test_parse_request_round_trips_encode_request() -> None:
    assert parse_request(encode_request(RecordId("rec:1"))) == RecordId("rec:1")


def test_parse_request_accepts_a_payload_at_the_size_limit() -> None:
    padding = MAX_REQUEST_BYTES - len(b'["abc", ""]')
    raw = json.dumps(["abc", "x" * padding]).encode()
    assert len(raw) == MAX_REQUEST_BYTES
    assert parse_request(raw) == RecordId("abc")


# --- parse_request: poison ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(None, "tombstone", id="tombstone"),
        pytest.param(b"", "empty", id="empty-bytes"),
        pytest.param(b"\xff\xfe\xfd", "not UTF-8", id="not-utf8"),
        pytest.param(b"abc", "not JSON", id="bare-word"),
        pytest.param(b'{"id": ', "not JSON", id="truncated-json"),
        pytest.param(b"42", "got int 42", id="json-number"),
        pytest.param(b"4.5", "got float", id="json-float"),
        pytest.param(b'{"id": "abc"}', "got dict", id="json-object"),
        pytest.param(b"null", "got null", id="json-null"),
        pytest.param(b"true", "got bool", id="json-true"),
        pytest.param(b"[]", "empty JSON array", id="empty-array"),
        pytest.param(b"[1, 2]", "got int 1", id="array-first-not-string"),
        pytest.param(b'[["abc"]]', "got list", id="array-first-is-array"),
        pytest.param(b"[null]", "got null", id="array-first-null"),
        pytest.param(b'""', "empty", id="empty-id"),
        pytest.param(b'[""]', "empty", id="empty-id-in-array"),
        pytest.param(json.dumps("a" * 129).encode(), "129 characters", id="id-too-long"),
        pytest.param(json.dumps("'; DROP TABLE x;--").encode(), "';'", id="sql-metacharacters"),
        pytest.param(json.dumps("../etc").encode(), "'.'", id="path-traversal"),
        pytest.param(json.dumps("a/b").encode(), "'/'", id="slash"),
        pytest.param(json.dumps("a.1").encode(), "'.'", id="dot-collides-with-step-ids"),
        pytest.param(json.dumps("a\tb").encode(), "'\\t'", id="control-tab"),
        pytest.param(json.dumps("a\x00b").encode(), "'\\x00'", id="control-nul"),
        pytest.param(json.dumps("a\x1bb").encode(), "'\\x1b'", id="control-escape"),
    ],
)
def test_parse_request_rejects_poison_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        parse_request(raw)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_poison_reason_for_an_invalid_id_says_what_is_allowed() -> None:
    with pytest.raises(PoisonMessage) as caught:
        parse_request(b'"a/b"')
    assert caught.value.reason.startswith("invalid record id:")
    assert "letters, digits" in caught.value.reason


def test_poison_reason_for_a_wrong_shape_names_the_accepted_forms() -> None:
    with pytest.raises(PoisonMessage) as caught:
        parse_request(b"not json")
    assert 'a JSON string ("abc")' in caught.value.reason
    assert 'JSON array whose first element is the id (["abc", ...])' in caught.value.reason


def test_parse_request_rejects_a_payload_over_the_size_limit_before_decoding() -> None:
    raw = b'"' + b"a" * MAX_REQUEST_BYTES + b'"'
    with pytest.raises(PoisonMessage) as caught:
        parse_request(raw)
    assert f"{len(raw)} bytes" in caught.value.reason
    assert f"at most {MAX_REQUEST_BYTES}" in caught.value.reason


# --- completion and dead-letter encoding --------------------------------------------------------


def test_encode_completion_matches_the_reference_format() -> None:
    completion = Completion(RecordId("abc"), 17, rows_deleted=2500, batches=3, idempotency_key="abc")
    out = encode_completion(completion)
    assert out.value == b'["abc", 17]'
    assert json.loads(out.value) == ["abc", 17]
    assert decode_completion(out.value) == ("abc", 17)
    assert out.key == b"abc"
    assert dict(out.headers) == {"rows-deleted": b"2500", "batches": b"3", "idempotency-key": b"abc"}


def test_dead_letter_keeps_original_bytes_and_says_where_from_and_why() -> None:
    original = InboundMessage(
        topic="records_to_be_deleted",
        partition=2,
        offset=41,
        value=b"\xffnot json",
        key=b"k",
        headers=(("trace", b"t-1"),),
    )
    out = dead_letter(original, "message value is not UTF-8")
    assert out.value == b"\xffnot json"
    assert out.key == b"k"
    headers = dict(out.headers)
    assert headers["trace"] == b"t-1"
    assert headers["dlq-error"] == b"message value is not UTF-8"
    assert headers["dlq-topic"] == b"records_to_be_deleted"
    assert headers["dlq-partition"] == b"2"
    assert headers["dlq-offset"] == b"41"
    assert headers["dlq-value-null"] == b"false"


def test_dead_letter_of_a_tombstone_marks_the_null_value() -> None:
    out = dead_letter(InboundMessage("t", 0, 0, None), "tombstone")
    assert out.value == b""
    assert dict(out.headers)["dlq-value-null"] == b"true"


def test_deeply_nested_json_is_poison_not_a_crash() -> None:
    """json.loads raises RecursionError, not ValueError, on deep nesting within the size limit."""
    with pytest.raises(PoisonMessage, match="nested too deeply"):
        parse_request(b"[" * 30_000 + b"]" * 30_000)
