"""The operator against a real API server, with real members and a real proxy process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from servicepool_proxy.server import free_port

from ..support import eventually, wait_for_port
from .crd_support import checks_validation_rules, install_crd

GROUP, VERSION, PLURAL = "servicepool.dev", "v1alpha1", "servicepools"


@pytest.fixture(scope="module")
def operator(kubeconfig: str, kube_api: client.ApiClient, tmp_path_factory) -> Iterator[Any]:
    """One operator process for the module, watching every namespace."""
    install_crd(kube_api)
    log_dir = tmp_path_factory.mktemp("operator")
    handle = OperatorProcess(kubeconfig, log_dir / "operator.log")
    handle.start()
    yield handle
    handle.stop()


class OperatorProcess:
    """`servicepool-operator` as a local process, restartable."""

    def __init__(self, kubeconfig: str, log_path: Path, extra: list[str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra = extra or ["--all-namespaces"]
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "servicepool_operator.cli", *self.extra,
             "--liveness", f"http://127.0.0.1:{self.port}/healthz", "--log-format", "plain"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for_port("127.0.0.1", self.port, 30, self.process)
        except RuntimeError as exc:  # no orphan left behind, and the reason in the failure
            self.stop()
            tail = self.log()[-3000:]
            raise RuntimeError(f"{exc}; the operator's log ends:\n{tail}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def pool_body(name: str, members: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    spec.setdefault("healthCheck", {"intervalSeconds": 1, "timeoutSeconds": 0.5,
                                    "unhealthyThreshold": 2})  # fmt: skip
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServicePool",
        "metadata": {"name": name},
        "spec": {"members": members, **spec},
    }


class Pools:
    """Small wrapper over the custom objects API for one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                        PLURAL, name)  # fmt: skip

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for condition in self.status(name).get("conditions") or []:
            if condition["type"] == type_:
                return condition
        return {}

    def member_states(self, name: str) -> dict[str, str]:
        return {m["name"]: m["state"] for m in self.status(name).get("members") or []}

    def config(self, name: str) -> dict[str, Any]:
        import yaml

        config_map = self.core.read_namespaced_config_map(f"{name}-proxy", self.namespace)
        return yaml.safe_load(config_map.data["pool.yaml"])

    def routed(self, name: str) -> list[str]:
        return [m["name"] for m in self.config(name)["spec"]["members"]]

    def events(self, reason: str) -> list[Any]:
        events = self.core.list_namespaced_event(self.namespace).items
        return [e for e in events if e.reason == reason]


@pytest.fixture
def pools(kube_api: client.ApiClient, namespace: str, operator: OperatorProcess) -> Pools:
    return Pools(kube_api, namespace)


def kubectl(kubeconfig: str, *args: str) -> str:
    return subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip


