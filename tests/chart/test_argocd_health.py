"""The Argo CD health check (docs/argocd-health.lua) run by Debian's lua5.1 as Argo CD runs
it: the ServicePool as the global `obj`, a table with status and message returned. The
statuses are the operator's own (build_status), not hand-written."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from servicepool_api.health import Health
from servicepool_operator.proxies import ProxyPods
from servicepool_operator.records import MemberRecord
from servicepool_operator.status import Problem, build_status

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "argocd-health.lua"
LUA = shutil.which("lua5.1")
needs_lua = pytest.mark.skipif(
    LUA is None,
    reason="lua5.1 is not installed (Debian package lua5.1; e2e/cluster/install-deps.sh)",
)

H, U, X = Health.HEALTHY, Health.UNHEALTHY, Health.UNKNOWN
ONE_READY_PROXY = ProxyPods(1, 1, ())


def lua_literal(value: Any) -> str:
    """A JSON-like value as a Lua table constructor (lists become 1-based arrays)."""
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    return json.dumps(value)


def verdict(pool: dict[str, Any]) -> tuple[str, str]:
    """Run the health check on one ServicePool; its (status, message)."""
    assert LUA is not None
    program = (
        f"obj = {lua_literal(pool)}\n"
        f"local hs = assert(loadfile({json.dumps(str(SCRIPT))}))()\n"
        "io.write(hs.status, '\\n', hs.message)\n"
    )
    result = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\n")
    return status, message


def pool(
    healths: list[Health],
    generation: int = 2,
    observed: int = 2,
    problem: Problem | None = None,
    proxies: ProxyPods | None = ONE_READY_PROXY,
) -> dict[str, Any]:
    records = [
        MemberRecord(name=f"m{i}", url=f"http://m{i}:1", health=h,
                     probe_message="connection refused" if h is U else "")
        for i, h in enumerate(healths)
    ]  # fmt: skip
    status = build_status(
        generation=observed, endpoint="http://p.ns.svc:80", records=records, problem=problem,
        previous={}, now="2026-01-01T00:00:00Z", proxies=proxies,
    ).to_api()  # fmt: skip
    return {
        "apiVersion": "servicepool.dev/v1alpha1",
        "kind": "ServicePool",
        "metadata": {"name": "p", "namespace": "ns", "generation": generation},
        "spec": {"members": []},
        "status": status,
    }


@needs_lua
@pytest.mark.parametrize(
    ("obj", "status", "words"),
    [
        (pool([H, H]), "Healthy", "2 of 2 members are healthy"),
        (pool([H, H], generation=3, observed=2), "Progressing", "generation 3"),
        ({**pool([H]), "status": None}, "Progressing", "Waiting for the operator"),
        ({**pool([H]), "status": {}}, "Progressing", "Waiting for the operator"),
        (pool([X, X]), "Progressing", "not probed healthy yet"),
        (pool([H, X]), "Progressing", "not probed healthy yet"),
        (pool([]), "Progressing", "no members"),
        (pool([H, H], proxies=ProxyPods(2, 0, ())), "Progressing", "0 of 2 proxy Pods"),
        (pool([H, U]), "Degraded", "unhealthy: m1"),
        (pool([U, U]), "Degraded", "0 of 2 members are healthy"),
        (pool([H], problem=Problem("InvalidSpec", "spec.members[1].name: duplicate")),
         "Degraded", "spec.members[1].name"),
        (pool([H], proxies=ProxyPods(1, 0, ("p-1: ImagePullBackOff: no such image",))),
         "Degraded", "ImagePullBackOff"),
    ],
)  # fmt: skip
def test_the_argocd_health_check_gives_the_expected_verdict(
    obj: dict[str, Any], status: str, words: str
) -> None:
    got_status, message = verdict(obj)
    assert (got_status, words in message) == (status, True), message


def test_the_operator_guide_links_the_health_check() -> None:
    guide = (ROOT / "docs" / "operator.md").read_text()
    assert "](argocd-health.lua)" in guide
    assert "resource.customizations.health.servicepool.dev_ServicePool" in guide
