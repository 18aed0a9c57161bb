"""record-deleter: a Kafka-to-Kafka worker that turns each deletion request into a durable workflow.

One import package, laid out in layers (an import-linter contract keeps them apart):
`domain` (pure: model, ports, the workflow, the hand-off) < `adapters` (one technology per
module) < `entrypoints` (settings, the composition root, the CLI). The Alembic migrations ship
inside it as `record_deleter.migrations`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("record-deleter")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"
