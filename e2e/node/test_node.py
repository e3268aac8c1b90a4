"""servicepool as users run it: Helm installs it, Pods run it, a Service fronts it.

Everything here goes through Kubernetes and Helm on a real node: the chart installed with
server-side apply, the operator as two Pods electing a leader, members as real Pods, and
clients on the host calling the pool's ClusterIP. The tests share one release and one pool
under steady load and run in file order, each changing the cluster as an operator would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from servicepool_api import contract
from servicepool_operator import names
from tests.support import eventually

from .conftest import CHART, FIGURES, OPERATOR_NAMESPACE, RELEASE, Node, SteadyLoad

NAMESPACE = "shop"
WORKERS = "echo-worker"
POOL = "echo"
SERVICE_POOL = "echo-via-service"
LEASE = "servicepool-operator"
GROUP, VERSION, PLURAL = names.GROUP, names.VERSION, names.PLURAL

HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


# Pod Security Admission's strictest level, enforced on both namespaces of the tier.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def workers_deployment(image: str) -> dict[str, Any]:
    labels = {"app": WORKERS}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": WORKERS, "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "worker",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["servicepool-sample-member", "--name", "worker",
                                    "--host", "0.0.0.0", "--port", "8000"],
                        "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                           "periodSeconds": 1},
                        "securityContext": HARDENED,
                    }],
                },
            },
        },
    }  # fmt: skip


def workers_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": WORKERS, "namespace": NAMESPACE},
        "spec": {"selector": {"app": WORKERS},
                 "ports": [{"name": "http", "port": 8000, "targetPort": "http",
                            "protocol": "TCP"}]},
    }  # fmt: skip


def pool(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    probes = {"intervalSeconds": 1, "timeoutSeconds": 0.5}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ServicePool",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"healthCheck": probes, **spec}}  # fmt: skip


class Cluster:
    """What the tests read and change, in the tier's namespaces."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def pool(self, name: str) -> dict[str, Any]:
        return self.node.custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name
        )

    def patch_pool(self, name: str, patch: dict[str, Any]) -> int:
        body = self.node.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name, patch
        )
        return int(body["metadata"]["generation"])

    def status(self, name: str) -> dict[str, Any]:
        return self.pool(name).get("status") or {}

    def pods(self, namespace: str, selector: str) -> list[client.V1Pod]:
        return self.node.core.list_namespaced_pod(namespace, label_selector=selector).items

    def ready_pods(self, namespace: str, selector: str) -> list[str]:
        return sorted(p.metadata.name for p in self.pods(namespace, selector) if is_ready(p))

    def deployment_rolled_out(self, namespace: str, name: str) -> bool:
        try:
            d = self.node.apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:  # not rendered yet
                return False
            raise
        want = d.spec.replicas or 0
        status = d.status
        return (
            status.observed_generation == d.metadata.generation
            and (status.updated_replicas or 0) == want
            and (status.ready_replicas or 0) == want
            and (status.replicas or 0) == want
        )

    def lease_holder(self) -> str:
        """The operator replica that leads ("" before the first one took the Lease)."""
        try:
            lease = self.node.coordination.read_namespaced_lease(LEASE, OPERATOR_NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return ""
            raise
        return (lease.spec.holder_identity or "") if lease.spec else ""

    def cluster_ip(self, service: str) -> tuple[str, int]:
        spec = self.node.core.read_namespaced_service(service, NAMESPACE).spec
        return spec.cluster_ip, spec.ports[0].port


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def is_ready(pod: client.V1Pod) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    conditions = pod.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def operator_values(node: Node, **extra: Any) -> dict[str, Any]:
    """Only the image is set: everything else is the chart's defaults."""
    return {"image": {"repository": node.repository, "tag": node.tag}, **extra}


@pytest.fixture(scope="module")
def cluster(node: Node) -> Iterator[Cluster]:
    """The release installed with Helm, the workers running, the pools applied, in namespaces
    that enforce Pod Security `restricted`."""
    node.core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE, "labels": RESTRICTED}})
    with node.helm() as helm_config:
        helm_config.install(str(CHART), RELEASE, operator_values(node),
                            namespace=OPERATOR_NAMESPACE, create_namespace=True,
                            wait="watcher", timeout=300)  # fmt: skip
    node.core.create_namespace({"metadata": {"name": NAMESPACE, "labels": RESTRICTED}})
    node.apps.create_namespaced_deployment(NAMESPACE, workers_deployment(node.image))
    node.core.create_namespaced_service(NAMESPACE, workers_service())
    for body in (
        pool(POOL, {"strategy": "leastInFlight", "proxy": {"replicas": 2},
                    "memberSelector": {"matchLabels": {"app": WORKERS}, "port": 8000}}),
        pool(SERVICE_POOL, {"members": [{"name": "svc",
                                         "service": {"name": WORKERS, "port": 8000}}]}),
    ):  # fmt: skip
        node.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
    yield Cluster(node)


