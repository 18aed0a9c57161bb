#!/usr/bin/env bash
# The benchmark suite, one command (`make bench` runs it):
#   scripts/bench.sh [--full] [--only SECTIONS] [--subjects worker,naive] [-n N] [...]
#   scripts/bench.sh --only growth --growth-sizes 1000,10000,100000   # the growth section alone
#   scripts/bench.sh --prepare        # only step 1: the virtual environments
#
# 1. .venv (scripts/bootstrap.sh) and the benchmark-only profiler py-spy in it (if missing), and
#    .venv-bench-dbos, the benchmark-only virtual environment (same Python as .venv): the DBOS
#    subject (dbos pinned below, confluent-kafka/SQLAlchemy/psycopg at .venv's versions) and
#    matplotlib for the growth section's plot, so neither touches the worker's environment; made
#    again when a pin changes;
# 2. Kafka, the Resonate server and PostgreSQL via scripts/services.sh in this run's own state
#    dir (RECORD_DELETER_SERVICES_DIR, default a new temp dir), unless all four endpoints are
#    given: BROKER_BOOTSTRAP_SERVERS, RESONATE_URL + RESONATE_MESSAGE_SOURCE_PORT,
#    DATABASE_URL (then nothing is started or stopped);
# 3. python -m benchmarks.run "$@" -> benchmarks/results.json, BENCHMARKS.md, benchmarks/growth.png;
# 4. the services it started are stopped again (also on failure or Ctrl-C).
# Quick mode takes about 15 minutes on 2 cores (--smoke ~3, --full an hour or more). See benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
cmdline="scripts/bench.sh${*:+ $*}"

[[ -x .venv/bin/python ]] || scripts/bootstrap.sh
if [[ ! -x .venv/bin/py-spy ]]; then
  echo "[bench] installing py-spy into .venv (benchmark-only sampling profiler)" >&2
  .venv/bin/python -m pip install -q py-spy >&2 || echo "[bench] py-spy unavailable: the sampling profile is skipped" >&2
fi

# The DBOS subject (benchmarks/dbos_worker.py). 3.4.0: the release the subject was written and
# checked against. matplotlib: benchmarks/plot.py draws benchmarks/growth.png with it (run by
# benchmarks.report through this environment's python). pip's own cache keeps the downloads.
DBOS_VERSION=3.4.0
MATPLOTLIB_VERSION=3.11.2
dbos_venv=.venv-bench-dbos
dbos_pins="dbos==$DBOS_VERSION matplotlib==$MATPLOTLIB_VERSION $(.venv/bin/python -c '
from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in ("confluent-kafka", "SQLAlchemy", "psycopg", "psycopg-binary")))')"
if [[ "$(cat "$dbos_venv/pins" 2>/dev/null)" != "$dbos_pins" ]]; then
  echo "[bench] making $dbos_venv (DBOS subject, growth plot): $dbos_pins" >&2
  rm -rf "$dbos_venv"
  # shellcheck disable=SC2086  # the pins are words
  if .venv/bin/python -m venv "$dbos_venv" && "$dbos_venv/bin/python" -m pip install -q $dbos_pins >&2; then
    echo "$dbos_pins" >"$dbos_venv/pins"
  else
    rm -rf "$dbos_venv"
    echo "[bench] $dbos_venv could not be made: the DBOS subject's runs and the growth plot will fail" >&2
  fi
fi
if [[ "${1:-}" == "--prepare" ]]; then
  exit 0
fi

if [[ -n "${BROKER_BOOTSTRAP_SERVERS:-}" && -n "${RESONATE_URL:-}" && -n "${RESONATE_MESSAGE_SOURCE_PORT:-}" \
      && -n "${DATABASE_URL:-}" && -z "${RECORD_DELETER_SERVICES_OWNED:-}" ]]; then
  echo "[bench] using the given services: kafka $BROKER_BOOTSTRAP_SERVERS, resonate $RESONATE_URL" >&2
else
  export RECORD_DELETER_SERVICES_DIR="${RECORD_DELETER_SERVICES_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/rd-bench-services.XXXXXX")}"
  # variables from another services env (e.g. a sourced .services/env) are not ours to reuse
  if [[ -n "${RECORD_DELETER_SERVICES_OWNED:-}" ]]; then
    unset BROKER_BOOTSTRAP_SERVERS RESONATE_URL RESONATE_MESSAGE_SOURCE_PORT DATABASE_URL \
      RECORD_DELETER_SERVICES_OWNED
  fi
  trap 'scripts/services.sh down >&2 || true' EXIT
  scripts/services.sh up >&2
  # shellcheck disable=SC1091
  source "$RECORD_DELETER_SERVICES_DIR/env"
  if [[ -f "$RECORD_DELETER_SERVICES_DIR/kafka.state" ]]; then
    BENCH_KAFKA_VERSION=$(sed -n 's/^KAFKA_VERSION_RESOLVED=//p' "$RECORD_DELETER_SERVICES_DIR/kafka.state")
    export BENCH_KAFKA_VERSION
  fi
fi
if [[ -n "${SERVICES_RESONATE_BIN:-}" ]]; then
  BENCH_RESONATE_VERSION=$(basename "$SERVICES_RESONATE_BIN" | sed 's/^resonate-//')
  export BENCH_RESONATE_VERSION
fi

.venv/bin/python -m benchmarks.run --command "$cmdline" "$@"
echo "[bench] finished in $(( $(date +%s) - started ))s (services included)" >&2
