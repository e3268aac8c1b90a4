"""Render the objects a pool owns: proxy config, ConfigMap, Deployment, Service, RBAC (pure)."""

from __future__ import annotations

import functools
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servicepool_api import contract
from servicepool_api.policies import SecretKeyRef
from servicepool_api.spec import Member, PoolSpec

from . import names

Manifest = dict[str, Any]
# libyaml's emitter when PyYAML has it (the same text, faster).
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# The proxy goes on accepting at least this long after SIGTERM, failing readiness meanwhile,
# and then while new connections still arrive, so that kube-proxy has dropped the Pod from
# its rules before the listener closes.
PROXY_DRAIN_DELAY_SECONDS = 5
PROXY_GRACE_SECONDS = 25
# Longer than the longest drain plus the grace period: the kubelet never kills a draining proxy.
_LONGEST_SHUTDOWN = contract.ProxyOptions(
    drain_delay=PROXY_DRAIN_DELAY_SECONDS, grace_seconds=PROXY_GRACE_SECONDS
).longest_shutdown
PROXY_TERMINATION_GRACE_SECONDS = int(_LONGEST_SHUTDOWN) + 10


@dataclass(frozen=True)
class ProxyDefaults:
    """What the proxy Deployment uses where spec.proxy is silent: the operator's own image."""

    image: str = names.DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()


OPERATOR_DEFAULTS = ProxyDefaults()


def owner_reference(pool: str, uid: str) -> dict[str, Any]:
    """The reference that ties an object's life to the pool."""
    return {
        "apiVersion": names.API_VERSION_FULL,
        "kind": names.POOL_KIND,
        "name": pool,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(pool: str, namespace: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": names.labels(pool),
        "ownerReferences": [owner_reference(pool, uid)],
    }


def routed_members(members: list[Member], unhealthy: Collection[str]) -> list[Member]:
    """Members the proxies should use: all but the unhealthy ones, or all if none is healthy.

    With every member down the proxies keep the full list, so their own passive health
    and error messages say what is wrong instead of an empty pool.
    """
    healthy = [m for m in members if m.name not in unhealthy]
    return healthy or list(members)


def render_proxy_config(pool: str, namespace: str, spec: PoolSpec, members: list[Member]) -> str:
    """The pool file the proxies read: the spec with every member as a URL."""
    resolved = spec.model_copy(update={"members": members, "memberSelector": None})
    document = {
        "apiVersion": names.API_VERSION_FULL,
        "kind": names.POOL_KIND,
        "metadata": {"name": pool, "namespace": namespace},
        "spec": resolved.model_dump(mode="json", exclude_none=True, exclude={"proxy"}),
    }
    return yaml_of(json.dumps(document))


@functools.lru_cache(maxsize=8192)
def yaml_of(document: str) -> str:
    """The YAML of a JSON document, keys in their order. Every pass renders the config to
    compare it with the last, and emitting YAML was most of a pass's time: a pool at rest
    gets the text of its unchanged document from here."""
    return yaml.dump(json.loads(document), Dumper=SAFE_DUMPER, sort_keys=False)


def render_config_map(pool: str, namespace: str, uid: str, config: str) -> Manifest:
    """The ConfigMap holding the rendered proxy config."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(pool, namespace, names.proxy_name(pool), uid),
        "data": {contract.CONFIG_KEY: config},
    }


def proxy_options(pool: str, namespace: str, workers: int = 1) -> contract.ProxyOptions:
    """How the proxy in the Deployment runs: config from its ConfigMap (file and API),
    probing left to the operator, a drain before the listener closes, `workers` processes."""
    return contract.ProxyOptions(
        workers=workers,
        pool_path=Path(contract.CONFIG_MOUNT) / contract.CONFIG_KEY,
        config_map=(namespace, names.proxy_name(pool)),
        active_health=False,
        drain_delay=PROXY_DRAIN_DELAY_SECONDS,
        grace_seconds=PROXY_GRACE_SECONDS,
    )


def proxy_container(
    pool: str, namespace: str, spec: PoolSpec, defaults: ProxyDefaults
) -> dict[str, Any]:
    """The proxy container: hardened, probed on the admin port, config mounted read-only."""
    shape = spec.proxy
    return {
        "name": "proxy",
        "image": shape.image or defaults.image,
        "imagePullPolicy": shape.imagePullPolicy or defaults.image_pull_policy,
        "command": ["servicepool-proxy"],
        "args": contract.proxy_args(proxy_options(pool, namespace, shape.worker_processes())),
        "ports": [
            {"name": "http", "containerPort": contract.PROXY_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": contract.ADMIN_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "admin"},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "admin"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": shape.resources.model_dump(mode="json"),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "config", "mountPath": contract.CONFIG_MOUNT, "readOnly": True}],
    }


def mount_secrets(spec: PoolSpec, container: dict[str, Any], volumes: list[dict[str, Any]]) -> None:
    """Mount every referenced Secret read-only, only the keys the pool names."""
    for ref in referenced_secrets(spec):
        volume = f"secret-{ref.secretName}"
        keys = sorted({r.key for r in secret_refs(spec) if r.secretName == ref.secretName})
        container["volumeMounts"].append(
            {"name": volume, "mountPath": f"{contract.SECRETS_MOUNT}/{ref.secretName}",
             "readOnly": True}
        )  # fmt: skip
        volumes.append({
            "name": volume,
            "secret": {"secretName": ref.secretName,
                       "items": [{"key": key, "path": key} for key in keys]},
        })  # fmt: skip


def image_pull_secrets(spec: PoolSpec, defaults: ProxyDefaults) -> list[dict[str, str]]:
    """The pool's own pull secrets, else the operator's; they must live in the pool's namespace."""
    if spec.proxy.imagePullSecrets is not None:
        return [{"name": ref.name} for ref in spec.proxy.imagePullSecrets]
    return [{"name": name} for name in defaults.image_pull_secrets]


def spread_over_nodes(pool: str) -> dict[str, Any]:
    """Soft anti-affinity: the pool's proxies on different nodes where the scheduler can."""
    term = {"labelSelector": {"matchLabels": names.selector_labels(pool)},
            "topologyKey": "kubernetes.io/hostname"}  # fmt: skip
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": term}]}}  # fmt: skip


def render_deployment(
    pool: str, namespace: str, uid: str, spec: PoolSpec, defaults: ProxyDefaults = OPERATOR_DEFAULTS
) -> Manifest:
    """The proxy Deployment: non-root Pods spread over nodes, which drain before the kubelet
    may kill them."""
    name = names.proxy_name(pool)
    container = proxy_container(pool, namespace, spec, defaults)
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": name}}]
    mount_secrets(spec, container, volumes)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": name,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": PROXY_TERMINATION_GRACE_SECONDS,
        "affinity": spread_over_nodes(pool),
        "containers": [container],
        "volumes": volumes,
    }
    pull_secrets = image_pull_secrets(spec, defaults)
    if pull_secrets:
        pod_spec["imagePullSecrets"] = pull_secrets
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(pool, namespace, name, uid),
        "spec": {
            "replicas": spec.proxy.replicas,
            "selector": {"matchLabels": names.selector_labels(pool)},
            "template": {"metadata": {"labels": names.labels(pool)}, "spec": pod_spec},
        },
    }


