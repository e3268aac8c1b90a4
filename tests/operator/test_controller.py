"""The pool loop against a fake API, fake members and a clock that moves only when told."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml

from servicepool_operator import controller as controller_module
from servicepool_operator import names
from servicepool_operator.applying import RESYNC_SECONDS
from servicepool_operator.controller import PoolController
from servicepool_operator.membership import PodInfo
from servicepool_operator.records import MemberRecords

from .fakes import Events, FakeClock, FakeCluster, FakeKube, FakeProbe

STATIC_KINDS = ["Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
TWO_MEMBERS = {"members": [{"name": "a", "url": "http://a:1"}, {"name": "b", "url": "http://b:1"}]}


def pool(spec: dict[str, Any], generation: int = 1, uid: str = "uid-1", **extra: Any) -> dict:
    body = {
        "apiVersion": "servicepool.dev/v1alpha1",
        "kind": "ServicePool",
        "metadata": {"name": "demo", "namespace": "ns", "uid": uid, "generation": generation},
        "spec": spec,
    }
    return body | extra


class Rig:
    """A controller wired to fakes, with handles on each."""

    def __init__(self, body: dict[str, Any], cluster: FakeCluster | None = None) -> None:
        self.kube = FakeKube()
        self.clock = FakeClock()
        self.probe = FakeProbe()
        self.events = Events()
        self.cluster = cluster or FakeCluster()
        self.controller = PoolController(
            self.kube, self.cluster.view(), self.probe, self.events, body, clock=self.clock
        )

    async def passes(self, count: int = 1, every: float = 5.0) -> float:
        """Run passes `every` seconds apart; returns the last delay asked for."""
        delay = 0.0
        for _ in range(count):
            delay = await self.controller.reconcile()
            self.clock.advance(every)
        return delay

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.kube.statuses[-1]["conditions"] if c["type"] == type_)

    def routed(self) -> list[str]:
        return [m["name"] for m in yaml.safe_load(self.kube.config())["spec"]["members"]]


async def test_a_first_pass_creates_every_owned_object_and_writes_the_status() -> None:
    rig = Rig(pool(TWO_MEMBERS))
    delay = await rig.passes()
    assert rig.kube.kinds() == sorted(["ConfigMap", *STATIC_KINDS])
    assert rig.routed() == ["a", "b"]
    (status,) = rig.kube.statuses
    assert status["ready"] == "2/2" and status["endpoint"] == "http://demo.ns.svc:80"
    assert rig.condition("Ready")["reason"] == "AllMembersHealthy"
    assert rig.condition("ProxyAvailable")["reason"] == "ProxiesStarting"
    assert sorted(rig.probe.probed) == ["http://a:1", "http://b:1"]
    assert delay == 5.0  # the probe interval


async def test_a_pool_whose_spec_did_not_change_writes_no_status() -> None:
    rig = Rig(pool(TWO_MEMBERS))
    await rig.passes()
    writes = len(rig.kube.writes)
    await rig.passes(3)
    assert len(rig.kube.writes) == writes  # no object, no ConfigMap
    assert len(rig.kube.statuses) == 1
    assert len(rig.probe.probed) == 8  # but the members were probed every pass


async def test_a_pool_at_rest_is_not_written_over_five_minutes_of_probe_passes() -> None:
    rig = Rig(pool(TWO_MEMBERS))
    rig.probe.answer("http://b:1", False, "probe /healthz timed out after 1s")
    await rig.passes(3)  # b settles as Unhealthy, then keeps failing: its count keeps climbing
    assert [m["state"] for m in rig.kube.statuses[-1]["members"]] == ["Healthy", "Unhealthy"]
    written = len(rig.kube.statuses)
    await rig.passes(60, every=5.0)  # 5 minutes of passes, a probe each, the wall clock moving
    assert len(rig.kube.statuses) == written
    assert rig.probe.probed.count("http://b:1") == 63


async def test_a_member_state_change_reaches_the_status_within_two_probe_intervals() -> None:
    rig = Rig(pool(TWO_MEMBERS))
    await rig.passes(12)  # a minute at rest
    rig.probe.answer("http://a:1", False, "probe /healthz returned HTTP 503")
    await rig.passes(2)
    assert rig.kube.statuses[-1]["members"][0]["state"] == "Unhealthy"
    rig.probe.answer("http://a:1", True)
    await rig.passes(2)
    assert rig.kube.statuses[-1]["members"][0]["state"] == "Healthy"


async def test_a_status_found_at_start_is_not_written_again() -> None:
    first = Rig(pool(TWO_MEMBERS))
    await first.passes()
    restarted = Rig(pool(TWO_MEMBERS, status=first.kube.statuses[-1]))
    await restarted.passes(2)
    assert restarted.kube.statuses == []


async def test_a_new_pool_creates_its_objects_first_and_a_known_one_reads_them_first() -> None:
    first = Rig(pool(TWO_MEMBERS))
    await first.passes()
    assert {verb for verb, _, _ in first.kube.writes} == {"create first"}
    restarted = Rig(pool(TWO_MEMBERS, status=first.kube.statuses[-1]))
    await restarted.passes()
    assert {verb for verb, _, _ in restarted.kube.writes} == {"apply", "delete"}


async def test_owned_objects_are_checked_again_after_the_resync_interval() -> None:
    rig = Rig(pool(TWO_MEMBERS))
    await rig.passes()
    del rig.kube.objects[("Service", "demo")]  # someone deleted it
    await rig.passes()
    assert ("Service", "demo") not in rig.kube.objects
    rig.clock.advance(RESYNC_SECONDS)
    await rig.passes()
    assert ("Service", "demo") in rig.kube.objects


async def test_a_spec_change_wakes_the_loop_and_reapplies_the_objects() -> None:
    spec = TWO_MEMBERS | {"access": {"allowedNamespaces": ["team-a"]}}
    rig = Rig(pool(spec))
    await rig.passes()
    assert "NetworkPolicy" in rig.kube.kinds() and "PodDisruptionBudget" not in rig.kube.kinds()
    rig.controller.update(pool(TWO_MEMBERS | {"proxy": {"replicas": 3}}, generation=2))
    assert rig.controller.wake.is_set()
    await rig.passes()
    assert "NetworkPolicy" not in rig.kube.kinds() and "PodDisruptionBudget" in rig.kube.kinds()
    assert rig.kube.objects[("Deployment", "demo-proxy")]["spec"]["replicas"] == 3
    assert rig.kube.statuses[-1]["observedGeneration"] == 2


async def test_a_status_only_update_does_not_wake_the_loop() -> None:
    rig = Rig(pool(TWO_MEMBERS))
    rig.controller.update(pool(TWO_MEMBERS, status={"ready": "2/2"}))
    assert not rig.controller.wake.is_set()


async def test_an_object_owned_by_someone_else_is_reported_as_a_conflict_once() -> None:
    cluster = FakeCluster()
    rig = Rig(pool(TWO_MEMBERS), cluster)
    rig.kube.put_foreign("Service", "demo")
    await rig.passes(3)
    ready = rig.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Conflict")
    assert "Service 'demo'" in ready["message"]
    assert rig.events.reasons() == ["Conflict", "MemberHealthy", "MemberHealthy"]
    assert rig.kube.objects[("Service", "demo")] == {
        "kind": "Service",
        "metadata": {"name": "demo"},
    }
    assert rig.routed() == ["a", "b"]  # the proxies still get their config
    del rig.kube.objects[("Service", "demo")]  # the user made room
    await rig.passes()
    assert rig.condition("Ready")["reason"] == "AllMembersHealthy"


async def test_an_invalid_spec_is_reported_and_the_last_good_config_keeps_serving() -> None:
    rig = Rig(pool(TWO_MEMBERS))
    await rig.passes()
    config = rig.kube.config()
    rig.events.posted.clear()
    bad = {"members": [{"name": "a", "url": "http://a:1"}, {"name": "a", "url": "http://c:1"}]}
    rig.controller.update(pool(bad, generation=2))
    writes = len(rig.kube.writes)
    delay = await rig.passes(2)
    assert len(rig.kube.writes) == writes and rig.kube.config() == config
    ready = rig.condition("Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "False", "InvalidSpec", 2)  # fmt: skip
    assert "spec.members[1].name" in ready["message"]
    assert rig.kube.statuses[-1]["endpoint"] == "http://demo.ns.svc:80"
    assert rig.events.reasons() == ["InvalidSpec"]
    assert delay == 5.0  # the last good spec's probes go on


async def test_a_pool_that_never_had_a_valid_spec_says_so_and_looks_again_in_30_seconds() -> None:
    rig = Rig(pool({"members": []}))
    delay = await rig.passes()
    assert delay == 30.0 and rig.kube.objects == {} and rig.probe.probed == []
    (status,) = rig.kube.statuses
    assert "endpoint" not in status and "proxies" not in status
    assert rig.condition("Ready")["reason"] == "InvalidSpec"
    assert rig.events.reasons() == ["InvalidSpec"]


async def test_a_missing_service_member_is_an_invalid_spec_until_the_service_appears() -> None:
    cluster = FakeCluster()
    spec = {"members": [{"name": "svc", "service": {"name": "backend", "port": 80}}]}
    rig = Rig(pool(spec), cluster)
    await rig.passes()
    assert rig.condition("Ready")["reason"] == "InvalidSpec"
    cluster.services.append("backend")
    await rig.passes()
    assert rig.routed() == ["svc"] and rig.condition("Ready")["reason"] == "AllMembersHealthy"


async def test_a_member_refusing_the_probe_is_auth_failed_in_status_events_conditions() -> None:
    """401/403 to the operator's probe (which carries no credential) names AuthFailed."""
    rig = Rig(pool(TWO_MEMBERS))
    await rig.passes()
    rig.events.posted.clear()
    refused = "probe /healthz returned HTTP 401 (auth-failed)"
    rig.probe.answer("http://b:1", False, refused)
    await rig.passes(2)
    assert rig.routed() == ["a"]
    assert [m["state"] for m in rig.kube.statuses[-1]["members"]] == ["Healthy", "AuthFailed"]
    message = f"member b (http://b:1) is AuthFailed (was Healthy): {refused}"
    assert rig.events.posted == [("Warning", "MemberAuthFailed", message)]
    degraded = rig.condition("Degraded")
    assert degraded["reason"] == "MembersAuthFailed" and degraded["message"].endswith(": b")
    restarted = MemberRecords(rig.kube.statuses[-1]["members"])  # after an operator restart
    assert restarted.by_name["b"].state == "AuthFailed" and restarted.unhealthy() == {"b"}
    rig.probe.answer("http://b:1", True)
    await rig.passes(2)
    assert rig.routed() == ["a", "b"] and rig.events.reasons()[-1] == "MemberHealthy"
    assert rig.condition("Degraded")["status"] == "False"


