# Two commands matter (see README "Quick start"):
#   make demo   - the worker end to end on embedded defaults (no services to install)
#   make test   - the whole suite: lint, types, layers, unit, integration, system
#                 (provisions Kafka, the Resonate server and PostgreSQL on 127.0.0.1)
.PHONY: demo test venv lint unit check-wheel services-up services-down bench clean

venv:
	@scripts/bootstrap.sh

demo: venv
	@.venv/bin/record-deleter demo

lint: venv
	.venv/bin/ruff check src tests benchmarks migrations
	.venv/bin/ruff format --check src tests benchmarks migrations
	.venv/bin/mypy
	.venv/bin/lint-imports

unit: venv
	.venv/bin/python -m pytest -m unit -q

test:
	@scripts/test.sh

# the built wheel in a fresh venv outside the checkout: --version, db upgrade, demo (part of `make test`)
check-wheel: venv
	@scripts/check_wheel.sh

services-up:
	@scripts/services.sh up

services-down:
	@scripts/services.sh down

bench: venv
	@scripts/bench.sh

clean:
	rm -rf .venv .demo .services .pytest_cache .mypy_cache .ruff_cache .import_linter_cache build dist *.egg-info
