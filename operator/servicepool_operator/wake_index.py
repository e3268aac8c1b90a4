"""Which pools an event about a Service or a Pod concerns, kept as pools change (pure).

A Service event concerns the pools that name the Service as a member; a Pod event the pools
whose selector matches the Pod's labels, before or after the change (a Pod that stops matching
must still wake the pool that had it), and the pool whose proxy the Pod is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .names import POOL_LABEL

Key = tuple[str, str]  # (namespace, name)
Labels = Mapping[str, str]
Pair = tuple[str, str, str]  # (namespace, label key, label value)


def service_members(spec: Mapping[str, Any]) -> set[str]:
    """Names of the Services the spec lists as members (read leniently: it may be invalid)."""
    found = set()
    for member in spec.get("members") or []:
        service = member.get("service") if isinstance(member, Mapping) else None
        name = service.get("name") if isinstance(service, Mapping) else None
        if isinstance(name, str):
            found.add(name)
    return found


def match_labels(spec: Mapping[str, Any]) -> dict[str, str] | None:
    """The selector's labels, or None when the pool selects no Pods."""
    selector = spec.get("memberSelector")
    labels = selector.get("matchLabels") if isinstance(selector, Mapping) else None
    if not isinstance(labels, Mapping) or not labels:
        return None
    return {str(k): str(v) for k, v in labels.items()}


def selects(selector: Labels, labels: Labels) -> bool:
    """True when the Pod's labels hold every label of the selector."""
    return all(labels.get(k) == v for k, v in selector.items())


class WakeIndex:
    """Pools by the Services they name and by one label of their selector; Pods' last labels."""

    def __init__(self) -> None:
        self.by_service: dict[Key, set[Key]] = {}  # (namespace, Service) -> pools
        self.by_pair: dict[Pair, dict[Key, dict[str, str]]] = {}  # -> pools and their selector
        self.pools: dict[Key, tuple[set[str], Pair | None]] = {}  # what to undo on forget
        self.pod_labels: dict[Key, dict[str, str]] = {}  # (namespace, Pod) -> last labels seen

    def remember(self, key: Key, body: Mapping[str, Any]) -> None:
        """Index the pool's newest spec (replacing what its previous spec said)."""
        self.forget(key)
        namespace = key[0]
        spec = body.get("spec") or {}
        services = service_members(spec)
        for service in services:
            self.by_service.setdefault((namespace, service), set()).add(key)
        selector = match_labels(spec)
        pair = None
        if selector is not None:
            label, value = min(selector.items())  # any one label narrows the Pods to check
            pair = (namespace, label, value)
            self.by_pair.setdefault(pair, {})[key] = selector
        self.pools[key] = (services, pair)

    def forget(self, key: Key) -> None:
        """The pool was deleted (or is about to be indexed again)."""
        services, pair = self.pools.pop(key, (set(), None))
        for service in services:
            pools = self.by_service.get((key[0], service), set())
            pools.discard(key)
            if not pools:
                self.by_service.pop((key[0], service), None)
        if pair is not None:
            selectors = self.by_pair.get(pair, {})
            selectors.pop(key, None)
            if not selectors:
                self.by_pair.pop(pair, None)

    def for_service(self, namespace: str, name: str) -> set[Key]:
        """The pools that name this Service as a member."""
        return set(self.by_service.get((namespace, name), ()))

    def for_pod(self, namespace: str, name: str, labels: Labels, deleted: bool = False) -> set[Key]:
        """The pools this Pod event concerns; remembers the Pod's labels for its next event."""
        before = self.pod_labels.get((namespace, name))
        if deleted:
            self.pod_labels.pop((namespace, name), None)
        else:
            self.pod_labels[(namespace, name)] = dict(labels)
        label_sets = [labels] if before is None or before == labels else [labels, before]
        pools = self._selecting(namespace, label_sets)
        for seen in label_sets:
            owner = seen.get(POOL_LABEL)
            if owner is not None:
                pools.add((namespace, owner))
        return pools

    def _selecting(self, namespace: str, label_sets: Iterable[Labels]) -> set[Key]:
        pools = set()
        for labels in label_sets:
            for label, value in labels.items():
                for key, selector in self.by_pair.get((namespace, label, value), {}).items():
                    if selects(selector, labels):
                        pools.add(key)
        return pools