async def test_a_member_that_fails_its_probes_leaves_the_config_with_an_event() -> None:
    rig = Rig(pool(TWO_MEMBERS))
    await rig.passes()
    assert rig.events.posted == [
        ("Normal", "MemberHealthy", "member a (http://a:1) is Healthy (was Unknown)"),
        ("Normal", "MemberHealthy", "member b (http://b:1) is Healthy (was Unknown)"),
    ]
    rig.events.posted.clear()
    rig.probe.answer("http://b:1", False, "probe /healthz timed out after 1s")
    await rig.passes()  # one failure: not yet (unhealthyThreshold is 2)
    assert rig.routed() == ["a", "b"] and rig.events.posted == []
    await rig.passes()
    assert rig.routed() == ["a"]
    message = "member b (http://b:1) is Unhealthy (was Healthy): probe /healthz timed out after 1s"
    assert rig.events.posted == [("Warning", "MemberUnhealthy", message)]
    assert rig.condition("Degraded")["message"] == "unhealthy: b"
    rig.probe.answer("http://b:1", True)
    await rig.passes()
    assert rig.routed() == ["a", "b"] and rig.events.reasons()[-1] == "MemberHealthy"


async def test_probing_off_counts_every_member_healthy_without_probing() -> None:
    rig = Rig(pool(TWO_MEMBERS | {"healthCheck": {"enabled": False}}))
    await rig.passes()
    assert rig.probe.probed == []
    assert rig.kube.statuses[-1]["ready"] == "2/2"
    assert {m["message"] for m in rig.kube.statuses[-1]["members"]} == {
        "not probed: healthCheck.enabled is false"
    }
    assert rig.events.reasons() == ["MemberHealthy", "MemberHealthy"]