def secret_refs(spec: PoolSpec) -> list[SecretKeyRef]:
    """Every Secret key the pool references (client tokens, member credential)."""
    refs = []
    if spec.access is not None and spec.access.tokens is not None:
        refs.append(spec.access.tokens)
    if spec.upstreamAuth is not None:
        refs.append(spec.upstreamAuth.secret)
    return refs


def referenced_secrets(spec: PoolSpec) -> list[SecretKeyRef]:
    """One reference per distinct Secret, in a stable order."""
    seen: dict[str, SecretKeyRef] = {}
    for ref in secret_refs(spec):
        seen.setdefault(ref.secretName, ref)
    return [seen[name] for name in sorted(seen)]


def render_network_policy(pool: str, namespace: str, uid: str, spec: PoolSpec) -> Manifest | None:
    """Only Pods of the allowed namespaces reach the proxy's traffic port (None: no policy).

    Namespaces are matched by their kubernetes.io/metadata.name label (set automatically
    from Kubernetes 1.21; label namespaces yourself on 1.20). The admin port stays open
    for metrics scraping.
    """
    if spec.access is None or spec.access.allowedNamespaces is None:
        return None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(pool, namespace, names.proxy_name(pool), uid),
        "spec": {
            "podSelector": {"matchLabels": names.selector_labels(pool)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"namespaceSelector": {"matchExpressions": [{
                        "key": "kubernetes.io/metadata.name", "operator": "In",
                        "values": list(spec.access.allowedNamespaces),
                    }]}}],
                    "ports": [{"protocol": "TCP", "port": contract.PROXY_PORT}],
                },
                {"ports": [{"protocol": "TCP", "port": contract.ADMIN_PORT}]},
            ],
        },
    }  # fmt: skip


def render_disruption_budget(
    pool: str, namespace: str, uid: str, spec: PoolSpec, api_version: str
) -> Manifest | None:
    """Keep at least one proxy up through voluntary disruptions (None with one replica)."""
    if spec.proxy.replicas <= 1:
        return None
    return {
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(pool, namespace, names.proxy_name(pool), uid),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": names.selector_labels(pool)}},
    }


def render_service(pool: str, namespace: str, uid: str, spec: PoolSpec) -> Manifest:
    """The Service named after the pool: the stable name clients call."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(pool, namespace, names.service_name(pool), uid),
        "spec": {
            "selector": names.selector_labels(pool),
            "ports": [
                {"name": "http", "port": spec.proxy.port, "targetPort": "http",
                 "protocol": "TCP"},
            ],
        },
    }  # fmt: skip


def render_service_account(pool: str, namespace: str, uid: str) -> Manifest:
    """The identity of the proxy Pods."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(pool, namespace, names.proxy_name(pool), uid),
    }


def render_role(pool: str, namespace: str, uid: str) -> Manifest:
    """The proxy may read and watch its own ConfigMap, nothing else."""
    name = names.proxy_name(pool)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(pool, namespace, name, uid),
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [name],
             "verbs": ["get", "list", "watch"]},
        ],
    }  # fmt: skip


def render_role_binding(pool: str, namespace: str, uid: str) -> Manifest:
    """Grants the proxy's Role to its ServiceAccount."""
    name = names.proxy_name(pool)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(pool, namespace, name, uid),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def render_static_objects(
    pool: str, namespace: str, uid: str, spec: PoolSpec, defaults: ProxyDefaults = OPERATOR_DEFAULTS
) -> list[Manifest]:
    """Everything but the ConfigMap, in the order they should be applied."""
    return [
        render_service_account(pool, namespace, uid),
        render_role(pool, namespace, uid),
        render_role_binding(pool, namespace, uid),
        render_deployment(pool, namespace, uid, spec, defaults),
        render_service(pool, namespace, uid, spec),
    ]
