"""The ServicePool schema: defaults, rejections that name the field, the full example."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from servicepool_api.loader import (
    PoolFileError,
    format_location,
    parse_pool,
    parse_pool_text,
)
from servicepool_api.spec import PoolSpec, ServicePool, Strategy

BASE: dict[str, Any] = {
    "apiVersion": "servicepool.dev/v1alpha1",
    "kind": "ServicePool",
    "metadata": {"name": "shop"},
    "spec": {
        "members": [
            {"name": "a", "url": "http://10.0.0.1:8000"},
            {"name": "b", "url": "http://10.0.0.2:8000"},
        ]
    },
}

FULL_EXAMPLE = """\
apiVersion: servicepool.dev/v1alpha1
kind: ServicePool
metadata:
  name: inference
  namespace: ml
  labels:
    team: ml-platform
spec:
  strategy: leastInFlight
  members:
    - name: gpu-a
      url: http://10.0.0.7:8000
      weight: 3
      priority: 0
      maxInFlight: 8
    - name: gpu-b
      url: https://gpu-b.internal:8443/
      weight: 1
      priority: 0
      maxInFlight: 4
    - name: cloud-fallback
      url: https://api.example.com/v1
      priority: 1
  healthCheck:
    path: /health/ready
    intervalSeconds: 10
    timeoutSeconds: 2
    healthyThreshold: 2
    unhealthyThreshold: 3
    enabled: true
  outlierDetection:
    consecutiveFailures: 3
    baseEjectionSeconds: 10
    maxEjectionSeconds: 120
    maxEjectionPercent: 34
    rateLimitCooldownSeconds: 2
  retries:
    attempts: 3
    retryOn: [connect-failure, reset, timeout, "429", "503"]
    bufferBytes: 65536
  timeouts:
    connectSeconds: 1.5
    requestSeconds: 600
  queue:
    maxWaiting: 200
    timeoutSeconds: 15
  memberHeader: false
  proxy:
    replicas: 2
    image: registry.example.com/servicepool:0.1.0
    imagePullPolicy: Always
    port: 8080
    resources:
      requests: {cpu: 250m, memory: 256Mi}
      limits: {cpu: 1, memory: 512Mi}
