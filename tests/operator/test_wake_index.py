"""Which pools a Service or Pod event wakes: the index kept as pools change (table tests)."""

from __future__ import annotations

from typing import Any

import pytest

from servicepool_operator.names import POOL_LABEL
from servicepool_operator.wake_index import Key, WakeIndex

WEB = ("ns", "web")  # selects app=w, tier=front
SVC = ("ns", "svc")  # names Services s1 and s2 as members
MIXED = ("ns", "mixed")  # a static URL, Service s2, and a selector app=w
ELSEWHERE = ("other", "web")  # same selector and Service, another namespace


def body(**spec: Any) -> dict[str, Any]:
    return {"metadata": {}, "spec": spec}


def service(name: str) -> dict[str, Any]:
    return {"name": name, "service": {"name": name, "port": 80}}


def index() -> WakeIndex:
    pools = WakeIndex()
    pools.remember(WEB, body(memberSelector={"matchLabels": {"app": "w", "tier": "front"}}))
    pools.remember(SVC, body(members=[service("s1"), service("s2")]))
    static = {"name": "u", "url": "http://u:1"}
    selector = {"matchLabels": {"app": "w"}, "port": 80}
    pools.remember(MIXED, body(members=[static, service("s2")], memberSelector=selector))
    pools.remember(
        ELSEWHERE, body(members=[service("s1")], memberSelector={"matchLabels": {"app": "w"}})
    )
    return pools


@pytest.mark.parametrize(
    ("namespace", "name", "woken"),
    [
        ("ns", "s1", {SVC}),
        ("ns", "s2", {SVC, MIXED}),
        ("other", "s1", {ELSEWHERE}),
        ("ns", "web", set()),  # a pool's own Service: no pool names it as a member
        ("ns", "unknown", set()),
    ],
)
def test_a_service_event_wakes_the_pools_that_name_it_as_a_member(
    namespace: str, name: str, woken: set[Key]
) -> None:
    assert index().for_service(namespace, name) == woken


@pytest.mark.parametrize(
    ("namespace", "labels", "woken"),
    [
        ("ns", {"app": "w", "tier": "front", "x": "y"}, {WEB, MIXED}),
        ("ns", {"app": "w"}, {MIXED}),
        ("ns", {"tier": "front"}, set()),
        ("ns", {"app": "other"}, set()),
        ("ns", {}, set()),
        ("other", {"app": "w", "tier": "front"}, {ELSEWHERE}),
        ("ns", {POOL_LABEL: "svc"}, {SVC}),  # a pool's own proxy Pod
        ("ns", {POOL_LABEL: "svc", "app": "w"}, {SVC, MIXED}),
    ],
)
def test_a_pod_event_wakes_the_pools_whose_selector_matches_it(
    namespace: str, labels: dict[str, str], woken: set[Key]
) -> None:
    assert index().for_pod(namespace, "p", labels) == woken


@pytest.mark.parametrize(
    ("before", "after", "deleted", "woken"),
    [
        ({"app": "w", "tier": "front"}, {"app": "gone"}, False, {WEB, MIXED}),
        ({"app": "w", "tier": "front"}, {"app": "w"}, False, {WEB, MIXED}),
        ({"app": "gone"}, {"app": "w"}, False, {MIXED}),
        ({"app": "w"}, {"app": "w"}, True, {MIXED}),
        ({POOL_LABEL: "svc"}, {}, False, {SVC}),
    ],
)
def test_a_pod_whose_labels_changed_wakes_the_pools_of_its_old_and_new_labels(
    before: dict[str, str], after: dict[str, str], deleted: bool, woken: set[Key]
) -> None:
    pools = index()
    pools.for_pod("ns", "p", before)
    assert pools.for_pod("ns", "p", after, deleted=deleted) == woken


def test_a_deleted_pod_is_forgotten_and_a_new_one_of_that_name_starts_afresh() -> None:
    pools = index()
    pools.for_pod("ns", "p", {"app": "w"})
    pools.for_pod("ns", "p", {"app": "w"}, deleted=True)
    assert pools.pod_labels == {}
    assert pools.for_pod("ns", "p", {"app": "other"}) == set()


def test_a_changed_or_deleted_pool_is_woken_by_what_its_spec_names_now_and_nothing_else() -> None:
    pools = index()
    pools.remember(SVC, body(members=[service("s3")]))
    assert pools.for_service("ns", "s1") == set()
    assert pools.for_service("ns", "s3") == {SVC}
    pools.remember(WEB, body(memberSelector={"matchLabels": {"app": "v"}}))
    assert pools.for_pod("ns", "p", {"app": "w", "tier": "front"}) == {MIXED}
    assert pools.for_pod("ns", "q", {"app": "v"}) == {WEB}
    for key in (WEB, SVC, MIXED, ELSEWHERE):
        pools.forget(key)
    assert (pools.by_service, pools.by_pair, pools.pools) == ({}, {}, {})


@pytest.mark.parametrize(
    "spec",
    [
        {"members": "not a list of members"},
        {"members": [None, {"service": "s1"}, {"service": {"name": 3}}]},
        {"memberSelector": {"matchLabels": {}}},
        {"memberSelector": "app=w"},
        {},
    ],
)
def test_an_invalid_spec_is_indexed_for_what_it_clearly_names_and_never_raises(
    spec: dict[str, Any],
) -> None:
    pools = WakeIndex()
    pools.remember(WEB, body(**spec))
    assert pools.for_service("ns", "s1") == set()
    assert pools.for_pod("ns", "p", {"app": "w"}) == set()
