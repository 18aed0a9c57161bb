"""The dashboard in a real browser, watching a real worker delete a big record.

A worker (Kafka, the Resonate server, PostgreSQL) deletes one 20,000-row record slowly (small
batches, a pause between them) and a few small ones; `record-deleter dashboard` runs as its own
process and headless Chromium (Debian's `chromium`, which `scripts/services.sh up` installs,
driven by Playwright) shows: the big record in flight, its rows left falling between two
observations, then the record among the answers; and the search box shows its history.

RD_DASHBOARD_SCREENSHOT=PATH saves the page mid-deletion (the README's docs/dashboard.png).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import delete, func, insert

from record_deleter.adapters.sql_schema import deletion_attempts
from tests import builders
from tests.conftest import wait_for
from tests.harness import (
    Process,
    free_port,
    postgres_url,
    run_cli,
    scratch_database,
    unique,
    worker_env,
    worker_process,
)
from tests.harness.database import seed

pytestmark = pytest.mark.system

BIG_ROWS = 20_000
SMALL_ROWS = [300, 800, 1500, 2500]
BATCH = 1000
EVIL = '<img src=x onerror="window.pwned = 1">'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium is not installed: `scripts/services.sh up` installs it (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()


def number(text: str | None) -> int | None:
    digits = re.sub(r"[^0-9]", "", text or "")
    return int(digits) if digits else None


def rows_left(page: Page, record_id: str) -> int | None:
    cell = page.locator(f'#in-flight tr[data-record="{record_id}"] .rows-left')
    return number(cell.text_content(timeout=1000)) if cell.count() else None


def test_the_dashboard_follows_a_big_record_from_in_flight_to_answered(
    browser: Browser, tmp_path: Path
) -> None:
    prefix = unique("dash") + "-"
    big = f"{prefix}000001"
    with scratch_database("postgres", postgres_url()) as db_url:
        metrics_port = free_port()
        env = worker_env(
            db_url,
            BROKER_PARTITIONS="2",
            BROKER_REQUEST_TOPIC=unique("req"),
            BROKER_COMPLETION_TOPIC=unique("done"),
            BROKER_FAILURE_TOPIC=unique("failed"),
            BROKER_DEAD_LETTER_TOPIC=unique("dlq"),
            # slow enough to watch: 20 batches of 1,000 rows, a durable pause between them
            WORKFLOW_BATCH_SIZE=str(BATCH),
            WORKFLOW_PAUSE_SECONDS="0.2",
            WORKER_METRICS_PORT=str(metrics_port),
            DASHBOARD_PORT=str(free_port()),
            DASHBOARD_REFRESH_SECONDS="0.5",
            DASHBOARD_COUNT_CACHE_SECONDS="0.5",
            DASHBOARD_WORKER_URLS=f"http://127.0.0.1:{metrics_port}",
        )
        engine = builders.engine(db_url)
        try:
            records = {big: BIG_ROWS} | {f"{prefix}{i + 2:06d}": n for i, n in enumerate(SMALL_ROWS)}
            seed(engine, records)
            with engine.begin() as conn:  # an earlier failure whose reason is markup: shown as text
                conn.execute(
                    insert(deletion_attempts).values(
                        record_id=f"{prefix}evil",
                        attempt=1,
                        state="failed",
                        finished_at=func.now(),
                        reason=EVIL,
                        opened_by="by-hand",
                    )
                )
        finally:
            engine.dispose()
        run_cli("setup-topics", env=env)
        dashboard = Process(("-m", "record_deleter", "dashboard"), env, tmp_path / "dashboard.log")
        try:
            address = wait_for(
                lambda: (
                    re.search(r"dashboard on (http://\S+)", dashboard.text()) or dashboard.poll() is not None
                ),
                timeout=30,
                message="the dashboard's address on its stderr",
            )
            assert dashboard.alive(), dashboard.tail()
            url = address.group(1)  # type: ignore[union-attr]
            with worker_process(env, tmp_path / "worker.log") as worker:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.wait_for_selector("#status:has-text('updated')", timeout=15_000)
                evil = page.locator(f'#answers tr[data-record="{prefix}evil"] .reason')
                assert evil.text_content() == EVIL
                assert page.locator("img").count() == 0
                assert page.evaluate("window.pwned") is None
                _forget(db_url, f"{prefix}evil")  # shown as text: the rest of the run is real records
                page.wait_for_selector(f'#answers tr[data-record="{prefix}evil"]', state="detached")
                run_cli("produce", "-n", str(len(records)), "--prefix", prefix, env=env)
                _watch(page, big, len(records), worker)
                page.close()
        finally:
            dashboard.stop()
    assert dashboard.returncode == 0, dashboard.tail()


def _forget(db_url: str, record_id: str) -> None:
    engine = builders.engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(delete(deletion_attempts).where(deletion_attempts.c.record_id == record_id))
    finally:
        engine.dispose()


def _watch(page: Page, big: str, count: int, worker: Process) -> None:
    page.wait_for_selector(f'#in-flight tr[data-record="{big}"]', timeout=60_000)
    first = wait_for(lambda: rows_left(page, big), timeout=30, message="the big record's rows left")
    assert 0 < first <= BIG_ROWS + 1
    wait_for(
        lambda: (n := rows_left(page, big)) is not None and n < first,
        timeout=30,
        message=f"the big record's rows left to fall below {first}",
    )
    row = page.locator(f'#in-flight tr[data-record="{big}"]')
    assert row.get_attribute("data-status") in ("running", "waiting")
    deleted = number(row.locator(".rows-deleted").text_content())
    assert deleted is not None
    assert deleted > 0
    # the worker's status endpoint, and the Resonate server's pending requests, read through the dashboard
    page.wait_for_selector("#workers-section:not([hidden]) #workers td:has-text('ready')", timeout=15_000)
    page.wait_for_selector("#not-joined-section:not([hidden]) #not-joined-note:has-text('(')", timeout=15_000)
    assert page.locator("#not-joined-error").is_hidden()
    screenshot = os.environ.get("RD_DASHBOARD_SCREENSHOT")
    if screenshot:
        wait_for(
            lambda: (
                page.locator("#answers tbody tr").count() >= 3  # three small ones
                and (n := rows_left(page, big)) is not None
                and n < BIG_ROWS * 0.6
            ),
            timeout=60,
            message="a few small records answered while the big one is about half way",
        )
        page.wait_for_timeout(600)  # one more refresh: the chart and counters of that moment
        page.screenshot(path=screenshot, full_page=True)
    page.wait_for_selector(f'#answers tr[data-record="{big}"][data-outcome="done"]', timeout=120_000)
    assert page.locator(f'#in-flight tr[data-record="{big}"]').count() == 0
    wait_for(lambda: page.locator("#answers tbody tr").count() == count, timeout=30, message="every answer")
    assert worker.alive(), worker.tail()

    page.fill("#search-input", big)
    page.click("#search button")
    page.wait_for_selector("#history h3:has-text('Batches')", timeout=15_000)
    history = page.locator("#history")
    assert "Requests (1)" in (history.text_content() or "")
    assert "Attempts (1)" in (history.text_content() or "")
    # the chain the worker wrote, verified as `record-deleter evidence` does
    assert "audit chain intact" in (history.text_content() or "")
    assert "Answers (1)" in (history.text_content() or "")
    batches = number(page.locator("#history h3:has-text('Batches')").text_content())
    assert batches is not None
    assert batches >= BIG_ROWS // BATCH
