"""How a pool's proxy Pods are doing, from the Pods the operator already watches (pure).

`kubectl get sp` should say when the proxies cannot run (an image nobody can pull, a crash
loop, no node to schedule on), not only whether the members are healthy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import names
from .membership import PodInfo


@dataclass(frozen=True, slots=True)
class ProxyPods:
    """The pool's proxy Pods: how many are wanted and ready, and what holds the others."""

    wanted: int
    ready: int
    problems: tuple[str, ...]  # "<pod>: <Reason>: <message>", one per stuck Pod

    @classmethod
    def of(cls, pods: Iterable[PodInfo], pool: str, wanted: int) -> ProxyPods:
        """Count the live Pods that carry the pool's proxy labels."""
        selector = names.selector_labels(pool).items()
        mine = [
            p for p in pods
            if not p.terminating and all(p.labels.get(k) == v for k, v in selector)
        ]  # fmt: skip
        problems = tuple(f"{p.name}: {p.problem}" for p in sorted(mine, key=lambda p: p.name)
                         if not p.ready and p.problem)  # fmt: skip
        return cls(wanted, sum(1 for p in mine if p.ready), problems)

    @property
    def summary(self) -> str:
        """Ready over wanted, as in `kubectl get sp`."""
        return f"{self.ready}/{self.wanted}"

    def condition(self) -> tuple[bool, str, str]:
        """The ProxyAvailable condition (status, reason, message): True while any serves."""
        message = f"{self.ready} of {self.wanted} proxy Pods are ready"
        if self.problems:
            message = f"{message}; {'; '.join(self.problems)}"[:1024]
        if self.wanted == 0:
            return True, "ScaledToZero", "spec.proxy.replicas is 0: the pool serves nobody"
        if self.ready >= self.wanted:
            return True, "ProxiesReady", message
        if self.ready > 0:
            return True, "SomeProxiesReady", message
        if self.problems:
            return False, "ProxyPodsFailing", message
        return False, "ProxiesStarting", message