async def test_selector_members_follow_ready_pods() -> None:
    cluster = FakeCluster()
    spec = {"memberSelector": {"matchLabels": {"app": "w"}, "port": 9000}}
    rig = Rig(pool(spec), cluster)
    await rig.passes()
    assert rig.kube.statuses[-1]["ready"] == "0/0"
    cluster.pods.append(PodInfo("w-1", {"app": "w"}, "10.0.0.1", True, False))
    await rig.passes()
    assert rig.routed() == ["w-1"] and rig.kube.statuses[-1]["ready"] == "1/1"


async def test_stuck_proxy_pods_are_reported_once_and_so_is_their_recovery() -> None:
    cluster = FakeCluster()
    rig = Rig(pool(TWO_MEMBERS), cluster)
    stuck = PodInfo("demo-proxy-1", names.labels("demo"), None, False, False, "ErrImagePull: no")
    cluster.pods.append(stuck)
    rig.probe.answer("http://a:1", False)
    rig.probe.answer("http://b:1", False)
    await rig.passes(2)
    assert rig.events.reasons() == ["ProxyPodsFailing", "MemberUnhealthy", "MemberUnhealthy"]
    assert rig.condition("ProxyAvailable")["status"] == "False"
    assert rig.kube.statuses[-1]["proxies"] == "0/1"
    cluster.pods[0] = PodInfo("demo-proxy-1", names.labels("demo"), "10.0.0.9", True, False)
    await rig.passes()
    assert rig.events.reasons()[-1] == "ProxiesReady"
    assert rig.events.reasons().count("ProxyPodsFailing") == 1
    assert rig.condition("ProxyAvailable")["reason"] == "ProxiesReady"


