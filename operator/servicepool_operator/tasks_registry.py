"""The running pool loops, keyed by (namespace, name)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .wake_index import Key, Labels, WakeIndex


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
        self.interest = WakeIndex()

    def remember(self, key: Key, body: Mapping[str, Any]) -> None:
        """Keep the newest body; a running loop gets it too."""
        self.bodies[key] = body
        self.interest.remember(key, body)
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
        self.interest.forget(key)
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

    def wake_for_service(self, namespace: str, name: str) -> None:
        """A Service changed, appeared or left: wake the pools that name it as a member."""
        for key in self.interest.for_service(namespace, name):
            self.wake(key)

    def wake_for_pod(self, namespace: str, name: str, labels: Labels, deleted: bool) -> None:
        """A Pod changed, appeared or left: wake the pools it concerns (see WakeIndex)."""
        for key in self.interest.for_pod(namespace, name, labels, deleted):
            self.wake(key)
