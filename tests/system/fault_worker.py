"""A worker that dies in the publish window (`python -m tests.system.fault_worker`; test-only).

It is the real `record-deleter worker` (same CLI, settings, container and run loop) with one
change: the completion publisher is wrapped so that right after a completion was confirmed by the
broker the process SIGKILLs itself - the publish happened, its checkpoint (the resolved step
promise) did not. The worker that takes the workflow over must re-run only `publish_completion`.
"""

from __future__ import annotations

import os
import signal
import sys

from dependency_injector import containers, providers

from record_deleter.domain.model import Completion, DeletionFailed
from record_deleter.domain.ports import CompletionPublisher
from record_deleter.entrypoints.cli import main
from record_deleter.entrypoints.containers import WorkerContainer


class DieAfterPublish(CompletionPublisher):
    """Delegates to the real publisher, then ends the process before the step is checkpointed."""

    def __init__(self, delegate: CompletionPublisher) -> None:
        self._delegate = delegate

    def publish(self, completion: Completion) -> None:
        self._delegate.publish(completion)
        print(
            f"fault_worker: published {completion.record_id.value}, now SIGKILL", file=sys.stderr, flush=True
        )
        os.kill(os.getpid(), signal.SIGKILL)

    def publish_failure(self, failure: DeletionFailed) -> None:
        self._delegate.publish_failure(failure)


def faulty_container() -> containers.Container:
    container = WorkerContainer()
    adapters = container.adapters
    # wrap the Kafka publisher the selector would have chosen (the selector itself is overridden)
    adapters.completion_publisher.override(providers.Singleton(DieAfterPublish, adapters._kafka_publisher))
    return container


if __name__ == "__main__":
    entrypoints.worker.WorkerContainer = faulty_container  # type: ignore[misc,assignment]
    sys.exit(main(["worker"]))
