"""An isolated record-deleter deployment on the shared services (the failure-mode system tests):
unique topics, consumer group, Resonate group and record-id prefix, so tests never see each
other's traffic; and the bookkeeping that turns a run into figures (lost, duplicates, re-executed
batches), printed as one `RELIABILITY {json}` line per test."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from record_deleter.domain.errors import PoisonMessage
from record_deleter.domain.messages import encode_request, parse_request
from record_deleter.domain.model import RecordId

from . import database
from .endpoints import kafka_bootstrap, postgres_url, resonate_endpoint, unique
from .kafka import Read, TopicReader, Topics, committed_lag, produce, read_topic
from .processes import cli_env


@dataclass(frozen=True)
class Record:
    """A seeded record: its id, its `record_rows` count and the delete batches it needs."""

    id: str
    rows: int
    batch_size: int

    @property
    def needed(self) -> int:
        """Batches that delete its rows plus its `records` row (a batch takes `batch_size` in all)."""
        return math.ceil((self.rows + 1) / self.batch_size)


@dataclass
class Deployment:
    """One isolated record-deleter deployment on the shared real services."""

    tmp: Path
    bootstrap: str
    db_url: str
    prefix: str
    group: str
    topics: dict[str, str]
    partitions: int
    batch_size: int
    env: dict[str, str]
    engine: Engine
    sent: dict[tuple[int, int], bytes | None] = field(default_factory=dict)  # (partition, offset) -> value
    bystanders: list[Record] = field(default_factory=list)  # seeded, never requested: rows must stay

    @classmethod
    def create(
        cls, tmp: Path, name: str, *, partitions: int = 3, batch_size: int = 10, **settings: str
    ) -> Deployment:
        bootstrap = kafka_bootstrap()
        resonate_url, poll_port = resonate_endpoint()
        db_url = postgres_url()
        topics = Topics.fresh(name)
        group = unique(f"{name}-workers")
        base = {
            "BROKER_KIND": "kafka",
            "BROKER_BOOTSTRAP_SERVERS": bootstrap,
            "BROKER_PARTITIONS": str(partitions),
            "BROKER_GROUP": group,
            "DATABASE_URL": db_url,
            "RESONATE_MODE": "remote",
            "RESONATE_URL": resonate_url,
            "RESONATE_MESSAGE_SOURCE_PORT": poll_port,
            "RESONATE_GROUP": unique(f"{name}-rg"),
            "RESONATE_TTL": "2",
            "WORKFLOW_BATCH_SIZE": str(batch_size),
            "WORKFLOW_PAUSE_SECONDS": "0.5",
            "WORKFLOW_STEP_RETRY_DELAY": "0.2",
            "WORKFLOW_STEP_RETRY_MAX_DELAY": "2",
            **topics.env(),
        }
        # RD_EXTRA_WORKER_ENV="KEY=VALUE ..." adds settings to every worker (to measure a tuning)
        extra = dict(kv.split("=", 1) for kv in os.environ.get("RD_EXTRA_WORKER_ENV", "").split())
        env = cli_env(**{**base, **settings, **extra})
        database.prepare(db_url)
        topics.create(bootstrap, partitions)
        return cls(
            tmp=tmp,
            bootstrap=bootstrap,
            db_url=db_url,
            prefix=unique(name) + "-",
            group=group,
            topics=topics.env(),
            partitions=partitions,
            batch_size=int(env["WORKFLOW_BATCH_SIZE"]),
            env=env,
            engine=database.engine(db_url),
        )

    @property
    def request_topic(self) -> str:
        return self.topics["BROKER_REQUEST_TOPIC"]

    @property
    def completion_topic(self) -> str:
        return self.topics["BROKER_COMPLETION_TOPIC"]

    @property
    def dead_letter_topic(self) -> str:
        return self.topics["BROKER_DEAD_LETTER_TOPIC"]

    @property
    def failure_topic(self) -> str:
        return self.topics["BROKER_FAILURE_TOPIC"]

    # --- data -----------------------------------------------------------------------------------
    def seed(self, rows: Sequence[int], *, start: int = 1) -> list[Record]:
        """Create one record per entry of `rows` (that many `record_rows` each)."""
        out = [Record(f"{self.prefix}{start + i:06d}", n, self.batch_size) for i, n in enumerate(rows)]
        database.seed(self.engine, {r.id: r.rows for r in out})
        return out

    def seed_bystander(self, rows: int) -> Record:
        """A record that is never requested: `Outcome.check` leaves its rows out of `rows_left`."""
        [record] = self.seed([rows], start=999_999)
        self.bystanders.append(record)
        return record

    def produce(
        self, values: Sequence[bytes | None], *, partition: int | None = None, keys: bool = True
    ) -> list[tuple[int, int]]:
        """Produce raw request values; returns (partition, offset) of each, in order."""
        key_of = [str(i).encode() if keys and v is not None else None for i, v in enumerate(values)]
        placed = produce(self.bootstrap, self.request_topic, values, keys=key_of, partition=partition)
        self.sent.update(zip(placed, values, strict=True))
        return placed

    def requests(self) -> dict[tuple[int, int], str]:
        """Every valid request produced so far: (partition, offset) -> record id (poison left out)."""
        out = {}
        for where, value in self.sent.items():
            try:
                out[where] = parse_request(value).value
            except PoisonMessage:
                continue
        return out

    def attempts(self) -> dict[str, int]:
        """Deletion attempts per record id of this deployment (rows in deletion_attempts)."""
        return database.attempts(self.engine, self.prefix)

    def request(self, records: Sequence[Record], **kwargs: Any) -> list[tuple[int, int]]:
        """Produce one request per record in the reference example's format ("id")."""
        return self.produce([encode_request(RecordId(r.id)) for r in records], **kwargs)

    def audit(self) -> dict[str, int]:
        """Executed delete batches per record id of this deployment (rows in deletion_audit)."""
        return database.audit(self.engine, self.prefix)

    def batches_done(self) -> int:
        return sum(self.audit().values())

    def rows_left(self) -> int:
        """record_rows plus records rows of this deployment still in the database."""
        return database.rows_left(self.engine, self.prefix)

    def lag(self) -> int:
        return committed_lag(self.bootstrap, self.group, self.request_topic)

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class Outcome:
    """What a run left behind, checked against the request contract: every distinct request message
    answered exactly once (a publish-window re-publish is the same bytes), rows gone, and no delete
    batch re-run beyond the one in flight at a crash."""

    records: list[Record]
    requests: dict[tuple[int, int], str]  # (partition, offset) -> record id
    answers: dict[tuple[int, int], list[Read]]  # by the request-partition/-offset headers
    failures: list[Read]
    audit: dict[str, int]
    attempts: dict[str, int]
    rows_left: int

    @classmethod
    def collect(cls, dep: Deployment, records: Sequence[Record], reader: TopicReader) -> Outcome:
        answers: dict[tuple[int, int], list[Read]] = defaultdict(list)
        failures = read_topic(dep.bootstrap, dep.failure_topic, expect=0, timeout=2, settle=0)
        for m in [*reader.poll(1.0), *failures]:
            where = (int(m.headers["request-partition"]), int(m.headers["request-offset"]))
            answers[where].append(m)
        left = dep.rows_left() - sum(database.rows_of(dep.engine, r.id) for r in dep.bystanders)
        return cls(list(records), dep.requests(), dict(answers), failures, dep.audit(), dep.attempts(), left)

    @property
    def completions(self) -> dict[str, list[Read]]:
        """Answers per record id (a record requested n times has n answers)."""
        out: dict[str, list[Read]] = defaultdict(list)
        for copies in self.answers.values():
            for c in copies:
                out[json.loads(c.value or b"null")[0]].append(c)
        return dict(out)

    @property
    def lost(self) -> list[str]:
        """Requests without an answer, as `record@partition:offset`."""
        return [f"{rid}@{p}:{o}" for (p, o), rid in self.requests.items() if (p, o) not in self.answers]

    @property
    def unexpected(self) -> list[tuple[int, int]]:
        return [where for where in self.answers if where not in self.requests]

    @property
    def duplicates(self) -> int:
        """Answers beyond the first per request (publish-window re-publishes)."""
        return sum(len(v) - 1 for v in self.answers.values())

    @property
    def extra_batches(self) -> dict[str, int]:
        """record -> batches executed beyond those needed: re-executed after a crash, plus one per
        later attempt (the batch that finds the record already empty)."""
        out = {}
        for r in self.records:
            extra = self.audit.get(r.id, 0) - r.needed - (self.attempts.get(r.id, 1) - 1)
            if extra:
                out[r.id] = extra
        return out

    def check(self, *, max_extra_per_record: int = 1, max_copies: int = 2) -> None:
        """Every request answered, nothing lost, duplicates only as identical re-publishes."""
        assert not self.lost, f"{len(self.lost)} request(s) without an answer: {self.lost[:10]}"
        assert not self.unexpected, f"answers to requests never made: {self.unexpected[:10]}"
        assert not self.failures, (
            f"{len(self.failures)} failure answer(s): {[f.value for f in self.failures][:3]}"
        )
        assert self.rows_left == 0, f"{self.rows_left} rows left in the database"
        for where, copies in self.answers.items():
            assert len(copies) <= max_copies, f"request {where}: {len(copies)} answers"
            # a publish-window duplicate is the same step re-run: byte-identical value and headers
            assert len({(c.value, tuple(sorted(c.headers.items()))) for c in copies}) == 1, (
                f"request {where}: answers differ: {copies}"
            )
            assert json.loads(copies[0].value or b"null") == [self.requests[where], where[1]]
        for r in self.records:
            done = self.audit.get(r.id, 0)
            assert done >= r.needed, f"{r.id}: {done} batches executed, {r.needed} needed"
            extra = self.extra_batches.get(r.id, 0)
            assert extra <= max_extra_per_record, (
                f"{r.id}: {done} batches executed for {r.needed} needed in {self.attempts.get(r.id)} "
                f"attempt(s) (bound +{max_extra_per_record})"
            )

    def figures(self) -> dict[str, Any]:
        extra = self.extra_batches
        return {
            "records": len(self.records),
            "requests": len(self.requests),
            "answers": sum(len(v) for v in self.answers.values()),
            "lost": len(self.lost),
            "duplicate_answers": self.duplicates,
            "attempts": sum(self.attempts.get(r.id, 0) for r in self.records),
            "re_executed_batches": sum(v for v in extra.values() if v > 0),
            "records_with_re_executed_batch": sum(1 for v in extra.values() if v > 0),
            "batches_needed": sum(r.needed for r in self.records),
            "batches_executed": sum(self.audit.get(r.id, 0) for r in self.records),
        }


def report(scenario: str, **figures: Any) -> dict[str, Any]:
    """Print one `RELIABILITY {json}` line (pytest -s shows it); append it to $RD_RELIABILITY_OUT."""
    line: dict[str, Any] = {"scenario": scenario}
    for key, env in (("label", "RD_RELIABILITY_LABEL"), ("run", "RD_RELIABILITY_RUN")):
        if os.environ.get(env):
            line[key] = os.environ[env]
    line.update(figures)
    text_line = json.dumps(line, sort_keys=False, default=str)
    print(f"\nRELIABILITY {text_line}", flush=True)
    out = os.environ.get("RD_RELIABILITY_OUT")
    if out:
        with Path(out).open("a") as f:
            f.write(text_line + "\n")
    return line
