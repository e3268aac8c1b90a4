"""Operator replicas and scope: leader election, watched namespaces.

Kept apart from test_operator.py, whose cluster-wide operator would otherwise act too.
"""

from __future__ import annotations

import time
from pathlib import Path

from kubernetes import client
from kubernetes.client.rest import ApiException

from ..support import eventually
from .crd_support import install_crd
from .test_operator import OperatorProcess, Pools, pool_body


def namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as exc:
        return exc.status == 404
    return False


def test_two_replicas_with_leader_election_do_not_fight(
    kubeconfig: str, kube_api: client.ApiClient, namespace: str, member_procs, tmp_path: Path
) -> None:
    install_crd(kube_api)
    pools = Pools(kube_api, namespace)
    coordination = client.CoordinationV1Api(kube_api)
    replicas = []
    for index in range(2):
        replica = OperatorProcess(kubeconfig, tmp_path / f"replica-{index}.log",
                                  extra=["-n", namespace, "--leader-election-namespace",
                                         namespace])  # fmt: skip
        replica.start()
        replicas.append(replica)
    try:
        a = member_procs("a")
        pools.create(pool_body("elected", [{"name": "a", "url": a.url}]))
        assert eventually(lambda: pools.status("elected").get("ready") == "1/1", 15)
        lease = coordination.read_namespaced_lease("servicepool-operator", namespace)
        holder = lease.spec.holder_identity
        # Identities are unique per process; each replica logs its own when it leads.
        leader = next(r for r in replicas if f"{holder} holds lease" in r.log())
        follower = next(r for r in replicas if r is not leader)
        assert "holds lease" in leader.log() and "holds lease" not in follower.log()
        assert "created Deployment" not in follower.log()

        leader.stop()  # releases the lease on the way out
        pools.patch("elected", {"spec": {"strategy": "random"}})
        assert eventually(lambda: pools.status("elected").get("observedGeneration") == 2, 30), (
            follower.log()
        )
        assert "holds lease" in follower.log()
        assert pools.config("elected")["spec"]["strategy"] == "random"
    finally:
        for replica in replicas:
            replica.stop()


def test_operator_watches_only_its_namespaces(
    kubeconfig: str, kube_api: client.ApiClient, namespace: str, member_procs, tmp_path: Path
) -> None:
    install_crd(kube_api)
    core = client.CoreV1Api(kube_api)
    other = f"{namespace}-other"
    core.create_namespace({"metadata": {"name": other}})
    scoped = OperatorProcess(kubeconfig, tmp_path / "scoped.log", extra=["-n", namespace])
    scoped.start()
    try:
        a = member_procs("a")
        mine, theirs = Pools(kube_api, namespace), Pools(kube_api, other)
        mine.create(pool_body("mine", [{"name": "a", "url": a.url}]))
        theirs.create(pool_body("theirs", [{"name": "a", "url": a.url}]))
        assert eventually(lambda: mine.status("mine").get("ready") == "1/1", 15)
        time.sleep(2)
        assert theirs.status("theirs") == {}
    finally:
        scoped.stop()
        core.delete_namespace(other)
        # Gone before the next test: an operator watching everything would meet "theirs" in a
        # terminating namespace, where every create is refused.
        eventually(lambda: namespace_gone(core, other), 60)
