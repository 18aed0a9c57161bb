#!/usr/bin/env bash
# Does the built wheel work once installed, away from the checkout? (scripts/test.sh runs this.)
#   1. the container image's build step (docker/install-wheel.sh build: pip wheel of the project
#      and its dependencies) from a copy of the tree (git's tracked + untracked-but-not-ignored
#      files), so no build/ or stale build/lib leaks into the wheel or the checkout;
#   2. a fresh venv in a new temp dir outside the checkout, with .venv's interpreter, and the
#      image's install step (docker/install-wheel.sh install: from those wheels, no index), so the
#      Dockerfile's steps run here even without a Docker engine;
#   3. from an empty temp dir, with record-deleter's settings variables (BROKER_*, DATABASE_*,
#      RESONATE_*, WORKFLOW_*, WORKER_*, AUDIT_*, DASHBOARD_*, RECORD_DELETER_CONFIG) and PYTHON* cleared:
#        record_deleter is imported from the venv, not the checkout
#        record-deleter --version                      prints the wheel's version
#        DATABASE_URL=sqlite:///... record-deleter db upgrade   (the migrations ship inside)
#        record-deleter demo --db ...                  exits 0
#        python -m record_deleter --version            prints the wheel's version
#        the dashboard's page (package data) is in the installed package
# One line per step. Building or installing stops at a failure; the checks all run, each failure
# shows its output, and any failure exits 1. Temp dirs are removed on exit (KEEP_WHEEL_TMP=1
# keeps them).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

say() { printf '[wheel] %s\n' "$*" >&2; }

[[ -x .venv/bin/python ]] || scripts/bootstrap.sh

tmp=$(mktemp -d "${TMPDIR:-/tmp}/record-deleter-wheel.XXXXXX")
tmp=$(cd "$tmp" && pwd -P)
cleanup() {
  if [[ "${KEEP_WHEEL_TMP:-}" == 1 ]]; then say "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM   # so cleanup runs
case "$tmp/" in
  "$(cd "$REPO" && pwd -P)"/*) say "FAILED: temp dir $tmp is inside the checkout (set TMPDIR elsewhere)"; exit 1 ;;
esac
mkdir -p "$tmp/src" "$tmp/dist" "$tmp/run" "$tmp/logs"

# step NAME LOG CMD...: run, print one line; on failure print the log's tail and exit 1.
step() {
  local name="$1" log="$2" t0 rc=0 secs
  shift 2
  t0=$EPOCHREALTIME
  "$@" >"$log" 2>&1 </dev/null || rc=$?
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if ((rc != 0)); then
    say "---- output of: $name ----"
    tail -n 40 "$log" | sed 's/^/[wheel] | /' >&2
    say "FAILED: $name (exit $rc, ${secs}s)"
    exit 1
  fi
  STEP_SECS="$secs"
}

# ------------------------------------------------------------------ build
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -xf - -C "$tmp/src"
else
  tar --exclude=./.venv --exclude=./.git --exclude=./build --exclude=./dist --exclude='*.egg-info' \
    --exclude=./.services --exclude=./.demo -cf - . | tar -xf - -C "$tmp/src"
fi
# the container image's build step (docker/install-wheel.sh build): this wheel and its dependencies'
step "docker/install-wheel.sh build (the project's wheel and its dependencies')" "$tmp/logs/build.log" \
  env PYTHON=.venv/bin/python sh docker/install-wheel.sh build "$tmp/src" "$tmp/dist"
wheels=("$tmp"/dist/record_deleter-*.whl)
[[ -f "${wheels[0]}" && ${#wheels[@]} -eq 1 ]] || { say "FAILED: pip wheel made no single record_deleter wheel: $(ls "$tmp/dist")"; exit 1; }
wheel="${wheels[0]}"
version=$(basename "$wheel" | cut -d- -f2)
say "ok  built $(basename "$wheel") (${STEP_SECS}s)"

# ---------------------------------------------------------------- install
py=$(.venv/bin/python -c 'import sys; print(getattr(sys, "_base_executable", "") or sys.executable)')
[[ -x "$py" ]] || { say "FAILED: cannot find .venv's base interpreter (got '$py')"; exit 1; }
step "python -m venv (with $py)" "$tmp/logs/venv.log" "$py" -m venv "$tmp/venv"
# the image's install step (docker/install-wheel.sh install): from those wheels alone, no index
step "docker/install-wheel.sh install into the fresh venv" "$tmp/logs/install.log" \
  env PYTHON="$tmp/venv/bin/python" sh docker/install-wheel.sh install "$tmp/dist"
say "ok  installed into a fresh venv, $("$tmp/venv/bin/python" -V 2>&1) (${STEP_SECS}s)"

# ----------------------------------------------------------------- checks
cd "$tmp/run"
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep -E \
  '^(BROKER|DATABASE|RESONATE|WORKFLOW|WORKER|AUDIT|DASHBOARD)_|^RECORD_DELETER_CONFIG$|^PYTHON(PATH|HOME|STARTUP|USERBASE|SAFEPATH)$' || true)
export PYTHONNOUSERSITE=1
export PATH="$tmp/venv/bin:$PATH"

FAILED=()
# check NAME LOG EXPECT CMD...: run CMD; ok if it exits 0 and (EXPECT non-empty) its output
# contains EXPECT. One line either way; a failure also shows the output's tail. All checks run.
check() {
  local name="$1" log="$2" expect="$3" t0 rc=0 secs why=""
  shift 3
  t0=$EPOCHREALTIME
  "$@" >"$log" 2>&1 </dev/null || rc=$?
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if ((rc != 0)); then
    why="exit $rc"
  elif [[ -n "$expect" ]] && ! grep -qF -- "$expect" "$log"; then
    why="output lacks '$expect'"
  fi
  if [[ -n "$why" ]]; then
    tail -n 20 "$log" | sed 's/^/[wheel] | /' >&2
    say "FAILED  $name: $why (${secs}s)"
    FAILED+=("$name")
  else
    say "ok  $name: $(grep -v '^[[:space:]]*$' "$log" | tail -n1 | cut -c1-120) (${secs}s)"
  fi
}

check "record_deleter imported from the fresh venv" "$tmp/logs/import.log" "$tmp/venv/" \
  python -c 'import record_deleter, record_deleter.migrations as m; print(m.__file__)'
check "record-deleter --version" "$tmp/logs/version.log" "$version" record-deleter --version
check "DATABASE_URL=sqlite:///\$tmp/x.db record-deleter db upgrade" "$tmp/logs/db.log" "" \
  env DATABASE_URL="sqlite:///$tmp/x.db" record-deleter db upgrade
check "record-deleter demo --db \$tmp/demo.db" "$tmp/logs/demo.log" "" \
  timeout 600 record-deleter demo --db "$tmp/demo.db"
check "python -m record_deleter --version" "$tmp/logs/module.log" "$version" python -m record_deleter --version
check "the dashboard's page ships in the wheel" "$tmp/logs/dashboard.log" "dashboard files ok" \
  python -c 'from record_deleter.adapters.dashboard_http import STATIC, static_file
for name, _ in STATIC.values(): assert static_file(name), name
print("dashboard files ok")'

if ((${#FAILED[@]})); then
  failed=$(printf '%s; ' "${FAILED[@]}")
  say "FAILED: the installed wheel $(basename "$wheel"): ${#FAILED[@]} check(s) failed: ${failed%; }"
  exit 1
fi
say "ok  the installed wheel $(basename "$wheel") passed every check"
