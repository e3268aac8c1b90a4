"""Kubernetes API calls the operator makes; blocking client calls run in threads."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from . import names
from .json_api import MERGE_PATCH, JsonApi, Kind, owned_kinds

# API calls in flight at once: as many threads make them as the client keeps connections,
# so that no call waits for a connection or opens one only to throw it away (urllib3's pool
# holds 10 by default). A thousand pools starting at once keep them all busy.
API_CONCURRENCY = 32
POOLS = Kind(f"{names.GROUP}/{names.VERSION}", names.PLURAL)


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a Pod, else the kubeconfig ($KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    configuration.connection_pool_maxsize = API_CONCURRENCY
    return client.ApiClient(configuration)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What applying one object did: created, updated, unchanged, or a conflict."""

    action: str
    message: str = ""

    @property
    def conflict(self) -> bool:
        return self.action == "conflict"


def is_subset(desired: Any, actual: Any) -> bool:
    """True when every field we set has the value we want (server defaults are ignored)."""
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(
            key in actual and is_subset(value, actual[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return False
        return all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
    return bool(desired == actual)


def owned_by(actual: Mapping[str, Any], uid: str) -> bool:
    """True when the object's owner references name the pool."""
    owners = (actual.get("metadata") or {}).get("ownerReferences") or []
    return any(owner.get("uid") == uid for owner in owners)


class KubeClient:
    """The handful of API operations the operator needs."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.threads = ThreadPoolExecutor(API_CONCURRENCY, thread_name_prefix="kube-api")
        self.coordination = client.CoordinationV1Api(api_client)
        self.json = JsonApi(api_client)
        self.policy_api_version = self._disruption_budget_version()
        self.kinds = owned_kinds(self.policy_api_version)

    def _disruption_budget_version(self) -> str:
        """policy/v1 from Kubernetes 1.21, policy/v1beta1 before (1.20)."""
        try:
            groups = client.ApisApi(self.api_client).get_api_versions().groups
        except Exception:  # discovery failed: assume a current cluster
            return "policy/v1"
        for group in groups:
            if group.name == "policy":
                versions = {v.group_version for v in group.versions}
                return "policy/v1" if "policy/v1" in versions else "policy/v1beta1"
        return "policy/v1"

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        call = functools.partial(function, *args)
        return await asyncio.get_running_loop().run_in_executor(self.threads, call)

    def _read(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as it is, or None when there is none."""
        try:
            found: dict[str, Any] = self.json.call("GET", kind.item(namespace, name))
            return found
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    def _create(self, kind: Kind, manifest: Mapping[str, Any]) -> None:
        namespace = manifest["metadata"]["namespace"]
        self.json.call("POST", kind.collection(namespace), manifest, answer=False)

    def _apply_sync(self, manifest: Mapping[str, Any], owner_uid: str, new: bool) -> ApplyResult:
        kind = self.kinds[manifest["kind"]]
        name = manifest["metadata"]["name"]
        namespace = manifest["metadata"]["namespace"]
        if new:  # most likely absent: one call instead of a read and a create
            try:
                self._create(kind, manifest)
                return ApplyResult("created")
            except ApiException as exc:
                if exc.status != 409:
                    raise
        actual = self._read(kind, namespace, name)
        if actual is None:
            self._create(kind, manifest)
            return ApplyResult("created")
        if not owned_by(actual, owner_uid):
            return ApplyResult(
                "conflict",
                f"{manifest['kind']} {name!r} already exists and is not owned by this pool; "
                "rename or delete it",
            )
        if is_subset(manifest, actual):
            return ApplyResult("unchanged")
        path = kind.item(namespace, name)
        self.json.call("PATCH", path, manifest, kind.patch_type, answer=False)
        return ApplyResult("updated")

    async def apply_owned(
        self, manifest: Mapping[str, Any], owner_uid: str, new: bool = False
    ) -> ApplyResult:
        """Create or update an object the pool owns; never touch one it does not own.

        An object that is already as rendered costs a read and no write. `new` says the
        object most likely does not exist yet (a pool never reconciled): create first, and
        read and compare only if it does exist.
        """
        return await self._call(self._apply_sync, manifest, owner_uid, new)

    def _delete_sync(self, kind: str, name: str, namespace: str, owner_uid: str) -> bool:
        actual = self._read(self.kinds[kind], namespace, name)
        if actual is None or not owned_by(actual, owner_uid):
            return False
        self.json.call("DELETE", self.kinds[kind].item(namespace, name), answer=False)
        return True

    async def delete_owned(self, kind: str, name: str, namespace: str, owner_uid: str) -> bool:
        """Delete an object the pool owns (never one it does not); True when deleted."""
        return await self._call(self._delete_sync, kind, name, namespace, owner_uid)

    async def patch_pool_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the pool's status subresource."""
        path = f"{POOLS.item(namespace, name)}/status"
        body = {"status": status}
        await self._call(self.json.call, "PATCH", path, body, MERGE_PATCH, False)
