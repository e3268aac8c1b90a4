"""Names and labels of the objects the operator owns for a pool."""

from __future__ import annotations

from servicepool_api import __version__
from servicepool_api.spec import API_GROUP, API_VERSION, KIND

GROUP = API_GROUP
VERSION = API_VERSION
PLURAL = "servicepools"
API_VERSION_FULL = f"{GROUP}/{VERSION}"
POOL_KIND = KIND
MANAGED_BY = "servicepool-operator"
POOL_LABEL = "servicepool.dev/pool"
# No public registry carries it: `make image` builds it under this name.
DEFAULT_IMAGE = f"localhost/servicepool:{__version__}"


def proxy_name(pool: str) -> str:
    """Name of the proxy's Deployment, ConfigMap, ServiceAccount, Role and RoleBinding."""
    return f"{pool}-proxy"


def service_name(pool: str) -> str:
    """The stable name clients call: the pool's own name."""
    return pool


def labels(pool: str) -> dict[str, str]:
    """Common labels of every object owned by the pool."""
    return {
        "app.kubernetes.io/name": "servicepool-proxy",
        "app.kubernetes.io/instance": pool,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        POOL_LABEL: pool,
    }


def selector_labels(pool: str) -> dict[str, str]:
    """Labels that select the pool's proxy Pods."""
    return {"app.kubernetes.io/name": "servicepool-proxy", POOL_LABEL: pool}


def endpoint(pool: str, namespace: str, port: int) -> str:
    """The in-cluster URL of the pool."""
    return f"http://{service_name(pool)}.{namespace}.svc:{port}"
