#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv in .venv with a Python >= 3.12.
# Looks for an interpreter in: $PYTHON, python3.13/python3.12/python3 on PATH, pyenv's versions,
# /usr/local/bin and /usr/bin. Re-installs only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python() {
  local c
  for c in "${PYTHON:-}" python3.13 python3.12 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && ok "$c"; then command -v "$c"; return 0; fi
  done
  local roots=()
  command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root 2>/dev/null)/versions")
  roots+=("$HOME/.pyenv/versions")
  for r in "${roots[@]}"; do
    for c in $(ls -d "$r"/3.1[3-9]*/bin/python3 "$r"/3.12*/bin/python3 2>/dev/null | sort -rV); do
      if ok "$c"; then echo "$c"; return 0; fi
    done
  done
  for c in /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    [ -x "$c" ] && ok "$c" && { echo "$c"; return 0; }
  done
  return 1
}

if [ -x .venv/bin/python ] && ok .venv/bin/python; then
  :
else
  if ! py=$(find_python); then
    echo "record-deleter needs Python >= 3.12 (resonate-sdk requires it) and none was found." >&2
    echo "Install one, e.g. 'pyenv install 3.12', 'apt install python3.12' or 'brew install python@3.12'," >&2
    echo "or point PYTHON=/path/to/python3.12 at it, then re-run." >&2
    exit 1
  fi
  echo "creating .venv with $py ($("$py" -V 2>&1))" >&2
  rm -rf .venv
  "$py" -m venv .venv
fi

# Re-install when pyproject.toml (dependencies, entry points, package layout) changed. The
# install's output (setuptools' deprecation warnings and all) goes to .venv/install.log and is
# shown only when the install fails.
stamp=.venv/.installed
log=.venv/install.log
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing record-deleter and its dependencies into .venv (log: $log)" >&2
  rm -f "$stamp"
  if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip \
         && .venv/bin/python -m pip install --disable-pip-version-check -e '.[dev]'; } >"$log" 2>&1 </dev/null; then
    echo "---- $log ----" >&2
    cat "$log" >&2
    echo "FAILED: installing record-deleter into .venv (output above, also in $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
