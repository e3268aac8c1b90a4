"""Property tests: every pool document either validates or yields an error naming the field;
what validates renders into a config the proxy accepts. Nothing raises anything else."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicepool_api.loader import PoolFileError, parse_pool, parse_pool_text
from servicepool_api.spec import PoolSpec
from servicepool_operator import render
from servicepool_operator.membership import MembershipError, PodInfo, resolve_members

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["roundRobin", "capacity", "http://x:1", "/p"]),
)  # fmt: skip
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                         inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
member = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "c", "A_B", ""])},
    optional={
        "url": st.sampled_from(["http://10.0.0.1:80", "https://h", "ftp://x", "http://", 5]),
        "weight": st.one_of(st.integers(-2, 1200), st.text(max_size=3)),
        "priority": st.integers(-1, 101),
        "maxInFlight": st.integers(-1, 10),
        "service": st.fixed_dictionaries({"name": st.sampled_from(["svc", "Bad"]),
                                          "port": st.integers(0, 70000)}),
        "bogus": values,
    },
)  # fmt: skip
spec = st.fixed_dictionaries(
    {},
    optional={
        "strategy": st.sampled_from(["roundRobin", "leastInFlight", "capacity", "nope", 3]),
        "members": st.one_of(st.lists(member, max_size=4), values),
        "healthCheck": st.dictionaries(
            st.sampled_from(["path", "intervalSeconds", "timeoutSeconds", "enabled", "x"]),
            scalars, max_size=3),
        "retries": st.dictionaries(st.sampled_from(["attempts", "retryOn", "bufferBytes"]),
                                   values, max_size=2),
        "capacity": st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["source", "intervalSeconds", "fields"]), values, max_size=2)),
        "affinity": st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["source", "name", "loadFactor"]), values, max_size=3)),
        "proxy": st.dictionaries(st.sampled_from(["replicas", "port", "image"]), scalars,
                                 max_size=2),
        "unknownField": values,
    },
)  # fmt: skip
FIELD_PREFIXES = ("spec", "apiVersion", "kind", "metadata", "status", "the document",
                  "not valid YAML")  # fmt: skip


@settings(
    max_examples=int(os.environ.get("SP_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(spec)
def test_every_document_validates_or_names_the_field(document_spec: dict[str, Any]) -> None:
    document = {"apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
                "metadata": {"name": "p"}, "spec": document_spec}  # fmt: skip
    try:
        pool = parse_pool(document)
    except PoolFileError as exc:
        message = str(exc)
        assert message.startswith(FIELD_PREFIXES), message
        assert "\n" not in message
        return
    # Valid: the operator's renderer produces a config the proxy's loader accepts.
    url_members = [m for m in pool.spec.members if m.url is not None]
    text = render.render_proxy_config("p", "ns", pool.spec, url_members)
    reparsed = parse_pool_text(text)
    assert [m.name for m in reparsed.spec.members] == [m.name for m in url_members]
    assert reparsed.spec.strategy == pool.spec.strategy
    for manifest in render.render_static_objects("p", "ns", "uid", pool.spec):
        assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid"


@settings(max_examples=200, deadline=None)
@given(values)
def test_arbitrary_yaml_never_raises_anything_else(anything: Any) -> None:
    with contextlib.suppress(PoolFileError):
        parse_pool(anything if isinstance(anything, dict) else {"spec": anything})


pods = st.lists(
    st.builds(PodInfo, name=st.text(min_size=1, max_size=8),
              labels=st.dictionaries(st.sampled_from(["app", "tier"]),
                                     st.sampled_from(["w", "x"]), max_size=2),
              ip=st.one_of(st.none(), st.sampled_from(["10.0.0.1", "fd00::1", ""])),
              ready=st.booleans(), terminating=st.booleans()),
    max_size=6,
    unique_by=lambda pod: pod.name,  # a namespace has one Pod of a name
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(pods, st.lists(st.sampled_from(["svc", "other"]), max_size=2))
def test_membership_raises_only_membership_errors(pod_list: list[PodInfo], services) -> None:
    pool = PoolSpec.model_validate({
        "members": [{"name": "s", "service": {"name": "svc", "port": 80}}],
        "memberSelector": {"matchLabels": {"app": "w"}, "port": 8000},
    })  # fmt: skip
    try:
        members = resolve_members(pool, "ns", services, pod_list)
    except MembershipError as exc:
        assert str(exc).startswith("spec.members[0].service.name")
        return
    names = [m.name for m in members]
    assert len(names) == len(set(names))
    assert all(m.url and m.url.startswith("http://") for m in members)
