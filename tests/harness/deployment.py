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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from record_deleter.domain.messages import encode_request
from record_deleter.domain.model import RecordId

from . import database
from .endpoints import kafka_bootstrap, postgres_url, resonate_endpoint, unique
from .kafka import Read, TopicReader, Topics, committed_lag, produce
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

    def produce(
        self, values: Sequence[bytes | None], *, partition: int | None = None, keys: bool = True
    ) -> list[tuple[int, int]]:
        """Produce raw request values; returns (partition, offset) of each, in order."""
        key_of = [str(i).encode() if keys and v is not None else None for i, v in enumerate(values)]
        return produce(self.bootstrap, self.request_topic, values, keys=key_of, partition=partition)

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
    """What a run left behind, checked against what it was asked to do."""

    records: list[Record]
    completions: dict[str, list[Read]]
    audit: dict[str, int]
    rows_left: int

    @classmethod
    def collect(cls, dep: Deployment, records: Sequence[Record], reader: TopicReader) -> Outcome:
        by_id: dict[str, list[Read]] = defaultdict(list)
        for m in reader.poll(1.0):
            by_id[json.loads(m.value or b"null")[0]].append(m)
        return cls(list(records), dict(by_id), dep.audit(), dep.rows_left())

    @property
    def lost(self) -> list[str]:
        return [r.id for r in self.records if r.id not in self.completions]

    @property
    def unexpected(self) -> list[str]:
        wanted = {r.id for r in self.records}
        return [k for k in self.completions if k not in wanted]

    @property
    def duplicates(self) -> int:
        return sum(len(v) - 1 for v in self.completions.values() if v)

    @property
    def extra_batches(self) -> dict[str, int]:
        """record -> batches executed beyond the number needed (re-executed after a crash)."""
        out = {}
        for r in self.records:
            extra = self.audit.get(r.id, 0) - r.needed
            if extra:
                out[r.id] = extra
        return out

    def check(self, *, max_extra_per_record: int = 1, max_copies: int = 2) -> None:
        """Every record done, nothing lost, duplicates only as identical re-publishes."""
        assert not self.lost, f"{len(self.lost)} record(s) without a completion: {self.lost[:10]}"
        assert not self.unexpected, f"completions for records never requested: {self.unexpected[:10]}"
        assert self.rows_left == 0, f"{self.rows_left} rows left in the database"
        for record_id, copies in self.completions.items():
            assert len(copies) <= max_copies, f"{record_id}: {len(copies)} completions"
            keys = {c.headers.get("idempotency-key") for c in copies}
            assert keys == {record_id.encode()}, f"{record_id}: idempotency keys {keys}"
            # a publish-window duplicate is the same step re-run: byte-identical value and headers
            assert len({(c.value, tuple(sorted(c.headers.items()))) for c in copies}) == 1, (
                f"{record_id}: completions differ: {copies}"
            )
        for r in self.records:
            done = self.audit.get(r.id, 0)
            assert done >= r.needed, f"{r.id}: {done} batches executed, {r.needed} needed"
            assert done <= r.needed + max_extra_per_record, (
                f"{r.id}: {done} batches executed for {r.needed} needed (bound +{max_extra_per_record})"
            )

    def figures(self) -> dict[str, Any]:
        extra = self.extra_batches
        return {
            "records": len(self.records),
            "lost": len(self.lost),
            "duplicate_completions": self.duplicates,
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
