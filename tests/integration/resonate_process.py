"""A worker process for the Resonate integration tests (`python -m tests.integration.resonate_process`).

start  RECORD: hand off one request for the record and keep running (the test SIGKILLs this process)
watch  RECORD: like start, but exit 3 as soon as the runtime reports itself unhealthy
resume RECORD: join the same group, let the server hand the orphaned workflows over, print the result
"""

from __future__ import annotations

import json
import sys
import time

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.domain.model import InboundMessage, RecordId
from tests import builders


def main() -> int:
    mode, record, db_url, url, poll_port, group, pause = sys.argv[1:8]
    retries = int(sys.argv[8]) if len(sys.argv) > 8 else 30
    batch_size = int(sys.argv[9]) if len(sys.argv) > 9 else 10
    host, _, port = url.rpartition(":")
    broker = InMemoryBroker()
    broker.create_topic("done")
    broker.create_topic("failed")
    runtime = builders.runtime(
        builders.resonate(
            "remote",
            host=host,
            store_port=port,
            message_source_port=poll_port,
            group=group,
            ttl=2,
            request_retries=retries,
        ),
        builders.sql_store(db_url),
        builders.publisher(broker, "done", "failed"),
        params=builders.workflow_params(batch_size=batch_size, pause_seconds=float(pause)),
        retry=builders.step_retry(delay=0.1),
        namespace=group,
        target=group,
    )
    runtime.start_runtime()
    message = InboundMessage("requests", 0, 0, json.dumps(record).encode(), record.encode(), (), 1)
    if mode in ("start", "watch"):
        runtime.start(RecordId(record), message)
        print("started", flush=True)
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            if mode == "watch" and not runtime.healthy():
                print("unhealthy", flush=True)
                return 3
            time.sleep(0.1)
        return 0
    result = runtime.wait(runtime.request_key(message), timeout=90)
    completions = [m.value.decode() for _, m in broker.messages("done") if m.value]
    print(json.dumps({"result": result, "completions": completions}), flush=True)
    runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