"""


def document(**spec: Any) -> dict[str, Any]:
    """BASE with spec keys replaced."""
    doc = copy.deepcopy(BASE)
    doc["spec"].update(spec)
    return doc


def member(**fields: Any) -> dict[str, Any]:
    return {"name": "a", "url": "http://10.0.0.1:8000", **fields}


def error_of(doc: Any) -> str:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(PoolFileError) as info:
        parse_pool_text(text)
    return str(info.value)


# --- defaults -------------------------------------------------------------------------


def test_defaults_match_the_api() -> None:
    pool = parse_pool_text(yaml.safe_dump(BASE))
    spec = pool.spec
    assert spec.strategy is Strategy.ROUND_ROBIN
    first = spec.members[0]
    assert (first.weight, first.priority, first.maxInFlight) == (1, 0, 0)
    assert first.service is None

    hc = spec.healthCheck
    assert hc.path == "/healthz"
    assert hc.intervalSeconds == 5
    assert hc.timeoutSeconds == 1
    assert (hc.healthyThreshold, hc.unhealthyThreshold) == (1, 2)
    assert hc.enabled is True

    od = spec.outlierDetection
    assert od.consecutiveFailures == 5
    assert od.baseEjectionSeconds == 30
    assert od.maxEjectionSeconds == 300
    assert od.maxEjectionPercent == 50
    assert od.rateLimitCooldownSeconds == 1

    assert spec.retries.attempts == 2
    assert spec.retries.retryOn == ["connect-failure", "reset", "429", "502", "503", "504"]
    assert spec.retries.bufferBytes == 8 << 20
    assert (spec.timeouts.connectSeconds, spec.timeouts.requestSeconds) == (2, 300)
    assert (spec.queue.maxWaiting, spec.queue.timeoutSeconds) == (1000, 30)
    assert spec.memberHeader is True
    assert spec.memberSelector is None
    assert spec.proxy.replicas == 1
    assert spec.proxy.port == 80
    assert spec.proxy.image is None  # the operator's own image
    assert spec.proxy.imagePullPolicy is None


def test_empty_spec_and_default_envelope() -> None:
    pool = ServicePool.model_validate({"spec": {}})
    assert pool.apiVersion == "servicepool.dev/v1alpha1"
    assert pool.kind == "ServicePool"
    assert pool.metadata.name == "pool"
    assert pool.spec.members == []
    assert pool.status is None


def test_default_lists_are_not_shared() -> None:
    one, two = PoolSpec(), PoolSpec()
    assert one.retries.retryOn == two.retries.retryOn
    assert one.retries.retryOn is not two.retries.retryOn


def test_url_trailing_slash_is_removed_and_path_prefix_kept() -> None:
    pool = parse_pool_text(
        yaml.safe_dump(
            document(
                members=[
                    member(url="http://10.0.0.1:8000/"),
                    member(name="b", url="https://b.example/api/v2/"),
                ]
            )
        )
    )
    assert [m.url for m in pool.spec.members] == [
        "http://10.0.0.1:8000",
        "https://b.example/api/v2",
    ]


def test_spec_objects_are_frozen() -> None:
    pool = parse_pool_text(yaml.safe_dump(BASE))
    with pytest.raises(ValueError):
        pool.spec.members[0].weight = 5  # type: ignore[misc]


# --- the full example -----------------------------------------------------------------


def test_full_example_parses() -> None:
    pool = parse_pool_text(FULL_EXAMPLE)
    assert pool.metadata.name == "inference"
    assert pool.metadata.namespace == "ml"
    spec = pool.spec
    assert spec.strategy is Strategy.LEAST_IN_FLIGHT
    assert [(m.name, m.url, m.weight, m.priority, m.maxInFlight) for m in spec.members] == [
        ("gpu-a", "http://10.0.0.7:8000", 3, 0, 8),
        ("gpu-b", "https://gpu-b.internal:8443", 1, 0, 4),
        ("cloud-fallback", "https://api.example.com/v1", 1, 1, 0),
    ]
    assert spec.healthCheck.path == "/health/ready"
    assert (spec.healthCheck.healthyThreshold, spec.healthCheck.unhealthyThreshold) == (2, 3)
    assert spec.outlierDetection.maxEjectionPercent == 34
    assert spec.retries.retryOn == ["connect-failure", "reset", "timeout", "429", "503"]
    assert spec.timeouts.connectSeconds == 1.5
    assert spec.queue.maxWaiting == 200
    assert spec.memberHeader is False
    assert spec.proxy.replicas == 2
    assert spec.proxy.resources.limits == {"cpu": 1, "memory": "512Mi"}


def test_full_example_as_json_parses_the_same() -> None:
    yaml_pool = parse_pool_text(FULL_EXAMPLE)
    json_text = yaml_pool.model_dump_json()
    assert parse_pool_text(json_text) == yaml_pool


def test_operator_only_members_validate_but_the_proxy_refuses_them() -> None:
    doc = document(
        members=[member(), {"name": "svc", "service": {"name": "backend", "port": 8080}}],
        memberSelector={"matchLabels": {"app": "backend"}, "port": 8000},
    )
    pool = parse_pool(doc)  # valid for the operator
    assert pool.spec.members[1].service is not None
    assert pool.spec.members[1].service.scheme == "http"
    assert pool.spec.memberSelector is not None

    assert error_of(doc).startswith("spec.memberSelector: ")
    del doc["spec"]["memberSelector"]
    assert error_of(doc).startswith("spec.members[1].url: the proxy needs a url")


# --- rejections -----------------------------------------------------------------------

BAD_DOCUMENTS: list[tuple[str, Any, str]] = [
    ("weight 0", document(members=[member(weight=0)]), "spec.members[0].weight"),
    ("weight 1001", document(members=[member(weight=1001)]), "spec.members[0].weight"),
    ("priority -1", document(members=[member(priority=-1)]), "spec.members[0].priority"),
    ("priority 101", document(members=[member(priority=101)]), "spec.members[0].priority"),
    (
        "negative maxInFlight",
        document(members=[member(), member(name="b", maxInFlight=-1)]),
        "spec.members[1].maxInFlight",
    ),
    ("ftp url", document(members=[member(url="ftp://10.0.0.1")]), "spec.members[0].url"),
    ("schemeless url", document(members=[member(url="10.0.0.1:80")]), "spec.members[0].url"),
    ("url with query", document(members=[member(url="http://h/?x=1")]), "spec.members[0].url"),
    ("url with fragment", document(members=[member(url="http://h/#top")]), "spec.members[0].url"),
    ("url without host", document(members=[member(url="http:///x")]), "spec.members[0].url"),
    ("url bad port", document(members=[member(url="http://h:99999")]), "spec.members[0].url"),
    ("missing url", document(members=[member(), {"name": "b"}]), "spec.members[1].url"),
    (
        "url and service",
        document(members=[member(service={"name": "s", "port": 80})]),
        "spec.members[0].url",
    ),
    ("missing name", document(members=[{"url": "http://h"}]), "spec.members[0].name"),
    ("uppercase name", document(members=[member(name="Gpu_A")]), "spec.members[0].name"),
    (
        "duplicate names",
        document(members=[member(), member(name="b"), member()]),
        "spec.members[2].name",
    ),
    ("unknown top-level field", {**BASE, "bogus": 1}, "bogus"),
    ("unknown spec field", document(bogus=1), "spec.bogus"),
    (
        "unknown member field",
        document(members=[member(), member(name="b", colour="red")]),
        "spec.members[1].colour",
    ),
    (
        "unknown service field",
        document(members=[member(service={"name": "s", "port": 80, "x": 1}, url=None)]),
        "spec.members[0].service.x",
    ),
    ("unknown healthCheck field", document(healthCheck={"pth": "/x"}), "spec.healthCheck.pth"),
    (
        "unknown outlier field",
        document(outlierDetection={"consecutiveErrors": 3}),
        "spec.outlierDetection.consecutiveErrors",
    ),
    ("unknown retries field", document(retries={"perTry": 1}), "spec.retries.perTry"),
    (
        "unknown resources field",
        document(proxy={"resources": {"claims": []}}),
        "spec.proxy.resources.claims",
    ),
    ("bad strategy", document(strategy="fastest"), "spec.strategy"),
    (
        "bad retryOn word",
        document(retries={"retryOn": ["502", "sometimes"]}),
        "spec.retries.retryOn",
    ),
    ("retryOn 2xx", document(retries={"retryOn": ["200"]}), "spec.retries.retryOn"),
    ("too many attempts", document(retries={"attempts": 11}), "spec.retries.attempts"),
    (
        "timeout > interval",
        document(healthCheck={"intervalSeconds": 1, "timeoutSeconds": 2}),
        "spec.healthCheck.timeoutSeconds",
    ),
    ("relative probe path", document(healthCheck={"path": "healthz"}), "spec.healthCheck.path"),
    (
        "zero interval",
        document(healthCheck={"intervalSeconds": 0}),
        "spec.healthCheck.intervalSeconds",
    ),
    (
        "maxEjectionPercent 101",
        document(outlierDetection={"maxEjectionPercent": 101}),
        "spec.outlierDetection.maxEjectionPercent",
    ),
    ("members not a list", document(members="a"), "spec.members"),
    ("missing spec", {"apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool"}, "spec"),
    ("wrong kind", {**BASE, "kind": "Pool"}, "kind"),
    ("wrong apiVersion", {**BASE, "apiVersion": "v1"}, "apiVersion"),
]


@pytest.mark.parametrize(("doc", "path"), [pytest.param(d, p, id=i) for i, d, p in BAD_DOCUMENTS])
def test_rejection_names_the_field_path(doc: Any, path: str) -> None:
    message = error_of(doc)
    assert (
        message.startswith(path + ".")
        or message.startswith(path + ": ")
        or (message.startswith(path + "["))
    ), message
    assert "\n" not in message
    # The message says something after the path.
    assert len(message.split(": ", 1)[1]) > 5


@pytest.mark.parametrize(
    ("doc", "exact"),
    [
        (
            document(members=[member(), member(name="b"), member()]),
            "spec.members[2].name: duplicate member name 'a' (also members[0])",
        ),
        (
            document(members=[member(weight=0)]),
            "spec.members[0].weight: Input should be greater than or equal to 1",
        ),
        (document(bogus=True), "spec.bogus: unknown field"),
        (
            {"apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool"},
            "spec: required field is missing",
        ),
        (
            document(healthCheck={"intervalSeconds": 1, "timeoutSeconds": 2}),
            "spec.healthCheck.timeoutSeconds: 2.0 must not exceed intervalSeconds (1.0)",
        ),
    ],
)
def test_exact_messages(doc: Any, exact: str) -> None:
    assert error_of(doc) == exact


def test_url_messages_say_what_is_wrong() -> None:
    assert "http:// or https://" in error_of(document(members=[member(url="ftp://h")]))
    assert "query or fragment" in error_of(document(members=[member(url="http://h/?q=1")]))
    assert "exactly one of url or service" in error_of(document(members=[{"name": "a"}]))


def test_bad_retry_condition_is_quoted() -> None:
    message = error_of(document(retries={"retryOn": ["502", "sometimes"]}))
    assert message.startswith("spec.retries.retryOn")
    assert "'sometimes'" in message


def test_several_problems_reported_on_one_line() -> None:
    message = error_of(document(members=[member(weight=0, priority=-1)]))
    assert "\n" not in message
    assert "spec.members[0].weight: " in message
    assert "; spec.members[0].priority: " in message


def test_equal_timeout_and_interval_is_allowed() -> None:
    pool = parse_pool_text(
        yaml.safe_dump(document(healthCheck={"intervalSeconds": 2, "timeoutSeconds": 2}))
    )
    assert pool.spec.healthCheck.timeoutSeconds == 2


def test_status_codes_allowed_in_retry_on() -> None:
    pool = parse_pool_text(yaml.safe_dump(document(retries={"retryOn": ["429", "500", "timeout"]})))
    assert pool.spec.retries.retryOn == ["429", "500", "timeout"]


def test_metadata_keeps_extra_fields() -> None:
    doc = copy.deepcopy(BASE)
    doc["metadata"]["labels"] = {"team": "a"}
    pool = parse_pool_text(yaml.safe_dump(doc))
    assert pool.metadata.model_extra == {"labels": {"team": "a"}}


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_not_a_mapping(text: str) -> None:
    assert error_of(text) == "the document must be a mapping with apiVersion, kind, spec"


@pytest.mark.parametrize("text", ["spec: {members: [\n", "a: b\n\tc: d\n", "spec: [}\n"])
def test_invalid_yaml(text: str) -> None:
    message = error_of(text)
    assert message.startswith("not valid YAML: ")
    assert "\n" not in message


def test_pool_file_error_is_a_value_error() -> None:
    assert issubclass(PoolFileError, ValueError)


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("spec", "members", 1, "weight"), "spec.members[1].weight"),
        (("spec",), "spec"),
        ((), ""),
        (("spec", "retries", "retryOn", 0), "spec.retries.retryOn[0]"),
    ],
)
def test_format_location(loc: tuple[int | str, ...], path: str) -> None:
    assert format_location(loc) == path
