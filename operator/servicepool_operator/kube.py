"""Kubernetes API calls the operator makes; blocking client calls run in threads."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from . import names

# API calls in flight at once: as many threads make them as the client keeps connections,
# so that no call waits for a connection or opens one only to throw it away (urllib3's pool
# holds 10 by default). A thousand pools starting at once keep them all busy.
API_CONCURRENCY = 32


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


@dataclass(frozen=True)
class _Kind:
    read: Callable[..., Any]
    create: Callable[..., Any]
    patch: Callable[..., Any]


class KubeClient:
    """The handful of API operations the operator needs."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.threads = ThreadPoolExecutor(API_CONCURRENCY, thread_name_prefix="kube-api")
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.policy_api_version = self._disruption_budget_version()
        # The generic API reaches policy/v1beta1 too, which newer clients no longer model.
        group, version = self.policy_api_version.split("/")
        pdbs = "poddisruptionbudgets"
        self._kinds = {
            "ConfigMap": _Kind(self.core.read_namespaced_config_map,
                               self.core.create_namespaced_config_map,
                               self.core.patch_namespaced_config_map),
            "Service": _Kind(self.core.read_namespaced_service,
                             self.core.create_namespaced_service,
                             self.core.patch_namespaced_service),
            "ServiceAccount": _Kind(self.core.read_namespaced_service_account,
                                    self.core.create_namespaced_service_account,
                                    self.core.patch_namespaced_service_account),
            "Deployment": _Kind(self.apps.read_namespaced_deployment,
                                self.apps.create_namespaced_deployment,
                                self.apps.patch_namespaced_deployment),
            "Role": _Kind(self.rbac.read_namespaced_role,
                          self.rbac.create_namespaced_role,
                          self.rbac.patch_namespaced_role),
            "RoleBinding": _Kind(self.rbac.read_namespaced_role_binding,
                                 self.rbac.create_namespaced_role_binding,
                                 self.rbac.patch_namespaced_role_binding),
            "NetworkPolicy": _Kind(self.networking.read_namespaced_network_policy,
                                   self.networking.create_namespaced_network_policy,
                                   self.networking.patch_namespaced_network_policy),
        }  # fmt: skip
        custom = self.custom
        self._kinds["PodDisruptionBudget"] = _Kind(
            lambda name, ns, **kw: custom.get_namespaced_custom_object(
                group, version, ns, pdbs, name, **kw),
            lambda ns, body: custom.create_namespaced_custom_object(group, version, ns, pdbs, body),
            lambda name, ns, body: custom.patch_namespaced_custom_object(
                group, version, ns, pdbs, name, body),
        )  # fmt: skip
        self._deletes = {
            "NetworkPolicy": self.networking.delete_namespaced_network_policy,
            "PodDisruptionBudget": lambda name, ns: custom.delete_namespaced_custom_object(
                group, version, ns, pdbs, name
            ),
        }

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

    def _apply_sync(self, manifest: Mapping[str, Any], owner_uid: str, new: bool) -> ApplyResult:
        kind = self._kinds[manifest["kind"]]
        name = manifest["metadata"]["name"]
        namespace = manifest["metadata"]["namespace"]
        if new:  # most likely absent: one call instead of a read and a create
            try:
                kind.create(namespace, manifest)
                return ApplyResult("created")
            except ApiException as exc:
                if exc.status != 409:
                    raise
        try:
            raw = kind.read(name, namespace, _preload_content=False)
            actual = json.loads(raw.data)
        except ApiException as exc:
            if exc.status != 404:
                raise
            kind.create(namespace, manifest)
            return ApplyResult("created")
        if not owned_by(actual, owner_uid):
            return ApplyResult(
                "conflict",
                f"{manifest['kind']} {name!r} already exists and is not owned by this pool; "
                "rename or delete it",
            )
        if is_subset(manifest, actual):
            return ApplyResult("unchanged")
        kind.patch(name, namespace, manifest)
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
        try:
            raw = self._kinds[kind].read(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        if not owned_by(json.loads(raw.data), owner_uid):
            return False
        self._deletes[kind](name, namespace)
        return True

    async def delete_owned(self, kind: str, name: str, namespace: str, owner_uid: str) -> bool:
        """Delete an object the pool owns (never one it does not); True when deleted."""
        return await self._call(self._delete_sync, kind, name, namespace, owner_uid)

    async def patch_pool_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the pool's status subresource."""
        await self._call(
            self.custom.patch_namespaced_custom_object_status,
            names.GROUP, names.VERSION, namespace, names.PLURAL, name, {"status": status},
        )  # fmt: skip
