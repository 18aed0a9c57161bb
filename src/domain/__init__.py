"""Pure domain of record-deleter: model, ports, message formats, the workflow and the hand-off.

Nothing here imports resonate, confluent_kafka, sqlalchemy, dependency_injector or pydantic;
an import-linter contract enforces it.
"""