def test_pool_becomes_ready_with_owned_objects_and_columns(
    pools: Pools, member_procs, kubeconfig: str, namespace: str
) -> None:
    members = [member_procs(n) for n in ("a", "b", "c")]
    pools.create(pool_body("ready", [{"name": m.name, "url": m.url} for m in members],
                           strategy="leastInFlight"))  # fmt: skip
    started = time.monotonic()
    assert eventually(lambda: pools.status("ready").get("ready") == "3/3", 10), pools.status(
        "ready"
    )
    assert time.monotonic() - started < 10
    body = pools.get("ready")
    status = body["status"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["endpoint"] == f"http://ready.{namespace}.svc:80"
    ready = pools.condition("ready", "Ready")
    assert ready["status"] == "True" and ready["reason"] == "AllMembersHealthy"
    assert ready["lastTransitionTime"] and ready["observedGeneration"] == 1
    assert pools.condition("ready", "Degraded")["status"] == "False"
    for member in status["members"]:
        assert member["state"] == "Healthy" and "latencyMs" not in member

    uid = body["metadata"]["uid"]
    for read in (
        lambda: pools.core.read_namespaced_config_map("ready-proxy", namespace),
        lambda: pools.apps.read_namespaced_deployment("ready-proxy", namespace),
        lambda: pools.core.read_namespaced_service("ready", namespace),
        lambda: pools.core.read_namespaced_service_account("ready-proxy", namespace),
    ):
        obj = read()
        assert obj.metadata.owner_references[0].uid == uid
        assert obj.metadata.labels["servicepool.dev/pool"] == "ready"
    assert pools.routed("ready") == ["a", "b", "c"]

    table = kubectl(kubeconfig, "get", "sp", "-n", namespace)
    header, row = table.splitlines()[0].split(), table.splitlines()[1].split()
    assert header[:5] == ["NAME", "STRATEGY", "READY", "PROXIES", "ENDPOINT"], table
    assert "AGE" in header
    # No kubelet on this control plane: the proxy Pod never runs, and the column says so.
    assert row[:4] == ["ready", "leastInFlight", "3/3", "0/1"], table


def start_proxy_like_deployment(
    pools: Pools, name: str, kubeconfig: str
) -> tuple[subprocess.Popen[bytes], int]:
    """Run the proxy with exactly the Deployment's command line, plus a kubeconfig and
    loopback ports (the mounted file is absent here: the proxy reads the ConfigMap)."""
    deployment = pools.apps.read_namespaced_deployment(f"{name}-proxy", pools.namespace)
    container = deployment.spec.template.spec.containers[0]
    assert container.command == ["servicepool-proxy"]
    port, admin = free_port(), free_port()
    argv = [
        sys.executable, "-m", "servicepool_proxy.cli", *container.args,
        "--kubeconfig", kubeconfig,
        "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, 20, process)
    return process, port


def get_member(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=5) as response:
        return response.headers["X-ServicePool-Member"]


def test_killed_member_turns_unhealthy_and_leaves_the_proxy(
    pools: Pools, member_procs, kubeconfig: str
) -> None:
    members = [member_procs(n) for n in ("a", "b", "c")]
    pools.create(pool_body("kill", [{"name": m.name, "url": m.url} for m in members]))
    assert eventually(lambda: pools.status("kill").get("ready") == "3/3", 10)
    proxy, port = start_proxy_like_deployment(pools, "kill", kubeconfig)
    try:
        assert Counter(get_member(port) for _ in range(9)) == {"a": 3, "b": 3, "c": 3}
        members[1].kill()
        killed = time.monotonic()
        assert eventually(lambda: pools.member_states("kill").get("b") == "Unhealthy", 5)
        # Two probe intervals (1 s each) plus a probe timeout and one status round.
        assert time.monotonic() - killed < 3.5
        assert eventually(lambda: pools.routed("kill") == ["a", "c"], 2)
        routed_at = time.monotonic()
        # Within 2 s of the ConfigMap change the proxy no longer picks b at all.
        time.sleep(max(0.0, 2.0 - (time.monotonic() - routed_at)))
        assert set(Counter(get_member(port) for _ in range(20))) == {"a", "c"}
        assert pools.status("kill")["ready"] == "2/3"
        degraded = pools.condition("kill", "Degraded")
        assert degraded["status"] == "True" and "b" in degraded["message"]
        events = pools.events("MemberUnhealthy")
        assert any("member b" in e.message for e in events), [e.message for e in events]
    finally:
        proxy.terminate()
        proxy.wait(10)


def test_spec_change_updates_objects_in_place(pools: Pools, member_procs, namespace: str) -> None:
    a = member_procs("a")
    pools.create(pool_body("change", [{"name": "a", "url": a.url}]))
    assert eventually(lambda: pools.status("change").get("ready") == "1/1", 10)
    before = pools.apps.read_namespaced_deployment("change-proxy", namespace)
    pools.patch(
        "change",
        {
            "spec": {
                "strategy": "powerOfTwoChoices",
                "proxy": {"replicas": 3, "image": "example/proxy:2"},
            }
        },
    )
    generation = pools.get("change")["metadata"]["generation"]
    assert generation == 2
    assert eventually(lambda: pools.status("change").get("observedGeneration") == 2, 10)
    assert pools.config("change")["spec"]["strategy"] == "powerOfTwoChoices"
    after = pools.apps.read_namespaced_deployment("change-proxy", namespace)
    assert after.metadata.uid == before.metadata.uid  # updated, not recreated
    assert after.spec.replicas == 3
    assert after.spec.template.spec.containers[0].image == "example/proxy:2"
    assert pools.condition("change", "Ready")["observedGeneration"] == 2
    generic = client.CustomObjectsApi(pools.core.api_client)

    def budget() -> Any:  # policy/v1 from 1.21 (only it from 1.25), policy/v1beta1 on 1.20
        for version in ("v1", "v1beta1"):
            try:
                return generic.get_namespaced_custom_object(
                    "policy", version, namespace, "poddisruptionbudgets", "change-proxy"
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return None

    found = eventually(budget, 10)  # replicas > 1: a disruption budget keeps one up
    assert found is not None and found["spec"]["minAvailable"] == 1
    pools.patch("change", {"spec": {"proxy": {"replicas": 1}}})
    assert eventually(lambda: budget() is None, 10)


def set_pod_ready(core: client.CoreV1Api, namespace: str, name: str, ip: str, ready: bool) -> None:
    """What a kubelet would do: report the Pod Running with an IP and a Ready condition."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                        "lastTransitionTime": now}],
    }  # fmt: skip
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


def test_selector_members_follow_pods(pools: Pools, member_procs, namespace: str) -> None:
    port = free_port("127.0.0.2")
    hosts = ["127.0.0.2", "127.0.0.3"]
    for host in hosts:
        member_procs(f"w-{host}", host=host, port=port)
    for index, _ in enumerate(hosts):
        pools.core.create_namespaced_pod(namespace, {
            "metadata": {"name": f"worker-{index}", "labels": {"app": "worker"}},
            "spec": {"containers": [{"name": "w", "image": "example/worker:1"}]},
        })  # fmt: skip
    pools.create(pool_body("sel", [], memberSelector={"matchLabels": {"app": "worker"},
                                                      "port": port}))  # fmt: skip
    assert eventually(lambda: pools.condition("sel", "Ready").get("reason") == "NoMembers", 10)
    set_pod_ready(pools.core, namespace, "worker-0", hosts[0], True)
    assert eventually(lambda: pools.status("sel").get("ready") == "1/1", 5), pools.status("sel")
    set_pod_ready(pools.core, namespace, "worker-1", hosts[1], True)
    assert eventually(lambda: pools.status("sel").get("ready") == "2/2", 5)
    assert sorted(pools.routed("sel")) == ["worker-0", "worker-1"]
    assert pools.config("sel")["spec"]["members"][0]["url"] == f"http://{hosts[0]}:{port}"
    set_pod_ready(pools.core, namespace, "worker-0", hosts[0], False)
    assert eventually(lambda: pools.status("sel").get("ready") == "1/1", 5)
    assert pools.routed("sel") == ["worker-1"]
    pools.core.delete_namespaced_pod("worker-1", namespace, grace_period_seconds=0)
    assert eventually(lambda: pools.status("sel").get("totalMembers") == 0, 5)


def test_invalid_spec_is_reported_and_last_good_config_keeps_serving(
    pools: Pools, member_procs, kube_api: client.ApiClient
) -> None:
    a, b = member_procs("a"), member_procs("b")
    pools.create(pool_body("bad", [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}]))
    assert eventually(lambda: pools.status("bad").get("ready") == "2/2", 10)
    good_config = pools.config("bad")
    twice = {"spec": {"members": [{"name": "a", "url": a.url}, {"name": "a", "url": b.url}]}}
    if checks_validation_rules(kube_api):
        # The API server refuses the duplicate itself (test_crd_admission.py); an unknown retry
        # condition is a mistake only the operator sees.
        with pytest.raises(ApiException):
            pools.patch("bad", twice)
        pools.patch("bad", {"spec": {"retries": {"retryOn": ["sometimes"]}}})
        field, mistake = "spec.retries.retryOn", "unknown retry condition"
    else:  # the rules were dropped: the operator is the only check
        pools.patch("bad", twice)
        field, mistake = "spec.members[1].name", "duplicate"
    assert eventually(lambda: pools.condition("bad", "Ready").get("reason") == "InvalidSpec", 10)
    ready = pools.condition("bad", "Ready")
    assert ready["status"] == "False"
    assert field in ready["message"] and mistake in ready["message"]
    assert ready["observedGeneration"] == 2
    assert pools.status("bad")["observedGeneration"] == 2
    assert eventually(lambda: pools.events("InvalidSpec"), 5)
    time.sleep(1.5)
    assert pools.config("bad") == good_config  # the proxies keep the last good config

    pools.patch(
        "bad",
        {
            "spec": {
                "members": [
                    {"name": "a", "url": a.url},
                    {"name": "missing", "service": {"name": "nope", "port": 80}},
                ],
                "retries": None,  # back to the defaults
            }
        },
    )

    def names_missing_service() -> bool:
        message = pools.condition("bad", "Ready").get("message", "")
        return "spec.members[1].service.name" in message

    assert eventually(names_missing_service, 10)
    pools.patch("bad", {"spec": {"members": [{"name": "a", "url": a.url}]}})
    assert eventually(lambda: pools.condition("bad", "Ready").get("status") == "True", 10)
    assert pools.routed("bad") == ["a"]


def test_conflicting_object_is_reported_not_taken_over(
    pools: Pools, member_procs, namespace: str
) -> None:
    a = member_procs("a")
    pools.core.create_namespaced_service(namespace, {
        "metadata": {"name": "taken"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "someone-else"}},
    })  # fmt: skip
    pools.create(pool_body("taken", [{"name": "a", "url": a.url}]))
    assert eventually(lambda: pools.condition("taken", "Ready").get("reason") == "Conflict", 10)
    assert "Service 'taken' already exists" in pools.condition("taken", "Ready")["message"]
    service = pools.core.read_namespaced_service("taken", namespace)
    assert service.spec.selector == {"app": "someone-else"}
    assert not service.metadata.owner_references


def test_deleting_the_pool_removes_its_objects(pools: Pools, member_procs, namespace: str) -> None:
    a = member_procs("a")
    pools.create(pool_body("gone", [{"name": "a", "url": a.url}]))
    assert eventually(lambda: pools.status("gone").get("ready") == "1/1", 10)
    pools.delete("gone")

    def all_gone() -> bool:
        for read in (
            lambda: pools.core.read_namespaced_config_map("gone-proxy", namespace),
            lambda: pools.apps.read_namespaced_deployment("gone-proxy", namespace),
            lambda: pools.core.read_namespaced_service("gone", namespace),
        ):
            try:
                read()
                return False
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return True

    assert eventually(all_gone, 90)  # GC learns new kinds on its 30 s discovery resync
    with pytest.raises(ApiException) as info:
        pools.get("gone")
    assert info.value.status == 404  # no finalizer held it back


def test_operator_restart_creates_no_duplicates_and_no_flapping(
    pools: Pools, member_procs, operator: OperatorProcess, namespace: str
) -> None:
    members = [member_procs(n) for n in ("a", "b")]
    pools.create(pool_body("steady", [{"name": m.name, "url": m.url} for m in members]))
    assert eventually(lambda: pools.status("steady").get("ready") == "2/2", 10)
    time.sleep(2)
    before = pools.get("steady")
    uids = {
        "cm": pools.core.read_namespaced_config_map("steady-proxy", namespace).metadata,
        "deploy": pools.apps.read_namespaced_deployment("steady-proxy", namespace).metadata,
    }
    operator.stop()
    operator.start()
    time.sleep(6)
    after = pools.get("steady")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
        json.dumps(before["status"], indent=1),
        json.dumps(after["status"], indent=1),
    )
    for key, read in (
        ("cm", lambda: pools.core.read_namespaced_config_map("steady-proxy", namespace)),
        ("deploy", lambda: pools.apps.read_namespaced_deployment("steady-proxy", namespace)),
    ):
        meta = read().metadata
        assert meta.uid == uids[key].uid
        assert meta.resource_version == uids[key].resource_version
    deployments = pools.apps.list_namespaced_deployment(namespace).items
    assert [d.metadata.name for d in deployments] == ["steady-proxy"]


def test_pools_that_share_a_member_share_its_probes_and_sit_unwritten_at_rest(
    pools: Pools, member_procs
) -> None:
    member = member_procs("shared")
    check = {"path": "/probe", "intervalSeconds": 1, "timeoutSeconds": 0.5}  # counted there
    names = [f"share-{i}" for i in range(4)]
    for name in names:
        pools.create(pool_body(name, [{"name": "m", "url": member.url}], healthCheck=check))
    assert eventually(lambda: all(pools.status(n).get("ready") == "1/1" for n in names), 20)
    time.sleep(2)

    def probes() -> int:
        with urllib.request.urlopen(member.url + "/control/stats", timeout=5) as response:
            return int(json.loads(response.read())["requests"])

    versions = [pools.get(n)["metadata"]["resourceVersion"] for n in names]
    before = probes()
    time.sleep(6)
    rounds = probes() - before
    # Unshared, the four pools would probe it 24 times in 6 s; shared, about once a round.
    assert rounds <= 12, rounds
    assert [pools.get(n)["metadata"]["resourceVersion"] for n in names] == versions


def test_access_renders_network_policy_and_secret_mounts(
    pools: Pools, member_procs, namespace: str, kube_api: client.ApiClient
) -> None:
    a = member_procs("a")
    networking = client.NetworkingV1Api(kube_api)
    access = {"tokens": {"secretName": "clients", "key": "tokens"},
              "allowedNamespaces": ["team-a", namespace]}  # fmt: skip
    pools.create(pool_body("acl", [{"name": "a", "url": a.url}], access=access))
    assert eventually(lambda: pools.status("acl").get("ready") == "1/1", 10)

    def policy() -> Any:
        try:
            return networking.read_namespaced_network_policy("acl-proxy", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    found = eventually(policy, 10)
    assert found is not None
    expression = found.spec.ingress[0]._from[0].namespace_selector.match_expressions[0]
    assert expression.values == ["team-a", namespace]
    deployment = pools.apps.read_namespaced_deployment("acl-proxy", namespace)
    volumes = {v.name: v for v in deployment.spec.template.spec.volumes}
    assert volumes["secret-clients"].secret.secret_name == "clients"
    # The config names the Secret; its content goes to the proxy only through the volume.
    assert pools.config("acl")["spec"]["access"]["tokens"] == {"secretName": "clients",
                                                              "key": "tokens"}  # fmt: skip
    pools.patch("acl", {"spec": {"access": None}})
    assert eventually(lambda: policy() is None, 10)
