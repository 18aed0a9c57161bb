"""A worker that dies in the publish window (`python -m tests.system.fault_worker`; test-only).

It is the real `record-deleter worker` (same settings, logging, composition root and run loop)
with one change: the completion publisher is wrapped so that right after a completion was confirmed by the
broker the process SIGKILLs itself - the publish happened, its checkpoint (the resolved step
promise) did not. The worker that takes the workflow over must re-run only `publish_completion`.
"""

from __future__ import annotations

import os
import signal
import sys

from dependency_injector import providers

from record_deleter.domain.evidence import Delivery
from record_deleter.domain.model import Answer
from record_deleter.domain.ports import CompletionPublisher
from record_deleter.entrypoints.bootstrap import bootstrap
from record_deleter.entrypoints.cli import configure_logging
from record_deleter.entrypoints.containers import WorkerContainer
from record_deleter.entrypoints.settings import load_settings
from record_deleter.entrypoints.worker import run_worker


class DieAfterPublish(CompletionPublisher):
    """Delegates to the real publisher, then ends the process before the step is checkpointed."""

    def __init__(self, delegate: CompletionPublisher) -> None:
        self._delegate = delegate

    def publish(self, answer: Answer) -> Delivery:
        delivery = self._delegate.publish(answer)
        if answer.deleted:
            print(
                f"fault_worker: published {answer.record_id.value}, now SIGKILL", file=sys.stderr, flush=True
            )
            os.kill(os.getpid(), signal.SIGKILL)
        return delivery


def main() -> int:
    settings = load_settings()
    configure_logging(settings)
    container = bootstrap(WorkerContainer, settings)
    container.completion_publisher.override(
        providers.Object(DieAfterPublish(container.completion_publisher()))
    )
    return run_worker(container)


if __name__ == "__main__":
    sys.exit(main())