@pytest.fixture(scope="module")
def load(cluster: Cluster) -> Iterator[SteadyLoad]:
    """Steady GETs through the pool's ClusterIP from the host, for the whole module."""
    assert eventually(lambda: cluster.deployment_rolled_out(NAMESPACE, f"{POOL}-proxy"), 120)
    host, port = cluster.cluster_ip(POOL)
    steady = SteadyLoad(host, port).start()
    assert eventually(lambda: steady.members_since(0), 30), steady.outcomes[-5:]
    yield steady
    steady.stop()
    FIGURES["requests sent through the ClusterIP"] = str(len(steady.outcomes))


def test_helm_install_runs_the_operator_pods_from_the_image_values(cluster: Cluster) -> None:
    node = cluster.node
    selector = f"app.kubernetes.io/name=servicepool-operator,app.kubernetes.io/instance={RELEASE}"
    pods = cluster.pods(OPERATOR_NAMESPACE, selector)
    assert len(pods) == 2 and all(is_ready(p) for p in pods)
    assert {p.spec.containers[0].image for p in pods} == {node.image}
    assert all(p.spec.service_account_name == RELEASE for p in pods)
    deployment = node.apps.read_namespaced_deployment(RELEASE, OPERATOR_NAMESPACE)
    managers = {(f.manager, f.operation) for f in deployment.metadata.managed_fields}
    assert any(op == "Apply" for _, op in managers), managers  # server-side apply
    holder = eventually(cluster.lease_holder, 20)
    assert any(str(holder).startswith(p.metadata.name + "_") for p in pods), holder


def test_every_pod_runs_in_namespaces_that_enforce_pod_security_restricted(
    cluster: Cluster, load: SteadyLoad
) -> None:
    node = cluster.node
    privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
                  "spec": {"containers": [{"name": "c", "image": node.image,
                                           "securityContext": {"privileged": True}}]}}  # fmt: skip
    for namespace in (OPERATOR_NAMESPACE, NAMESPACE):
        labels = node.core.read_namespace(namespace).metadata.labels
        assert RESTRICTED.items() <= labels.items(), labels
        with pytest.raises(ApiException) as refused:  # the level is really enforced
            node.core.create_namespaced_pod(namespace, privileged, dry_run="All")
        assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body
    # ...and the operator, its proxies and the workers all run there (the fixtures waited).
    assert cluster.pods(OPERATOR_NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
    assert len(cluster.pods(NAMESPACE, f"{names.POOL_LABEL}={POOL}")) == 2


@pytest.mark.skipif(bool(os.environ.get("KUBECONFIG")), reason="checks this node's own rules")
def test_a_service_ip_without_rules_is_refused_and_leaves_no_conntrack_entry(node: Node) -> None:
    # Otherwise the untranslated entry outlives the request and fails a later connection that
    # reuses its client port, long after kube-proxy has written the Service's rules.
    unused = "198.19.255.254"
    with socket.socket() as sock:
        sock.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            sock.connect((unused, 80))
    entries = subprocess.run(["conntrack", "-L", "-d", unused], capture_output=True, text=True)
    assert unused not in entries.stdout


def test_a_pool_of_real_pods_serves_clients_through_its_cluster_ip(
    cluster: Cluster, load: SteadyLoad
) -> None:
    node = cluster.node
    proxies = cluster.pods(NAMESPACE, f"{names.POOL_LABEL}={POOL}")
    assert len(proxies) == 2
    # The operator handed its own image to the proxies (the pool names none)...
    assert {p.spec.containers[0].image for p in proxies} == {node.image}
    # ...whose proxy runs the compiled request path (the image's build stage has a compiler).
    for proxy in proxies:
        status = json.loads(fetch(f"http://{proxy.status.pod_ip}:{contract.ADMIN_PORT}/status"))
        assert status["build"] == "compiled", proxy.metadata.name
    workers = cluster.ready_pods(NAMESPACE, f"app={WORKERS}")
    assert eventually(lambda: load.members_since(time.monotonic() - 2) == set(workers), 10)
    assert eventually(lambda: cluster.status(POOL).get("ready") == "2/2", 20)
    # Members named by a Service are reached by its DNS name from the proxy Pods.
    assert eventually(lambda: cluster.status(SERVICE_POOL).get("ready") == "1/1", 30), (
        cluster.status(SERVICE_POOL)
    )
    assert eventually(lambda: cluster.status(SERVICE_POOL).get("proxies") == "1/1", 60)
    host, port = cluster.cluster_ip(SERVICE_POOL)
    via_service = SteadyLoad(host, port, threads=1)
    # kube-proxy picks up the Ready proxy within its sync period.
    assert eventually(lambda: via_service._one().status == 200, 10)


def test_a_proxy_that_cannot_start_is_explained_in_status_events_and_get(
    cluster: Cluster,
) -> None:
    node = cluster.node
    broken = pool("broken", {
        "members": [{"name": "svc", "service": {"name": WORKERS, "port": 8000}}],
        "proxy": {"image": "localhost/servicepool-missing:1", "imagePullPolicy": "Never"},
    })  # fmt: skip
    node.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, broken)

    def failing() -> dict[str, Any]:
        status = cluster.status("broken")
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        available = conditions.get("ProxyAvailable") or {}
        return available if available.get("reason") == "ProxyPodsFailing" else {}

    condition = eventually(failing, 60)
    assert condition, cluster.status("broken")
    assert condition["status"] == "False" and "ErrImageNeverPull" in condition["message"]
    events = node.core.list_namespaced_event(
        NAMESPACE, field_selector="involvedObject.name=broken,reason=ProxyPodsFailing"
    ).items
    assert events and "servicepool-missing" in events[0].message
    table = subprocess.run(
        ["kubectl", "--kubeconfig", node.kubeconfig, "get", "sp", "broken", "-n", NAMESPACE],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    header, row = table.splitlines()[:2]
    assert "PROXIES" in header and "0/1" in row.split()
    node.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "broken")


