"""Fixtures shared by tests/ and e2e/: a real Kubernetes API server and member processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.integration.kube import cluster_kubeconfig
from tests.support import MemberProcess, start_member_process

ROOT = Path(__file__).resolve().parent
CLUSTER_SUITES = (ROOT / "tests" / "integration", ROOT / "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parents = Path(str(item.fspath)).resolve().parents
        if any(suite in parents for suite in CLUSTER_SUITES):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[str]:
    """Path of a kubeconfig for a live cluster (see tests/integration/kube.py)."""
    with cluster_kubeconfig() as path:
        yield path


@pytest.fixture(scope="session")
def kube_api(kubeconfig: str) -> client.ApiClient:
    """An API client for that cluster."""
    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted afterwards."""
    core = client.CoreV1Api(kube_api)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"servicepool.dev/test": "1"}}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def member_procs() -> Iterator[Callable[..., MemberProcess]]:
    """Factory for member processes on loopback addresses; all are killed afterwards."""
    started: list[MemberProcess] = []

    def start(name: str, host: str = "127.0.0.1", port: int | None = None) -> MemberProcess:
        member = start_member_process(name, port=port, host=host)
        started.append(member)
        return member

    yield start
    for member in started:
        member.kill()