@pytest.mark.parametrize(
    ("failures", "waits"),
    [
        (0, [5.0]),
        (3, [1.0, 2.0, 4.0, 5.0]),
        (8, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 5.0]),
    ],
)
async def test_a_failing_pass_backs_off_doubling_up_to_a_minute(
    failures: int, waits: list[float]
) -> None:
    rig = Rig(pool(TWO_MEMBERS))
    rig.kube.status_errors = [RuntimeError("API down")] * failures
    rig.clock.stop_after_waits = len(waits)
    with pytest.raises(asyncio.CancelledError):
        await rig.controller.run()
    assert rig.clock.waits == waits
    assert len(rig.kube.statuses) == 1


class SharedLog(FakeKube):
    """One pool's API writes, noted in a log every pool shares; each call yields once."""

    def __init__(self, log: list[str], name: str) -> None:
        super().__init__()
        self.log, self.name = log, name

    async def apply_owned(self, manifest: Any, owner_uid: str, new: bool = False) -> Any:
        self.log.append(f"{self.name} apply")
        await asyncio.sleep(0)
        return await super().apply_owned(manifest, owner_uid, new)

    async def patch_pool_status(self, namespace: str, name: str, status: Any) -> None:
        self.log.append(f"{self.name} status")
        await asyncio.sleep(0)
        await super().patch_pool_status(namespace, name, status)


async def test_new_pools_take_their_first_pass_in_order_of_arrival_a_few_at_once() -> None:
    log: list[str] = []
    gate = asyncio.Semaphore(2)
    controllers = []
    for i in range(6):
        body = pool(TWO_MEMBERS, uid=f"uid-{i}")
        clock = FakeClock(stop_after_waits=1)  # each loop ends after its first pass
        controllers.append(PoolController(SharedLog(log, f"p{i}"), FakeCluster().view(),
                                          FakeProbe(), Events(), body, clock=clock,
                                          first_passes=gate))  # fmt: skip
    tasks = [asyncio.create_task(c.run()) for c in controllers]
    await asyncio.gather(*tasks, return_exceptions=True)
    statuses = [entry.split()[0] for entry in log if entry.endswith("status")]
    assert statuses == [f"p{i}" for i in range(6)]
    # The first two were Ready before the last two made any call.
    assert log.index("p1 status") < log.index("p4 apply")


async def test_a_pass_that_only_the_probe_timer_woke_probes_and_plans_nothing_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plans = []
    real_plan = controller_module.plan_pool
    monkeypatch.setattr(controller_module, "plan_pool", lambda i: plans.append(1) or real_plan(i))
    rig = Rig(pool(TWO_MEMBERS))
    await rig.passes()
    for _ in range(10):
        rig.clock.advance(5.0)
        await rig.controller.reconcile(woken=False)
    assert len(plans) == 1 and len(rig.probe.probed) == 22  # probed every time, planned once
    rig.probe.answer("http://b:1", False, "probe /healthz returned HTTP 503")
    for _ in range(2):
        rig.clock.advance(5.0)
        await rig.controller.reconcile(woken=False)
    assert len(plans) == 2  # b flipped: a full pass, the config and the status follow
    assert rig.routed() == ["a"] and rig.kube.statuses[-1]["members"][1]["state"] == "Unhealthy"
    rig.clock.advance(RESYNC_SECONDS)
    await rig.controller.reconcile(woken=False)
    assert len(plans) == 3  # the owned objects are due for their resync


async def test_a_failed_probe_that_flips_nothing_writes_no_status() -> None:
    rig = Rig(pool(TWO_MEMBERS))
    await rig.passes()
    rig.probe.answer("http://b:1", False, "probe /healthz timed out after 1s")
    await rig.passes()  # one failure of two needed
    rig.probe.answer("http://b:1", True)
    await rig.passes()
    assert len(rig.kube.statuses) == 1
