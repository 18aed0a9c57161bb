"""One log stream: with WORKER_LOG_FORMAT=json every line on stderr — the project's events,
librdkafka's lines (through the clients' `logger`) and the Resonate SDK's — is one JSON object
with time, level and logger; a line that repeats (a broker that stays down) is rate-limited."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.harness import free_port

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent(
    """
    import logging, time
    from record_deleter.adapters.kafka import KafkaClientConfig, KafkaRequestSource
    from record_deleter.adapters.observability import LoggingEvents
    from record_deleter.adapters.resonate_sdk_patches import SharedContextLogger, share_context_loggers
    from record_deleter.entrypoints.cli import configure_logging
    from record_deleter.entrypoints.settings import load_settings

    configure_logging(load_settings())
    share_context_loggers(logging.WARNING)
    LoggingEvents(json_lines=True).emit("handed_off", record_id="r-1", partition=0, offset=7)
    SharedContextLogger("wf", "wf.1").warning("step failed (retrying in 1s)")
    source = KafkaRequestSource(
        KafkaClientConfig(bootstrap_servers="127.0.0.1:{port}"), "requests", "g",
        unavailable_after=60, session_timeout=10, group_protocol="classic",
    )
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        source.poll(0.2)
    print("done", flush=True)
    """
)


def run(fmt: str) -> tuple[list[str], str]:
    env = {"WORKER_LOG_FORMAT": fmt, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(port=free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stderr.splitlines(), result.stdout


def test_with_json_every_stderr_line_is_one_json_object_with_time_level_and_logger() -> None:
    lines, out = run("json")
    assert out.strip() == "done"
    objects = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert objects, "nothing was logged"
    for obj in objects:
        assert {"time", "level", "logger", "message"} <= obj.keys(), obj
    [event] = [o for o in objects if o.get("event") == "handed_off"]
    assert (event["record_id"], event["offset"], event["logger"]) == ("r-1", 7, "record_deleter.events")
    [step] = [o for o in objects if o["logger"] == "resonate.context"]
    assert (step["cid"], step["id"], step["level"]) == ("wf", "wf.1", "WARNING")
    kafka = [o for o in objects if o["logger"] == "librdkafka"]
    assert kafka, "librdkafka's connection errors did not come through logging"


def test_a_line_that_repeats_is_written_once_per_window() -> None:
    lines, _ = run("json")
    kafka = [json.loads(line)["message"] for line in lines if '"librdkafka"' in line]
    assert len(kafka) == len(set(kafka)), f"librdkafka repeated itself within the window: {kafka}"


def test_text_stays_the_default_format() -> None:
    lines, _ = run("text")
    assert lines
    assert not any(line.startswith("{") for line in lines)
    assert any(" librdkafka " in line for line in lines)
