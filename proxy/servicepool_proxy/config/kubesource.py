"""Follow the pool's ConfigMap through the Kubernetes API (when the proxy runs in a cluster).

The watch runs in a thread with the official client; new text is handed to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("servicepool.proxy")
CONFIG_KEY = "pool.yaml"


def make_core_api(kubeconfig: str | None) -> Any:
    """A CoreV1Api from the in-cluster service account, or from a kubeconfig file."""
    from kubernetes import client, config

    if kubeconfig:
        return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    try:
        config.load_incluster_config()
        return client.CoreV1Api(client.ApiClient())
    except config.ConfigException:
        return client.CoreV1Api(config.new_client_from_config())


def read_config_map_text(api: Any, namespace: str, name: str, key: str = CONFIG_KEY) -> str:
    """The pool text stored in the ConfigMap (raises if missing)."""
    config_map = api.read_namespaced_config_map(name, namespace)
    data = config_map.data or {}
    if key not in data:
        raise KeyError(f"ConfigMap {namespace}/{name} has no key {key!r}")
    return str(data[key])


class ConfigMapSource:
    """Watches one ConfigMap and offers each new version of its pool text."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        offer: Callable[[str, str], Any],
        key: str = CONFIG_KEY,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.key = key
        self.offer = offer
        self.connected = False
        self._stopped = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def source(self) -> str:
        return f"configmap {self.namespace}/{self.name}"

    def start(self) -> None:
        """Begin watching in a background thread."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="configmap-watch", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop watching."""
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def _deliver(self, config_map: Any) -> None:
        text = (config_map.data or {}).get(self.key)
        if text is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.offer, text, self.source)

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        selector = f"metadata.name={self.name}"
        resource_version: str | None = None
        backoff = 0.5
        while not self._stopped.is_set():
            try:
                if resource_version is None:
                    listing = self.api.list_namespaced_config_map(
                        self.namespace, field_selector=selector
                    )
                    resource_version = listing.metadata.resource_version
                    for item in listing.items:
                        self._deliver(item)
                self.connected = True
                backoff = 0.5
                self._watch = watch.Watch()
                for event in self._watch.stream(
                    self.api.list_namespaced_config_map,
                    self.namespace,
                    field_selector=selector,
                    resource_version=resource_version,
                    timeout_seconds=240,
                    _request_timeout=270,
                ):
                    if self._stopped.is_set():
                        return
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        resource_version = None
                        break
                    resource_version = obj.metadata.resource_version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._deliver(obj)
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: list again
                    resource_version = None
                    continue
                self._lost(f"HTTP {exc.status} {exc.reason}", backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # the API server is away: retry, keep serving
                self._lost(str(exc) or type(exc).__name__, backoff)
                backoff = min(backoff * 2, 30.0)

    def _lost(self, reason: str, backoff: float) -> None:
        if self.connected:
            log.warning(
                "lost the watch on %s (%s); serving the last good config", self.source, reason
            )
        self.connected = False
        self._stopped.wait(backoff)
