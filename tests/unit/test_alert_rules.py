"""The Prometheus alert rules shipped in deploy/prometheus: well-formed rule groups, expressions
that parse as PromQL, and only metrics the worker exports (or Prometheus itself provides).

(`promtool check rules` is the reference check; Prometheus's binaries cannot be had on the machines
this suite runs on, so the same properties are checked here.)"""

from __future__ import annotations

import re
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from record_deleter.adapters.observability import PrometheusEvents

pytestmark = pytest.mark.unit

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "record-deleter-alerts.yml"
FROM_PROMETHEUS = {"up", "probe_success"}  # scrape health and the blackbox exporter's probe
RULE_KEYS = {"alert", "expr", "for", "labels", "annotations"}


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def exported_series() -> set[str]:
    events = PrometheusEvents()
    from prometheus_client import generate_latest

    names = set()
    for family in text_string_to_metric_families(generate_latest(events.registry).decode()):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    # counters and histograms are exposed with these suffixes once observed
    return names | {f"{n}_total" for n in names} | {f"{n}_bucket" for n in names}


def test_the_rules_file_is_well_formed() -> None:
    doc = yaml.safe_load(RULES.read_text())
    assert [g["name"] for g in doc["groups"]] == ["record-deleter"]
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in rules():
        assert set(rule) <= RULE_KEYS, rule["alert"]
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert {"summary", "description"} <= set(rule["annotations"])
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_each_expression_parses_and_names_only_metrics_that_exist(rule: dict) -> None:
    promql_parser.parse(rule["expr"])  # raises on a syntax error
    metrics = set(
        re.findall(
            r"\b(record_deleter_[a-z_]+|up|probe_success)\b(?=\s*[{\[)]|\s*(?:==|>|<|$))", rule["expr"]
        )
    )
    assert metrics, f"{rule['alert']}: no metric found in {rule['expr']!r}"
    unknown = {m for m in metrics if m not in FROM_PROMETHEUS and m not in exported_series()}
    assert not unknown, f"{rule['alert']} uses metrics the worker does not export: {unknown}"


def test_the_rules_cover_what_operators_page_on() -> None:
    """Records failed, the oldest record in flight, hand-off lag, a worker not ready or gone."""
    used = " ".join(r["expr"] for r in rules())
    for metric in (
        "record_deleter_attempts_failed_total",
        "record_deleter_oldest_in_flight_seconds",
        "record_deleter_consumer_lag_messages",
        "probe_success",
        "up",
    ):
        assert metric in used, metric


def test_a_syntax_error_is_caught() -> None:
    with pytest.raises(Exception):  # noqa: B017 - the parser's own error type
        promql_parser.parse("rate(record_deleter_store_errors_total[10m] > 0")