def watch_new_ready_pod(cluster: Cluster, before: set[str], seconds: float) -> tuple[str, float]:
    """Poll until a Pod not in `before` is Ready; returns it and when it was first seen so."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pod in cluster.pods(NAMESPACE, f"app={WORKERS}"):
            if pod.metadata.name not in before and is_ready(pod):
                return pod.metadata.name, time.monotonic()
        time.sleep(0.05)
    raise AssertionError("no new worker Pod became Ready")


def scale_workers(cluster: Cluster, replicas: int) -> None:
    cluster.node.apps.patch_namespaced_deployment_scale(
        WORKERS, NAMESPACE, {"spec": {"replicas": replicas}}
    )


def test_a_new_member_gets_traffic_within_3s_of_being_ready(
    cluster: Cluster, load: SteadyLoad
) -> None:
    before = set(cluster.ready_pods(NAMESPACE, f"app={WORKERS}"))
    started = time.monotonic()
    scale_workers(cluster, 3)
    added, ready_at = watch_new_ready_pod(cluster, before, 60)
    assert eventually(lambda: load.first_answer_from(added, ready_at), 10)
    first = load.first_answer_from(added, ready_at)
    assert first is not None
    delay = first - ready_at  # from when the API showed the Pod Ready
    # The Ready condition's own time has whole seconds: this bound is up to 1 s too long.
    pod = cluster.node.core.read_namespaced_pod(added, NAMESPACE)
    (ready,) = [c for c in pod.status.conditions if c.type == "Ready"]
    bound = next(o.wall for o in load.outcomes if o.member == added and o.at == first)
    bound -= ready.last_transition_time.timestamp()
    FIGURES["new member Ready -> first request through the ClusterIP"] = (
        f"{delay:.2f} s after the API showed it Ready; at most {bound:.2f} s after its "
        "Ready condition's (whole-second) time"
    )
    assert delay <= 3.0 and bound <= 3.0 + 1.0
    assert load.failures(started) == []


def test_deleting_a_member_pod_fails_no_request(cluster: Cluster, load: SteadyLoad) -> None:
    victim = cluster.ready_pods(NAMESPACE, f"app={WORKERS}")[0]
    started = time.monotonic()
    cluster.node.core.delete_namespaced_pod(victim, NAMESPACE)
    assert eventually(lambda: victim not in load.members_since(time.monotonic() - 2), 20)
    gone = eventually(
        lambda: victim not in {m["name"] for m in cluster.status(POOL).get("members") or []}, 20
    )
    assert gone
    time.sleep(2)
    window = load.between(started)
    FIGURES["member Pod deleted: failed GETs"] = f"{len(load.failures(started))} of {len(window)}"
    assert load.failures(started) == [], load.failures(started)[:5]


def test_a_rolling_update_of_the_proxies_fails_no_request(
    cluster: Cluster, load: SteadyLoad
) -> None:
    deployment = f"{POOL}-proxy"
    old = {p.metadata.name for p in cluster.pods(NAMESPACE, f"{names.POOL_LABEL}={POOL}")}
    started = time.monotonic()
    cluster.patch_pool(POOL, {"spec": {"proxy": {"resources": {"requests": {"cpu": "120m"}}}}})

    def rolled() -> bool:
        current = {p.metadata.name for p in cluster.pods(NAMESPACE, f"{names.POOL_LABEL}={POOL}")}
        return not (current & old) and cluster.deployment_rolled_out(NAMESPACE, deployment)

    assert eventually(rolled, 180, step=0.5)
    took = time.monotonic() - started
    time.sleep(2)
    window = load.between(started)
    failures = load.failures(started)
    FIGURES["proxy rolling update"] = (
        f"{len(failures)} failed of {len(window)} requests, rolled in {took:.1f} s"
    )
    assert failures == [], failures[:5]


def operator_pid(pod: str) -> int:
    """The host PID of the operator process running in `pod` (this test runs on the node)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"servicepool-operator" in command and f"HOSTNAME={pod}\0".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no operator process of {pod} on this host")


