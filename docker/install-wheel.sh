#!/bin/sh
# The container image's two pip steps (see ../Dockerfile). scripts/check_wheel.sh (part of
# `make test`) runs the same two steps in a fresh virtual environment, so they cannot rot on
# machines without a Docker engine.
#   PYTHON=python docker/install-wheel.sh build SRC WHEELS   the project's wheel and every
#                                                            dependency's wheel, into WHEELS
#   PYTHON=python docker/install-wheel.sh install WHEELS     record-deleter from WHEELS alone
#                                                            (no package index: the set is whole)
set -eu
python=${PYTHON:-python}
case "${1:-}" in
  build) exec "$python" -m pip wheel --disable-pip-version-check --wheel-dir "$3" "$2" ;;
  install) exec "$python" -m pip install --disable-pip-version-check --no-index --find-links "$2" record-deleter ;;
  *) echo "usage: $0 build SRC WHEELS | install WHEELS" >&2; exit 2 ;;
esac
