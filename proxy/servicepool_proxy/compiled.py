"""The compiled build: setup.py compiles the request path's modules with mypyc when
SERVICEPOOL_COMPILE=1; the same modules as Python are the fallback, and behave the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # the pure-Python build runs without mypy_extensions

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[T], T]:  # type: ignore[misc]
        """Keep a class a plain Python class in the compiled build (no-op here)."""
        return lambda cls: cls


# The modules setup.py compiles (paths from the repository root).
COMPILED_MODULES = (
    "proxy/servicepool_proxy/balancer/decisions.py",
    "proxy/servicepool_proxy/balancer/keys.py",
    "proxy/servicepool_proxy/balancer/member.py",
    "proxy/servicepool_proxy/balancer/outlier.py",
    "proxy/servicepool_proxy/balancer/pickers.py",
    "proxy/servicepool_proxy/balancer/pool.py",
    "proxy/servicepool_proxy/balancer/prefill.py",
    "proxy/servicepool_proxy/balancer/stats.py",
    "proxy/servicepool_proxy/balancer/strategies.py",
    "proxy/servicepool_proxy/forwarding/admission.py",
    "proxy/servicepool_proxy/forwarding/answers.py",
    "proxy/servicepool_proxy/forwarding/attempts.py",
    "proxy/servicepool_proxy/forwarding/explain.py",
    "proxy/servicepool_proxy/forwarding/forwarder.py",
    "proxy/servicepool_proxy/forwarding/outcomes.py",
    "proxy/servicepool_proxy/forwarding/relay.py",
    "proxy/servicepool_proxy/forwarding/routing_keys.py",
    "proxy/servicepool_proxy/http/bytestream.py",
    "proxy/servicepool_proxy/http/exchange.py",
    "proxy/servicepool_proxy/http/front.py",
    "proxy/servicepool_proxy/http/headers.py",
    "proxy/servicepool_proxy/http/linemeter.py",
    "proxy/servicepool_proxy/http/listener.py",
    "proxy/servicepool_proxy/http/member_connection.py",
    "proxy/servicepool_proxy/http/request_parsing.py",
    "proxy/servicepool_proxy/http/upstream.py",
    "proxy/servicepool_proxy/http/write_pacing.py",
    "proxy/servicepool_proxy/observe/metrics.py",
    "proxy/servicepool_proxy/runtime.py",
    "proxy/servicepool_proxy/waitqueue.py",
)


def is_compiled() -> bool:
    """Whether this process runs the compiled build."""
    from servicepool_proxy.http import headers

    return not headers.__file__.endswith(".py")


def build_name() -> str:
    """Which build runs, as /status and the log say it: "compiled" or "python"."""
    return "compiled" if is_compiled() else "python"