def wait_generation(cluster: Cluster, name: str, generation: int) -> Callable[[], bool]:
    return lambda: cluster.status(name).get("observedGeneration") == generation


@pytest.mark.skipif(bool(os.environ.get("KUBECONFIG")), reason="kills a process on the node")
def test_killing_the_leader_hands_over_within_the_lease(cluster: Cluster, load: SteadyLoad) -> None:
    holder = cluster.lease_holder()
    leader_pod = holder.rpartition("_")[0]
    os.kill(operator_pid(leader_pod), signal.SIGKILL)  # a crash: the lease is not released
    killed = time.monotonic()
    assert eventually(lambda: cluster.lease_holder() not in ("", holder), 30, step=0.1)
    takeover = time.monotonic() - killed
    new_holder = cluster.lease_holder()
    FIGURES["leader killed -> new lease holder"] = (
        f"{takeover:.1f} s (lease 15 s, standby retry 2 s; "
        f"{'the other replica' if not new_holder.startswith(leader_pod) else 'restarted'})"
    )
    assert takeover <= 15 + 2 + 1
    # Status keeps moving under the new leader.
    generation = cluster.patch_pool(POOL, {"spec": {"healthCheck": {"intervalSeconds": 1.5}}})
    assert eventually(wait_generation(cluster, POOL, generation), 15), cluster.status(POOL)


def test_helm_upgrade_with_a_changed_value_rolls_the_operator(
    cluster: Cluster, load: SteadyLoad
) -> None:
    node = cluster.node
    selector = f"app.kubernetes.io/name=servicepool-operator,app.kubernetes.io/instance={RELEASE}"
    old = {p.metadata.name for p in cluster.pods(OPERATOR_NAMESPACE, selector)}
    values = operator_values(node, logFormat="json")
    with node.helm() as helm_config:
        helm_config.upgrade(str(CHART), RELEASE, values, namespace=OPERATOR_NAMESPACE,
                            wait="watcher", timeout=300)  # fmt: skip

    def rolled() -> bool:
        pods = cluster.pods(OPERATOR_NAMESPACE, selector)
        return (
            bool(pods)
            and not ({p.metadata.name for p in pods} & old)
            and all(is_ready(p) and "--log-format=json" in p.spec.containers[0].args for p in pods)
        )

    assert eventually(rolled, 120, step=0.5)
    new = {p.metadata.name for p in cluster.pods(OPERATOR_NAMESPACE, selector)}
    assert eventually(lambda: cluster.lease_holder().rpartition("_")[0] in new, 30)
    generation = cluster.patch_pool(POOL, {"spec": {"healthCheck": {"intervalSeconds": 1}}})
    assert eventually(wait_generation(cluster, POOL, generation), 15), cluster.status(POOL)


def test_helm_uninstall_keeps_the_crd_the_pools_and_their_traffic(
    cluster: Cluster, load: SteadyLoad
) -> None:
    node = cluster.node
    started = time.monotonic()
    with node.helm() as helm_config:
        helm_config.uninstall(RELEASE, wait="watcher", timeout=120)
    gone = eventually(lambda: not cluster.pods(
        OPERATOR_NAMESPACE, "app.kubernetes.io/name=servicepool-operator"), 60)  # fmt: skip
    assert gone
    with pytest.raises(ApiException) as missing:
        node.apps.read_namespaced_deployment(RELEASE, OPERATOR_NAMESPACE)
    assert missing.value.status == 404
    node.extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")  # the CRD stays
    assert cluster.pool(POOL)["metadata"]["name"] == POOL  # so do the pools
    time.sleep(2)
    assert load.failures(started) == []  # and their proxies keep serving
