"""The proxy command line the operator renders means what the operator intends.

The operator and the proxy meet at a command line: the Deployment's `command` and `args`.
These tests parse exactly what the operator renders with the proxy's own parser, so a flag
that the proxy ignores or misreads fails here rather than in a cluster.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from servicepool_api import contract
from servicepool_api.contract import ProxyOptions, build_parser, options_from_args, proxy_args
from servicepool_api.loader import parse_pool
from servicepool_api.spec import LocalObjectReference, PoolSpec
from servicepool_operator import names, render

POOL = parse_pool({
    "apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
    "metadata": {"name": "demo"},
    "spec": {"members": [{"name": "a", "url": "http://198.18.0.9:8000"}]},
}).spec  # fmt: skip


def rendered_container(defaults: render.ProxyDefaults = render.OPERATOR_DEFAULTS) -> dict:
    deployment = render.render_deployment("demo", "team-a", "uid-1", POOL, defaults)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def rendered_options() -> ProxyOptions:
    container = rendered_container()
    assert container["command"] == ["servicepool-proxy"]
    return options_from_args(build_parser().parse_args(container["args"]))


def test_the_rendered_proxy_follows_its_configmap_through_the_api() -> None:
    options = rendered_options()
    assert options.config_map == ("team-a", names.proxy_name("demo"))
    assert options.pool_path == Path(contract.CONFIG_MOUNT) / contract.CONFIG_KEY


def test_the_rendered_proxy_listens_on_the_ports_the_pod_and_probes_name() -> None:
    options = rendered_options()
    container = rendered_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert (options.listen_host, options.listen_port) == ("0.0.0.0", ports["http"])
    assert (options.admin_host, options.admin_port) == ("0.0.0.0", ports["admin"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}


def test_the_rendered_proxy_leaves_probing_to_the_operator() -> None:
    assert rendered_options().active_health is False


def test_the_rendered_proxy_drains_before_the_kubelet_may_kill_it() -> None:
    options = rendered_options()
    pod = render.render_deployment("demo", "team-a", "uid-1", POOL)["spec"]["template"]["spec"]
    assert options.drain_delay >= 3  # kube-proxy has dropped the Pod before the listener closes
    assert options.longest_shutdown < pod["terminationGracePeriodSeconds"]


def test_the_rendered_proxy_mounts_secrets_where_it_reads_them() -> None:
    assert str(rendered_options().secrets_dir) == contract.SECRETS_MOUNT


def test_the_proxy_runs_the_operators_image_unless_the_pool_names_one() -> None:
    defaults = render.ProxyDefaults(image="registry.example/sp:7", image_pull_policy="Always")
    container = rendered_container(defaults)
    assert (container["image"], container["imagePullPolicy"]) == ("registry.example/sp:7", "Always")
    own = POOL.model_copy(update={"proxy": POOL.proxy.model_copy(
        update={"image": "mine/proxy:1", "imagePullPolicy": "Never"})})  # fmt: skip
    deployment = render.render_deployment("demo", "team-a", "uid-1", own, defaults)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["imagePullPolicy"]) == ("mine/proxy:1", "Never")


def test_the_proxy_pulls_with_the_operators_secrets_unless_the_pool_names_its_own() -> None:
    def pull_secrets(pool: PoolSpec, defaults: render.ProxyDefaults) -> object:
        pod = render.render_deployment("demo", "team-a", "uid-1", pool, defaults)
        return pod["spec"]["template"]["spec"].get("imagePullSecrets")

    assert pull_secrets(POOL, render.OPERATOR_DEFAULTS) is None
    defaults = render.ProxyDefaults(image_pull_secrets=("regcred",))
    assert pull_secrets(POOL, defaults) == [{"name": "regcred"}]
    own = POOL.model_copy(update={"proxy": POOL.proxy.model_copy(
        update={"imagePullSecrets": [LocalObjectReference(name="team-cred")]})})  # fmt: skip
    assert pull_secrets(own, defaults) == [{"name": "team-cred"}]


# Every documented flag with a value other than its default, and the option it must set.
FLAGS: list[tuple[list[str], str, object]] = [
    (["--listen", "127.0.0.2:81"], "listen_host", "127.0.0.2"),
    (["--listen", "127.0.0.2:81"], "listen_port", 81),
    (["--admin", "127.0.0.3:91"], "admin_host", "127.0.0.3"),
    (["--admin", "127.0.0.3:91"], "admin_port", 91),
    (["--pool", "/x/pool.yaml"], "pool_path", Path("/x/pool.yaml")),
    (["--watch-interval", "7"], "watch_interval", 7.0),
    (["--no-active-health"], "active_health", False),
    (["--grace", "3"], "grace_seconds", 3.0),
    (["--drain-delay", "4"], "drain_delay", 4.0),
    (["--reuse-port"], "reuse_port", True),
    (["--workers", "auto"], "workers", 0),
    (["--workers", "3"], "workers", 3),
    (["--access-log"], "access_log", True),
    (["--explain"], "explain", True),
    (["--configmap", "ns/cm"], "config_map", ("ns", "cm")),
    (["--kubeconfig", "/k/config"], "kubeconfig", "/k/config"),
    (["--secrets-dir", "/s"], "secrets_dir", Path("/s")),
    (["--idle-timeout", "2.5"], "idle_timeout", 2.5),
    (["--max-header-bytes", "1024"], "max_header_bytes", 1024),
    (["--max-head-bytes", "4096"], "max_head_bytes", 4096),
    (["--head-timeout", "3"], "head_timeout", 3.0),
    (["--trailer-timeout", "4"], "trailer_timeout", 4.0),
    (
        ["--trusted-proxy", "198.18.0.0/16"],
        "trusted_proxies",
        (ipaddress.ip_network("198.18.0.0/16"),),
    ),
    (["--body-buffer-bytes", "1000"], "body_buffer_bytes", 1000),
]


@pytest.mark.parametrize(("argv", "field", "expected"), FLAGS)
def test_each_flag_sets_its_option(argv: list[str], field: str, expected: object) -> None:
    base = [] if "--pool" in argv else ["--pool", "/p.yaml"]
    options = options_from_args(build_parser().parse_args([*base, *argv]))
    assert getattr(options, field) == expected
    assert getattr(ProxyOptions(), field) != expected, "pick a value other than the default"


def test_every_option_has_a_flag() -> None:
    fields = {field.name for field in dataclasses.fields(ProxyOptions)}
    assert fields == {field for _, field, _ in FLAGS}


def test_rendered_arguments_round_trip_through_the_proxys_parser() -> None:
    everything = ProxyOptions(**{
        field: expected for argv, field, expected in FLAGS
    })  # fmt: skip
    for options in (ProxyOptions(pool_path=Path("/p.yaml")), everything, rendered_options()):
        assert options_from_args(build_parser().parse_args(proxy_args(options))) == options


@pytest.mark.parametrize(
    ("proxy", "workers"),
    [
        ({}, 1),
        ({"resources": {"limits": {"cpu": "2", "memory": "256Mi"}}}, 2),
        ({"resources": {"limits": {"cpu": "1500m"}}}, 1),
        ({"resources": {"limits": {"cpu": 4}}}, 4),
        ({"resources": {"limits": {"cpu": "250m"}}}, 1),
        ({"workers": 3, "resources": {"limits": {"cpu": "2"}}}, 3),
    ],
)
def test_the_rendered_proxy_runs_the_pools_workers_else_one_per_whole_cpu_of_its_limit(
    proxy: dict, workers: int
) -> None:
    spec = POOL.model_copy(update={"proxy": POOL.proxy.model_validate(proxy)})
    deployment = render.render_deployment("demo", "team-a", "uid-1", spec, render.OPERATOR_DEFAULTS)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert options_from_args(build_parser().parse_args(container["args"])).workers == workers
