#!/usr/bin/env bash
# The whole test suite, as CI and the README run it:
#   1. the Python environment (.venv), 2. lint, format, types and the layer contract,
#   3. the built wheel, installed into a fresh venv outside the checkout (scripts/check_wheel.sh),
#   4. Kafka, the Resonate server and PostgreSQL on 127.0.0.1 via scripts/services.sh (unless
#      given from outside, under the names record-deleter reads: BROKER_BOOTSTRAP_SERVERS,
#      RESONATE_URL + RESONATE_MESSAGE_SOURCE_PORT, DATABASE_URL (postgresql+psycopg://...)),
#   5. pytest over every tier (unit, contract, integration, system); 6. services stopped.
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

echo "== installed wheel" >&2
scripts/check_wheel.sh

echo "== services" >&2
trap 'scripts/services.sh down >&2 || true' EXIT
scripts/services.sh up
# shellcheck disable=SC1091
source "${RECORD_DELETER_SERVICES_DIR:-.services}/env"

echo "== pytest" >&2
# Everything, the short random-SIGKILL soak included (about 80 s). A longer soak:
# RD_SOAK_SECONDS=600 scripts/test.sh -m soak
.venv/bin/python -m pytest "$@"
echo "== whole suite took $(( $(date +%s) - started ))s" >&2
