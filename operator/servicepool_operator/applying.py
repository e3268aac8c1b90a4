"""Writing a plan to the API: owned objects, the proxy ConfigMap, the status (thin I/O).

It remembers what it wrote, so that a quiet pass writes nothing: objects again only for a
new generation or every RESYNC_SECONDS, the ConfigMap when its text changes, the status
when `needs_write` says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from servicepool_api.status import PoolStatus

from . import names
from .kube import ApplyResult
from .planning import ConfigPlan, ObjectPlan, PoolRef
from .status import Problem, needs_write

log = logging.getLogger("servicepool.operator")

# Owned objects are re-checked this often even when nothing changed (someone may edit them).
RESYNC_SECONDS = 300.0


class PoolWrites(Protocol):
    """The API writes a pool loop makes (KubeClient, or a fake in tests)."""

    policy_api_version: str

    async def apply_owned(
        self, manifest: Mapping[str, Any], owner_uid: str, new: bool = False
    ) -> ApplyResult: ...

    async def delete_owned(self, kind: str, name: str, namespace: str, owner_uid: str) -> bool: ...

    async def patch_pool_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None: ...


class Applier:
    """Applies one pool's plans and remembers what is already in place."""

    def __init__(self, kube: PoolWrites, pool: PoolRef, status: Mapping[str, Any]) -> None:
        self.kube = kube
        self.pool = pool
        self.applied_generation: int | None = None
        self.applied_at: float | None = None
        self.applied_config: str | None = None
        self.written_status: Mapping[str, Any] = status  # as last written (or found)
        # A pool without a status was never reconciled: its objects most likely do not exist.
        self.new = not status

    def _log(self, message: str, *args: object) -> None:
        log.info("pool %s/%s: " + message, self.pool.namespace, self.pool.name, *args)

    async def apply_objects(self, plan: ObjectPlan, generation: int, now: float) -> Problem | None:
        """Delete unwanted kinds, create or update the rest; stops at the first conflict.

        Skipped when this generation is in place and the last resync is recent.
        """
        recent = self.applied_at is not None and now - self.applied_at <= RESYNC_SECONDS
        if self.applied_generation == generation and recent:
            return None
        pool = self.pool
        for kind in [] if self.new else plan.delete:  # a new pool has nothing to delete yet
            name = names.proxy_name(pool.name)
            if await self.kube.delete_owned(kind, name, pool.namespace, pool.uid):
                self._log("deleted %s (no longer wanted)", kind)
        for manifest in plan.apply:
            result = await self.kube.apply_owned(manifest, pool.uid, self.new)
            if result.conflict:
                return Problem("Conflict", result.message)
            if result.action != "unchanged":
                name = manifest["metadata"]["name"]
                self._log("%s %s %s", result.action, manifest["kind"], name)
        self.applied_generation = generation
        self.applied_at = now
        return None

    async def apply_config(self, plan: ConfigPlan) -> Problem | None:
        """Write the ConfigMap when the config text changed."""
        if plan.text == self.applied_config:
            return None
        result = await self.kube.apply_owned(plan.manifest, self.pool.uid, self.new)
        if result.conflict:
            return Problem("Conflict", result.message)
        self.applied_config = plan.text
        if result.action != "unchanged":
            self._log("proxy config %s (%d of %d members routed)",
                      result.action, plan.routed, plan.total)  # fmt: skip
        return None

    async def write_status(self, status: PoolStatus) -> bool:
        """Patch the status when it says something new; True when written."""
        document = status.to_api()
        if not needs_write(self.written_status, document):
            return False
        await self.kube.patch_pool_status(self.pool.namespace, self.pool.name, document)
        self.written_status = document
        self.new = False
        return True
