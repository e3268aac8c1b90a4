"""Leader election on a coordination.k8s.io Lease: one operator replica acts at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("servicepool.operator")


def utc_now() -> datetime:
    """The wall time a Lease records."""
    return datetime.now(UTC)


class LeaseApi(Protocol):
    """The Lease calls of CoordinationV1Api that leader election makes."""

    def read_namespaced_lease(self, name: str, namespace: str) -> client.V1Lease: ...

    def create_namespaced_lease(self, namespace: str, body: client.V1Lease) -> client.V1Lease: ...

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: client.V1Lease
    ) -> client.V1Lease: ...


class LeaderElector:
    """Holds (or waits for) a Lease; `is_leader` tells whether this replica may act."""

    def __init__(
        self,
        api: LeaseApi,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
        retry_seconds: float = 2.0,
        now: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = retry_seconds  # how often a standby looks for an expired lease
        self.now = now  # wall time, compared with the holder's renewTime
        self.monotonic = monotonic  # how long since this replica last reached the lease
        self.last_success: float | None = None
        self.is_leader = False
        self.changed = asyncio.Event()

    def _try_acquire(self) -> bool:
        now = self.now()
        spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.lease_seconds,
            acquire_time=now,
            renew_time=now,
        )
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace), spec=spec
            )
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as create_exc:
                if create_exc.status == 409:  # someone else was faster
                    return False
                raise
            return True
        current = lease.spec
        holder = current.holder_identity if current else None
        renewed = current.renew_time if current else None
        duration = (current.lease_duration_seconds if current else None) or self.lease_seconds
        expired = renewed is None or renewed + timedelta(seconds=duration) < now
        if holder != self.identity and not expired:
            return False
        if holder == self.identity and current is not None and current.acquire_time:
            spec.acquire_time = current.acquire_time
        lease.spec = spec
        try:
            # resourceVersion in the body makes this a compare-and-swap.
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _set(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            log.info(
                "leader election: %s %s lease %s/%s",
                self.identity,
                "holds" if leader else "lost",
                self.namespace,
                self.name,
            )
            self.changed.set()

    async def step(self) -> float:
        """Try once to take or renew the lease; returns seconds until the next try.

        When the API cannot be reached, leadership lasts until the lease would have expired.
        """
        try:
            acquired = await asyncio.to_thread(self._try_acquire)
            if acquired:
                self.last_success = self.monotonic()
            self._set(acquired)
        except Exception as exc:
            log.warning("leader election: cannot reach the lease: %s", exc)
            last = self.last_success
            if last is None or self.monotonic() - last > self.lease_seconds:
                self._set(False)
        return self.renew_seconds if self.is_leader else self.retry_seconds

    async def run(self) -> None:
        """Acquire and renew until cancelled."""
        while True:
            delay = await self.step()
            await asyncio.sleep(delay)

    async def release(self) -> None:
        """Give the lease up on shutdown so another replica takes over at once."""
        if not self.is_leader:
            return

        def _release() -> None:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)

        try:
            await asyncio.to_thread(_release)
        except Exception as exc:
            log.warning("leader election: could not release the lease: %s", exc)
        self._set(False)
