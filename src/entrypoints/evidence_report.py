"""`record-deleter evidence` output: a record's history as JSON (for scripts) or Markdown (for a
person, or a ticket). Formatting only: the facts and the chain's verdict come from the store
(`adapters.sql_evidence.record_history`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..domain.evidence import AnswerEvidence, AttemptEvidence, BatchEvidence, RecordHistory, RequestEvidence


def _when(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (the stores hand back aware times: `sql_engine.as_utc`)."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _request(r: RequestEvidence) -> dict[str, Any]:
    return {
        "attempt": r.attempt,
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "message_timestamp": r.message_timestamp,
        "received_at": _when(r.received_at),
        "request_key": r.request_key,
    }


def _batch(b: BatchEvidence) -> dict[str, Any]:
    return {
        "row": b.row_id,
        "rows_deleted": b.rows_deleted,
        "tables": b.tables,
        "deleted_at": _when(b.deleted_at),
        "worker": b.worker,
        "chain_hash": b.chain_hash,
    }


def _answer(a: AnswerEvidence) -> dict[str, Any]:
    return {
        "outcome": a.outcome,
        "topic": a.topic,
        "partition": a.partition,
        "offset": a.offset,
        "worker": a.worker,
        "published_at": _when(a.published_at),
        "request_key": a.request_key,
    }


def _attempt(a: AttemptEvidence) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "state": a.state,
        "started_at": _when(a.started_at),
        "finished_at": _when(a.finished_at),
        "rows_deleted": a.rows_deleted,
        "batches": a.batches,
        "reason": a.reason,
        "plan": a.plan,
        "final_counts": a.final_counts,
        "audit_head": a.audit_head,
        "requests": [_request(r) for r in a.requests],
        "batch_rows": [_batch(b) for b in a.batch_rows],
        "answers": [_answer(x) for x in a.answers],
    }


def as_json(history: RecordHistory) -> str:
    chain = history.chain
    return json.dumps(
        {
            "record_id": history.record_id,
            "requests": [_request(r) for a in history.attempts for r in a.requests],
            "attempts": [_attempt(a) for a in history.attempts],
            "chain": {
                "intact": chain.intact,
                "summary": chain.summary(),
                "batches": chain.batches,
                "unchained": chain.unchained,
                "problems": list(chain.problems),
                "notes": list(chain.notes),
            },
        },
        indent=2,
    )


def as_markdown(history: RecordHistory) -> str:
    lines = [f"# Deletion evidence: {history.record_id}", "", "## Requests", ""]
    lines += ["| topic | partition | offset | received at | attempt |", "|---|---|---|---|---|"]
    for a in history.attempts:
        for r in a.requests:
            lines.append(f"| {r.topic} | {r.partition} | {r.offset} | {_when(r.received_at)} | {r.attempt} |")
    for a in history.attempts:
        lines += ["", *_attempt_markdown(a)]
    lines += ["", "## Chain", "", history.chain.summary()]
    lines += [f"- {p}" for p in history.chain.problems]
    lines += [f"- note: {n}" for n in history.chain.notes]
    return "\n".join(lines)


def _attempt_markdown(a: AttemptEvidence) -> list[str]:
    lines = [f"## Attempt {a.attempt}: {a.state}", ""]
    lines.append(f"- started {_when(a.started_at)}, finished {_when(a.finished_at) or '-'}")
    lines.append(f"- plan: {a.plan or '(not recorded)'}")
    if a.rows_deleted is not None:
        lines.append(f"- closed with {a.rows_deleted} rows deleted in {a.batches} batches")
    if a.reason:
        lines.append(f"- reason: {a.reason}")
    counts = a.final_counts
    shown = ", ".join(f"{t}: {n}" for t, n in counts.items()) if counts is not None else "(not recorded)"
    lines += [f"- final counts: {shown}", "", "| row | rows | tables | committed at | worker |"]
    lines.append("|---|---|---|---|---|")
    for b in a.batch_rows:
        tables = ", ".join(f"{t}: {n}" for t, n in (b.tables or {}).items()) or "(not recorded)"
        worker = b.worker or "-"
        lines.append(f"| {b.row_id} | {b.rows_deleted} | {tables} | {_when(b.deleted_at)} | {worker} |")
    lines.append("")
    for x in a.answers:
        lines.append(
            f"- answer ({x.outcome}): {x.topic} partition {x.partition} offset {x.offset}, "
            f"published {_when(x.published_at)} by {x.worker or '-'}"
        )
    if not a.answers:
        lines.append("- answer: none recorded")
    return lines
