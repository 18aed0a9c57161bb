"""Record ids and the wire formats: what is accepted, what is poison and why, what is published."""

from __future__ import annotations

import json

import pytest

from record_deleter.domain.errors import InvalidRecordId, PoisonMessage
from record_deleter.domain.messages import (
    ANSWER_HEADERS,
    MAX_REQUEST_BYTES,
    dead_letter,
    decode_completion,
    encode_answer,
    encode_request,
    parse_request,
)
from record_deleter.domain.model import (
    RECORD_ID_MAX_LENGTH,
    Answer,
    AttemptTotals,
    InboundMessage,
    RecordId,
    RequestRef,
)

pytestmark = pytest.mark.unit


# --- RecordId ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "A-1",
        "user_42",
        "tenant:7:record",
        "alice@example.com",
        "tenant/42",
        "a.1",
        "v1.2.3",
        "../etc",
        "first last",
        "'; DROP TABLE x;--",
        "caf\u00e9",
        "\u65e5\u672c\u8a9e-7",
        "\u0417\u0430\u043f\u0438\u0441\u044c",
        "9" * RECORD_ID_MAX_LENGTH,
        "\u00e9" * RECORD_ID_MAX_LENGTH,
    ],
    ids=lambda v: v if len(v) < 20 else f"{len(v)}-chars",
)
def test_record_id_accepts_what_real_systems_use(value: str) -> None:
    """Emails, paths, dotted versions, spaces inside, unicode letters: any printable text."""
    assert RecordId(value).value == value
    assert str(RecordId(value)) == value


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("a" * (RECORD_ID_MAX_LENGTH + 1), "129 characters", id="129-chars"),
        pytest.param("a\nb", "U+000A", id="newline"),
        pytest.param("a\rb", "U+000D", id="carriage-return"),
        pytest.param("a\tb", "U+0009", id="tab"),
        pytest.param("a\x00b", "U+0000", id="nul"),
        pytest.param("a\x1bb", "U+001B", id="escape"),
        pytest.param("a\x7fb", "U+007F", id="delete"),
        pytest.param("a\x85b", "U+0085", id="next-line"),
        pytest.param("a\u2028b", "U+2028", id="line-separator"),
        pytest.param("a\u2029b", "U+2029", id="paragraph-separator"),
        pytest.param("a\u200bb", "U+200B", id="zero-width-space"),
        pytest.param("admin\u202egnp.exe", "U+202E", id="right-to-left-override"),
        pytest.param("a\ud800b", "U+D800", id="lone-surrogate"),
    ],
)
def test_record_id_rejects_what_makes_logs_and_headers_ambiguous(value: str, named: str) -> None:
    with pytest.raises(InvalidRecordId) as caught:
        RecordId(value)
    assert named in str(caught.value)


def test_record_id_rejection_says_what_is_allowed() -> None:
    with pytest.raises(InvalidRecordId, match="1 to 128 characters, none of them a control or format"):
        RecordId("a\u2028b")


def test_record_id_rejection_names_each_bad_character_once() -> None:
    with pytest.raises(InvalidRecordId) as caught:
        RecordId("a\nb\nc\td")
    assert str(caught.value).count("U+000A") == 1
    assert "U+0009" in str(caught.value)


def test_record_id_rejects_non_strings() -> None:
    with pytest.raises(InvalidRecordId, match="must be a string, got int"):
        RecordId(7)  # type: ignore[arg-type]


def test_invalid_record_id_is_a_value_error() -> None:
    """Callers that only know ValueError (settings, CLI arguments) still catch it."""
    with pytest.raises(ValueError, match="empty"):
        RecordId("")


# --- durable ids derived from a record id and a request -----------------------------------------


def test_request_key_names_the_message_coordinates_and_timestamp() -> None:
    ref = InboundMessage("requests", 2, 41, b'"a"', timestamp=1_700_000_000_123).ref
    assert ref.key("ns") == "rd:req:ns:requests:2:41:1700000000123"
    assert InboundMessage("requests", 2, 41, b'"a"').ref.key("ns") == "rd:req:ns:requests:2:41:0"


def test_a_recreated_topics_offset_is_a_distinct_request() -> None:
    """Same topic, partition and offset, another broker timestamp: a new message, a new key."""
    before = InboundMessage("requests", 0, 0, b'"a"', timestamp=1000).ref.key("ns")
    after = InboundMessage("requests", 0, 0, b'"a"', timestamp=2000).ref.key("ns")
    assert before != after


