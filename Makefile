# pgha-operator: the two commands a new user needs are `make run` and `make test`.
PY := .venv/bin/python
MANIFEST ?= manifests/demo.yaml

.PHONY: setup run test test-unit test-integration test-lab lint bench clean

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/pgha-operator run -f $(MANIFEST)

test: setup
	$(PY) -m pytest tests --durations=40

test-unit: setup
	$(PY) -m pytest tests/unit -q

test-integration: setup
	$(PY) -m pytest tests/integration

test-lab: setup
	$(PY) -m pytest tests/lab

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: setup
	$(PY) bench/bootstrap.py

clean:
	rm -rf .venv .pytest_cache .ruff_cache .hypothesis
