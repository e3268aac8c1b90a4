# servicepool developer entry points. `make demo` and `make test` are the quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv demo test test-unit test-proxy test-integration lint format crd docs bench bench-quick cluster-up cluster-down clean

$(BIN)/servicepool-proxy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/servicepool-proxy

## A real pool: three member processes, the proxy, traffic, a failure and a kill.
demo: venv
	$(BIN)/python -m servicepool_proxy.demo

## Everything CI runs: lint, then the whole test suite (integration tests bring up a
## local Kubernetes control plane unless KUBECONFIG points at a cluster).
test: venv lint
	$(BIN)/pytest -q

test-unit: venv
	$(BIN)/pytest -q tests/unit

test-proxy: venv
	$(BIN)/pytest -q tests/proxy

test-integration: venv
	$(BIN)/pytest -q -m integration

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Regenerate the CRD from the pydantic model (a unit test fails when it is stale).
crd: venv
	$(BIN)/python -m servicepool_operator.crd > crds/servicepool.dev_servicepools.yaml
	cp crds/servicepool.dev_servicepools.yaml charts/servicepool/crds/

## Regenerate the field reference in README.md from the model.
docs: venv
	$(BIN)/python -m servicepool_operator.fieldref --write README.md

## Benchmarks against direct, nginx and HAProxy (not part of `make test`).
bench: venv
	e2e/cluster/install-deps.sh
	$(BIN)/pip install --quiet matplotlib
	$(BIN)/python bench/capacity_queueing.py
	$(BIN)/python bench/run.py

bench-quick: venv
	e2e/cluster/install-deps.sh
	$(BIN)/pip install --quiet matplotlib
	$(BIN)/python bench/run.py --quick

cluster-up:
	e2e/cluster/up.sh .cluster

cluster-down:
	e2e/cluster/down.sh .cluster

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
