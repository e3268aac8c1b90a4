"""The ProxyAvailable condition: what `kubectl get sp` says about the pool's proxy Pods."""

from __future__ import annotations

from typing import Any

import pytest

from servicepool_operator import names
from servicepool_operator.membership import PodInfo, pod_problem
from servicepool_operator.proxies import ProxyPods
from servicepool_operator.status import build_status


def proxy_pod(name: str, ready: bool, problem: str | None = None, pool: str = "demo",
              terminating: bool = False) -> PodInfo:  # fmt: skip
    return PodInfo(name, names.labels(pool), "198.18.0.7", ready, terminating, problem)


NEVER_PULL = 'ErrImageNeverPull: Container image "x:1" is not present with pull policy of Never'


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, None),
        ({"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}, None),
        ({"containerStatuses": [{"state": {"running": {}}}]}, None),
        ({"containerStatuses": [{"state": {"waiting": {
            "reason": "ErrImageNeverPull",
            "message": "Container image \"x:1\" is not present with pull policy of Never"}}}]},
         NEVER_PULL),
        ({"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
         "CrashLoopBackOff: waiting"),
        ({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                          "message": "0/1 nodes are available"}]},
         "Unschedulable: 0/1 nodes are available"),
    ],
)  # fmt: skip
def test_a_pod_problem_is_what_the_kubelet_or_scheduler_says(
    status: dict[str, Any], expected: str | None
) -> None:
    assert pod_problem(status) == expected


@pytest.mark.parametrize(
    ("pods", "wanted", "condition", "summary"),
    [
        ([proxy_pod("p1", True), proxy_pod("p2", True)], 2,
         (True, "ProxiesReady"), "2/2"),
        ([proxy_pod("p1", True), proxy_pod("p2", False, NEVER_PULL)], 2,
         (True, "SomeProxiesReady"), "1/2"),
        ([proxy_pod("p1", False, NEVER_PULL)], 1, (False, "ProxyPodsFailing"), "0/1"),
        ([proxy_pod("p1", False)], 1, (False, "ProxiesStarting"), "0/1"),
        ([], 0, (True, "ScaledToZero"), "0/0"),
        # Other pools' proxies and Pods on their way out do not count.
        ([proxy_pod("q1", True, pool="other"), proxy_pod("p0", True, terminating=True)], 1,
         (False, "ProxiesStarting"), "0/1"),
    ],
)  # fmt: skip
def test_proxy_availability_counts_the_pools_live_proxy_pods(
    pods: list[PodInfo], wanted: int, condition: tuple[bool, str], summary: str
) -> None:
    proxies = ProxyPods.of(pods, "demo", wanted)
    assert proxies.condition()[:2] == condition
    assert proxies.summary == summary


def test_a_stuck_proxy_pod_is_named_with_its_reason_in_the_condition() -> None:
    proxies = ProxyPods.of([proxy_pod("demo-proxy-abc", False, NEVER_PULL)], "demo", 1)
    status = build_status(generation=3, endpoint="", records=[], problem=None, previous={},
                          now="2026-11-25T00:00:00Z", proxies=proxies).to_api()  # fmt: skip
    (condition,) = [c for c in status["conditions"] if c["type"] == "ProxyAvailable"]
    assert condition["status"] == "False" and condition["reason"] == "ProxyPodsFailing"
    assert condition["message"] == f"0 of 1 proxy Pods are ready; demo-proxy-abc: {NEVER_PULL}"
    assert status["proxies"] == "0/1"
