"""Proof that the test cluster is a real one: CRDs, status subresource, watch, GC, controllers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from ..support import eventually
from .kube import CLUSTER_SCRIPTS, start_cluster, stop_cluster

GROUP, VERSION, PLURAL = "harness.servicepool.dev", "v1", "widgets"


@pytest.fixture(scope="module")
def widget_crd(kube_api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(kube_api)
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                }}},
            }],
        },
    }  # fmt: skip
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        return any(c.type == "Established" and c.status == "True"
                   for c in (crd.status.conditions or []))  # fmt: skip

    assert eventually(established, 20)


def test_custom_object_status_watch_and_garbage_collection(
    kube_api: client.ApiClient, namespace: str, widget_crd: None
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    core = client.CoreV1Api(kube_api)
    stream = watch.Watch()
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 1},
    })  # fmt: skip
    uid = created["metadata"]["uid"]

    # Status goes through the subresource only; spec patches do not touch it and vice versa.
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "w", {"status": {"phase": "Ready"}, "spec": {"size": 9}}
    )
    widget = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    assert widget["status"] == {"phase": "Ready"} and widget["spec"]["size"] == 1
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"size": 2}, "status": {"phase": "X"}}
    )
    widget = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    assert widget["status"] == {"phase": "Ready"} and widget["spec"]["size"] == 2
    assert widget["metadata"]["generation"] == 2

    # A watch from the last resourceVersion sees the next change.
    version = widget["metadata"]["resourceVersion"]
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w",
                                          {"spec": {"size": 3}})  # fmt: skip
    events = stream.stream(custom.list_namespaced_custom_object, GROUP, VERSION, namespace,
                           PLURAL, resource_version=version, timeout_seconds=10)  # fmt: skip
    first = next(events)
    stream.stop()
    assert first["type"] == "MODIFIED" and first["object"]["spec"]["size"] == 3

    # An owned ConfigMap goes when its owner goes (the garbage collector works).
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "owned", "ownerReferences": [{
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "name": "w", "uid": uid,
            "controller": True, "blockOwnerDeletion": True,
        }]},
        "data": {"k": "v"},
    })  # fmt: skip
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w",
                                           propagation_policy="Background")  # fmt: skip

    def config_map_gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    # The garbage collector learns new kinds on its discovery resync (every 30 s).
    assert eventually(config_map_gone, 90)


def test_controller_manager_creates_replicasets_and_pods(
    kube_api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}},
                         "spec": {"containers": [{"name": "c", "image": "example/c:1"}]}},
        },
    })  # fmt: skip
    assert eventually(lambda: apps.list_namespaced_replica_set(namespace).items, 20)
    assert eventually(lambda: len(core.list_namespaced_pod(namespace).items) == 2, 20)
    pod = core.list_namespaced_pod(namespace).items[0]
    assert pod.status.phase == "Pending"  # no kubelet here: nothing runs


@pytest.mark.skipif(bool(os.environ.get("KUBECONFIG")), reason="needs the local harness")
def test_two_control_planes_side_by_side_and_down_is_idempotent(tmp_path: Path) -> None:
    started = time.monotonic()
    first = start_cluster(tmp_path / "one")
    second = start_cluster(tmp_path / "two")
    elapsed = time.monotonic() - started
    try:
        assert first != second
        servers = set()
        for kubeconfig in (first, second):
            out = subprocess.run(
                ["kubectl", "--kubeconfig", kubeconfig, "get", "ns", "default", "-o", "name"],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            assert out.stdout.strip() == "namespace/default"
            servers.add(Path(kubeconfig).read_text().split("server: ")[1].split()[0])
        assert len(servers) == 2
        assert elapsed < 60  # two planes, each well under 30 s with cached binaries
    finally:
        stop_cluster(tmp_path / "one")
        stop_cluster(tmp_path / "two")
    assert not (tmp_path / "one").exists()
    stop_cluster(tmp_path / "one")  # again: harmless
    result = subprocess.run([str(CLUSTER_SCRIPTS / "down.sh"), str(tmp_path / "nope")],
                            timeout=30)  # fmt: skip
    assert result.returncode == 0
