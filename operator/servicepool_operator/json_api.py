"""Plain JSON requests to the API server on the client's connections (thin I/O).

The client's generated methods check every argument with pydantic and turn every answer into
model objects; for a thousand pools that was a good part of the operator's CPU. The operator
sends manifests it rendered as dicts and reads few answers, so it calls the API paths
directly: same connections, credentials and TLS, no models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# How the generated client patches built-in kinds with a dict: lists of named items (the
# containers, the ports) merge by name rather than being replaced.
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# Seconds for one call, as kopf's own calls (settings.networking.request_timeout).
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Kind:
    """Where a namespaced kind lives in the API, and how it is patched."""

    api_version: str  # "v1" for the core group, else "group/version"
    plural: str
    patch_type: str = STRATEGIC_MERGE_PATCH

    def collection(self, namespace: str) -> str:
        """The path of this kind's objects in a namespace."""
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{base}/namespaces/{namespace}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        """The path of one object."""
        return f"{self.collection(namespace)}/{name}"


def owned_kinds(policy_api_version: str) -> dict[str, Kind]:
    """The kinds a pool owns, by `kind`; the PodDisruptionBudget in the version the cluster
    serves (policy/v1beta1 on 1.20, which newer clients no longer model)."""
    return {
        "ConfigMap": Kind("v1", "configmaps"),
        "Service": Kind("v1", "services"),
        "ServiceAccount": Kind("v1", "serviceaccounts"),
        "Deployment": Kind("apps/v1", "deployments"),
        "Role": Kind("rbac.authorization.k8s.io/v1", "roles"),
        "RoleBinding": Kind("rbac.authorization.k8s.io/v1", "rolebindings"),
        "NetworkPolicy": Kind("networking.k8s.io/v1", "networkpolicies"),
        "PodDisruptionBudget": Kind(policy_api_version, "poddisruptionbudgets", MERGE_PATCH),
    }


class JsonApi:
    """Blocking calls (run them in a thread): a path, a method, a dict body, a dict back."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = JSON,
        answer: bool = True,
    ) -> Any:
        """The decoded answer (None when `answer` is False: the body is read, not parsed).

        A status outside 2xx raises the client's ApiException (with `.status`), as the
        generated methods do.
        """
        headers = {"Accept": JSON, "Content-Type": content_type}
        request = self.api_client.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.api_client.call_api(*request, _request_timeout=REQUEST_TIMEOUT_SECONDS)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(data) if answer else None
