#!/usr/bin/env bash
# The whole test suite, as CI and the README run it:
#   1. the Python environment (.venv), 2. lint, format, types and the layer contract,
#   3. Kafka, the Resonate server and PostgreSQL on 127.0.0.1 (unless given from outside:
#      KAFKA_BOOTSTRAP_SERVERS, RESONATE_URL + RESONATE_MESSAGE_SOURCE_PORT, DATABASE_URL_POSTGRES),
#   4. pytest over every tier (unit, contract, integration, system); 5. services stopped.
# Extra arguments go to pytest (e.g. scripts/test.sh -k kafka).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

scripts/bootstrap.sh

echo "== lint, format, types, layers" >&2
.venv/bin/ruff check src tests benchmarks migrations
.venv/bin/ruff format --check src tests benchmarks migrations
.venv/bin/mypy
.venv/bin/lint-imports

echo "== services" >&2
trap 'scripts/services.sh down >&2 || true' EXIT
scripts/services.sh up
# shellcheck disable=SC1091
source .services/env

echo "== pytest" >&2
# Everything, the short random-SIGKILL soak included (about 80 s). A longer soak:
# RD_SOAK_SECONDS=600 scripts/test.sh -m soak
.venv/bin/python -m pytest "$@"
echo "== whole suite took $(( $(date +%s) - started ))s" >&2
