"""Members that refuse the pool's credential: AuthFailed, re-checked, back on a new credential."""

from __future__ import annotations

from typing import Any

import pytest

from servicepool_api.spec import PoolSpec
from servicepool_proxy.balancer.decisions import SkipReason, skip_reason
from servicepool_proxy.balancer.pool import Balancer, Unavailable

RECHECK = 30.0


def balancer(count: int = 3, **outlier_fields: Any) -> Balancer:
    outlier_fields.setdefault("authRecheckSeconds", RECHECK)
    spec = PoolSpec.model_validate({
        "members": [{"name": f"m{i}", "url": f"http://10.0.0.{i}"} for i in range(count)],
        "outlierDetection": outlier_fields,
    })  # fmt: skip
    return Balancer(spec)


@pytest.mark.parametrize(
    ("seconds_after", "routable", "skip"),
    [
        (0.0, False, SkipReason.CREDENTIAL_REFUSED),
        (RECHECK - 0.1, False, SkipReason.CREDENTIAL_REFUSED),
        (RECHECK, True, None),  # one request re-checks
    ],
)
def test_a_refusal_takes_the_member_out_until_its_recheck(
    seconds_after: float, routable: bool, skip: SkipReason | None
) -> None:
    bal = balancer()
    member = bal.members[0]
    assert bal.record_auth_refused(member, "HTTP 401", 100.0)
    now = 100.0 + seconds_after
    assert member.routable(now) is routable
    assert skip_reason(member, now, (), None) is skip
    assert member.state_label(now) == "AuthFailed"
    assert "refused the pool's credential" in member.last_error


def test_only_one_request_rechecks_per_interval() -> None:
    bal = balancer()
    member = bal.members[0]
    bal.record_auth_refused(member, "HTTP 403", 0.0)
    bal.acquire(member, RECHECK)  # the re-check request
    assert not member.routable(RECHECK + 1.0), "a second request went to the re-check"
    assert member.routable(2 * RECHECK)


@pytest.mark.parametrize(
    ("recheck_answer", "auth_failed"),
    [("success", False), ("refused", True)],
)
def test_the_recheck_decides(recheck_answer: str, auth_failed: bool) -> None:
    bal = balancer()
    member = bal.members[0]
    bal.record_auth_refused(member, "HTTP 401", 0.0)
    bal.acquire(member, RECHECK)
    if recheck_answer == "success":
        bal.record_success(member, 0.01, RECHECK + 0.01)
    else:
        assert not bal.record_auth_refused(member, "HTTP 401", RECHECK + 0.01), "not news"
    bal.release(member)
    assert member.auth_failed is auth_failed
    assert member.routable(RECHECK + 1.0) is not auth_failed


def test_a_new_credential_returns_every_member() -> None:
    bal = balancer()
    for member in bal.members:
        bal.record_auth_refused(member, "HTTP 401", 0.0)
    assert bal.credential_changed() == 3
    assert all(m.routable(1.0) and m.state_label(1.0) != "AuthFailed" for m in bal.members)
    assert bal.credential_changed() == 0


@pytest.mark.parametrize(("refusing", "credential_refused"), [(1, False), (2, False), (3, True)])
def test_every_member_refusing_is_said_so(refusing: int, credential_refused: bool) -> None:
    """Not bounded by maxEjectionPercent: a wrong credential is refused by every member."""
    bal = balancer(maxEjectionPercent=10)
    for member in bal.members[:refusing]:
        bal.record_auth_refused(member, "HTTP 401", 0.0)
    choice = bal.choose(1.0)
    if refusing < 3:
        assert choice is bal.members[refusing], "a member that accepts the credential is picked"
        return
    assert isinstance(choice, Unavailable) and not choice.saturated
    assert choice.credential_refused is credential_refused
    assert "AuthFailed, re-checked in 29.0s" in choice.detail


def test_a_refusal_is_no_ejection() -> None:
    bal = balancer(consecutiveFailures=1)
    member = bal.members[0]
    for i in range(10):
        bal.record_auth_refused(member, "HTTP 401", float(i))
    assert member.ejections == 0 and member.failures == 0 and member.auth_errors == 10
    assert not member.ejected(5.0)
