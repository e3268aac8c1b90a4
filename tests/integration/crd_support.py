"""Install the ServicePool CRD into the test cluster (idempotent)."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "servicepool.dev_servicepools.yaml"


def install_crd(api: client.ApiClient, timeout: float = 30.0) -> None:
    """Create or replace the CRD and wait until it is Established."""
    body = yaml.safe_load(CRD_FILE.read_text())
    ext = client.ApiextensionsV1Api(api)
    name = body["metadata"]["name"]
    try:
        current = ext.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)
    except ApiException as exc:
        if exc.status != 404:
            raise
        ext.create_custom_resource_definition(body)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(name)
        for condition in (crd.status.conditions or []) if crd.status else []:
            if condition.type == "Established" and condition.status == "True":
                return
        time.sleep(0.2)
    raise TimeoutError(f"CRD {name} not Established after {timeout}s")


def server_version(api: client.ApiClient) -> tuple[int, int]:
    """The API server's (major, minor) version."""
    info = client.VersionApi(api).get_code()
    return int(info.major), int(info.minor.rstrip("+"))


def checks_validation_rules(api: client.ApiClient) -> bool:
    """Whether the API server enforces the CRD's CEL rules (x-kubernetes-validations, 1.25+).

    Older servers (1.20) drop the rules when the CRD is applied; the operator's InvalidSpec
    check is then the only one.
    """
    return server_version(api) >= (1, 25)


def enforces_pod_security(api: client.ApiClient) -> bool:
    """Whether the API server has Pod Security Admission (on by default from 1.23, GA 1.25)."""
    return server_version(api) >= (1, 25)
