"""Moved to `tests/harness/` (import from `tests.harness`); kept while a module still imports it
(tests/contract/test_broker_contract.py)."""

from tests.harness import ROOT, create_topics, kafka_bootstrap, read_topic

__all__ = ["ROOT", "create_topics", "kafka_bootstrap", "read_topic"]
