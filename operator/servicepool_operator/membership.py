"""Turn a pool spec plus what the cluster holds into concrete members (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from servicepool_api.spec import Member, PoolSpec


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the operator keeps of a Pod: enough to decide membership and explain a proxy."""

    name: str
    labels: Mapping[str, str]
    ip: str | None
    ready: bool
    terminating: bool
    problem: str | None = None  # why it cannot run, as the kubelet or scheduler says

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodInfo:
        """Extract from a Pod object as the API returns it."""
        metadata = body.get("metadata") or {}
        status = body.get("status") or {}
        conditions = status.get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return cls(
            name=metadata.get("name", ""),
            labels=dict(metadata.get("labels") or {}),
            ip=status.get("podIP") or None,
            ready=ready,
            terminating=bool(metadata.get("deletionTimestamp")),
            problem=pod_problem(status),
        )


# Waiting reasons that are only a phase of a normal start.
STARTING = frozenset({"ContainerCreating", "PodInitializing"})


def pod_problem(status: Mapping[str, Any]) -> str | None:
    """Why a Pod's containers cannot run ("Reason: message"), or None when nothing is wrong."""
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in STARTING:
            return f"{reason}: {waiting.get('message') or 'waiting'}"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message', '')}"
    return None


class MembershipError(ValueError):
    """The spec names something that does not exist; the message names the field."""


def service_url(namespace: str, name: str, port: int, scheme: str) -> str:
    """The in-cluster URL of a Service port."""
    return f"{scheme}://{name}.{namespace}.svc:{port}"


def resolve_members(
    spec: PoolSpec,
    namespace: str,
    services: Iterable[str],
    pods: Iterable[PodInfo],
) -> list[Member]:
    """Every member as a URL member: static URLs, Services, and matching Ready Pods.

    Raises MembershipError when a Service member names a Service that does not exist.
    """
    known_services = set(services)
    members: list[Member] = []
    for index, member in enumerate(spec.members):
        if member.service is None:
            members.append(member)
            continue
        ref = member.service
        if ref.name not in known_services:
            raise MembershipError(
                f"spec.members[{index}].service.name: Service {ref.name!r} not found in "
                f"namespace {namespace!r}"
            )
        url = service_url(namespace, ref.name, ref.port, ref.scheme)
        members.append(member.model_copy(update={"url": url, "service": None}))
    selector = spec.memberSelector
    if selector is not None:
        taken = {m.name for m in members}
        for pod in sorted(pods, key=lambda p: p.name):
            if not pod.ready or not pod.ip or pod.terminating or pod.name in taken:
                continue
            if any(pod.labels.get(k) != v for k, v in selector.matchLabels.items()):
                continue
            host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
            try:
                members.append(
                    Member(
                        name=pod.name,
                        url=f"{selector.scheme}://{host}:{selector.port}",
                        weight=selector.weight,
                        priority=selector.priority,
                        maxInFlight=selector.maxInFlight,
                        models=selector.models,
                        capabilities=selector.capabilities,
                    )
                )
            except ValidationError:  # a name or address no member can have: not a member
                continue
    return members


def check_not_empty(spec: PoolSpec) -> None:
    """A pool needs members or a selector that can find some."""
    if not spec.members and spec.memberSelector is None:
        raise MembershipError("spec.members: the pool has no members and no memberSelector")