def test_a_redelivered_message_keeps_its_request_key() -> None:
    """A redelivery (same coordinates, another key or headers) collapses onto the same workflow."""
    first = InboundMessage("requests", 1, 9, b'"a"', key=b"a", timestamp=5)
    again = InboundMessage("requests", 1, 9, b'"a"', key=None, headers=(("x", b"y"),), timestamp=5)
    assert first.ref.key("ns") == again.ref.key("ns")


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
        pytest.param(json.dumps("a\tb").encode(), "U+0009", id="control-tab"),
        pytest.param(json.dumps("a\x00b").encode(), "U+0000", id="control-nul"),
        pytest.param(json.dumps("a\x1bb").encode(), "U+001B", id="control-escape"),
        pytest.param(json.dumps("a\u2028b").encode(), "U+2028", id="line-separator"),
        pytest.param(json.dumps(["a\nb", 1]).encode(), "U+000A", id="newline-in-array"),
        pytest.param(b'"a\\ud800b"', "U+D800", id="escaped-lone-surrogate"),
    ],
)
def test_parse_request_rejects_poison_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        parse_request(raw)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason


@pytest.mark.parametrize(
    "record_id", ["alice@example.com", "tenant/42", "a.1", "first last", "caf\u00e9", "'; DROP TABLE x;--"]
)
def test_parse_request_accepts_real_world_ids_in_both_formats(record_id: str) -> None:
    assert parse_request(json.dumps(record_id).encode()) == RecordId(record_id)
    assert parse_request(json.dumps([record_id, 7]).encode()) == RecordId(record_id)
    assert parse_request(encode_request(RecordId(record_id))) == RecordId(record_id)


def test_poison_reason_for_an_invalid_id_says_what_is_allowed() -> None:
    with pytest.raises(PoisonMessage) as caught:
        parse_request(json.dumps("a\u2028b").encode())
    assert caught.value.reason.startswith("invalid record id:")
    assert "U+2028" in caught.value.reason
    assert "control or format character" in caught.value.reason


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


# --- answer and dead-letter encoding -----------------------------------------------------------


def answer(
    failure: str | None = None,
    *,
    headers: tuple[tuple[str, bytes], ...] = (),
    record_id: str = "abc",
) -> Answer:
    return Answer(
        RecordId(record_id),
        RequestRef("records_to_be_deleted", 2, 17, 1_700_000_000_000, headers),
        attempt=3,
        totals=AttemptTotals(rows_deleted=2500, batches=4),
        idempotency_key="rd:req:ns:records_to_be_deleted:2:17:1700000000000",
        failure=failure,
    )


def test_encode_answer_of_a_deletion_matches_the_reference_format() -> None:
    out = encode_answer(answer())
    assert out.value == b'["abc", 17]'
    assert json.loads(out.value) == ["abc", 17]
    assert decode_completion(out.value) == ("abc", 17)
    assert out.key == b"abc"
    assert dict(out.headers) == {
        "rows-deleted": b"2500",
        "batches": b"4",
        "attempt": b"3",
        "request-topic": b"records_to_be_deleted",
        "request-partition": b"2",
        "request-offset": b"17",
        "idempotency-key": b"rd:req:ns:records_to_be_deleted:2:17:1700000000000",
    }


def test_encode_answer_of_a_failure_says_why_and_what_was_deleted_before() -> None:
    out = encode_answer(answer("DeletionPlanInvalid: no table x"))
    assert json.loads(out.value) == {
        "record_id": "abc",
        "offset": 17,
        "error": "DeletionPlanInvalid: no table x",
        "rows_deleted": 2500,
        "batches": 4,
        "attempt": 3,
    }
    assert out.key == b"abc"
    headers = dict(out.headers)
    assert headers["request-offset"] == b"17"
    assert headers["attempt"] == b"3"
    assert headers["idempotency-key"] == answer().idempotency_key.encode()


def test_encode_answer_carries_the_requests_own_headers_first() -> None:
    carried = (("traceparent", b"00-abc-01"), ("correlation-id", b"c-9"), ("correlation-id", b"c-10"))
    out = encode_answer(answer(headers=carried))
    assert out.headers[: len(carried)] == carried, "trace and correlation ids come back, in order"
    assert [k for k, _ in out.headers[len(carried) :]] == [
        "rows-deleted",
        "batches",
        "attempt",
        "request-topic",
        "request-partition",
        "request-offset",
        "idempotency-key",
    ]


@pytest.mark.parametrize("name", sorted(ANSWER_HEADERS))
def test_a_request_header_named_like_an_answer_header_is_not_carried(name: str) -> None:
    """A request cannot forge its answer's counts or key: the worker's own header is the only one."""
    out = encode_answer(answer(headers=((name, b"forged"), ("trace", b"t"))))
    values = [v for k, v in out.headers if k == name]
    assert values != [b"forged"]
    assert len(values) == 1
    assert ("trace", b"t") in out.headers


def test_encode_answer_of_a_unicode_id_is_utf8() -> None:
    out = encode_answer(answer(record_id="caf\u00e9/42"))
    assert out.key == "caf\u00e9/42".encode()
    assert decode_completion(out.value) == ("caf\u00e9/42", 17)


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
