"""The running pool loops, keyed by (namespace, name)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

Key = tuple[str, str]


class PoolLoop(Protocol):
    """What the registry needs of a pool's loop (a PoolController)."""

    body: Mapping[str, Any]
    wake: asyncio.Event

    @property
    def uid(self) -> str: ...

    def update(self, body: Mapping[str, Any]) -> None: ...

    async def run(self) -> None: ...


Factory = Callable[[Mapping[str, Any]], PoolLoop]


class PoolTasks:
    """Latest body of every pool, and the loop that serves it when this replica leads."""

    def __init__(self) -> None:
        self.bodies: dict[Key, Mapping[str, Any]] = {}
        self.controllers: dict[Key, PoolLoop] = {}
        self.tasks: dict[Key, asyncio.Task[None]] = {}

    def remember(self, key: Key, body: Mapping[str, Any]) -> None:
        """Keep the newest body; a running loop gets it too."""
        self.bodies[key] = body
        controller = self.controllers.get(key)
        if controller is not None:
            controller.update(body)

    def ensure(self, key: Key, factory: Factory) -> None:
        """Start the pool's loop unless it runs (a new uid means a new pool)."""
        body = self.bodies[key]
        controller = self.controllers.get(key)
        if controller is not None and controller.uid == body["metadata"]["uid"]:
            return
        if key in self.tasks:
            self.tasks.pop(key).cancel()
        controller = factory(body)
        self.controllers[key] = controller
        self.tasks[key] = asyncio.create_task(controller.run(), name=f"pool {key[0]}/{key[1]}")

    def start_all(self, factory: Factory) -> None:
        """Start loops for every known pool (on becoming leader)."""
        for key in list(self.bodies):
            self.ensure(key, factory)

    async def _stop(self, key: Key) -> None:
        self.controllers.pop(key, None)
        task = self.tasks.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def forget(self, key: Key) -> None:
        """The pool was deleted."""
        self.bodies.pop(key, None)
        await self._stop(key)

    async def stop_all(self) -> None:
        """Stop every loop (on losing leadership or shutting down)."""
        for key in list(self.tasks):
            await self._stop(key)

    def wake(self, key: Key) -> None:
        """Make one pool look at the cluster again (if this replica runs its loop)."""
        controller = self.controllers.get(key)
        if controller is not None:
            controller.wake.set()

    def wake_namespace(self, namespace: str, selector_only: bool) -> None:
        """Make pools of a namespace look at the cluster again."""
        for (pool_namespace, _), controller in self.controllers.items():
            if pool_namespace != namespace:
                continue
            if selector_only and not (controller.body.get("spec") or {}).get("memberSelector"):
                continue
            controller.wake.set()
