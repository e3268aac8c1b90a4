"""`servicepool-operator`: run the ServicePool operator (kopf with the right settings)."""

from __future__ import annotations

import argparse
import os
import sys

import kopf

from .handlers import (
    LEADER_NAME_ENV,
    LEADER_NAMESPACE_ENV,
    METRICS_ENV,
    PROXY_IMAGE_ENV,
    PROXY_IMAGE_PULL_POLICY_ENV,
    PROXY_IMAGE_PULL_SECRETS_ENV,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servicepool-operator",
        description="Reconcile ServicePools: proxies, live membership, health and status.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeat for several; globs allowed)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no --namespace)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=os.environ.get(LEADER_NAMESPACE_ENV),
        help="namespace of the Lease that lets one replica act at a time "
        "(no leader election without it)",
    )
    parser.add_argument(
        "--leader-election-name", default="servicepool-operator", help="name of that Lease"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint URL ('' to disable)",
    )
    add_proxy_image_flags(parser)
    parser.add_argument(
        "--metrics",
        default="",
        metavar="HOST:PORT",
        help="serve Prometheus metrics of the pools (servicepool_pool_ready, ...) here "
        "('' = none, the default; the chart sets 0.0.0.0:8082)",
    )
    parser.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--debug", action="store_true")
    return parser  # fmt: skip


def add_proxy_image_flags(parser: argparse.ArgumentParser) -> None:
    """The image the proxies run where a pool does not say."""
    parser.add_argument(
        "--proxy-image",
        default=os.environ.get(PROXY_IMAGE_ENV),
        help="image of the proxies where a pool sets no spec.proxy.image "
        "(the chart passes the operator's own image)",
    )
    parser.add_argument(
        "--proxy-image-pull-policy",
        choices=["Always", "IfNotPresent", "Never"],
        default=os.environ.get(PROXY_IMAGE_PULL_POLICY_ENV),
        help="pull policy of that image where a pool sets none",
    )
    parser.add_argument(
        "--proxy-image-pull-secret",
        action="append",
        default=[],
        metavar="NAME",
        help="Secret for pulling that image where a pool sets no spec.proxy.imagePullSecrets "
        "(repeatable; it must exist in each pool's namespace)",
    )


def settings_env(args: argparse.Namespace) -> dict[str, str]:
    """The flags as the environment the handlers read them from."""
    env = {}
    if args.leader_election_namespace:
        env[LEADER_NAMESPACE_ENV] = args.leader_election_namespace
        env[LEADER_NAME_ENV] = args.leader_election_name
    if args.proxy_image:
        env[PROXY_IMAGE_ENV] = args.proxy_image
    if args.metrics:
        env[METRICS_ENV] = args.metrics
    if args.proxy_image_pull_policy:
        env[PROXY_IMAGE_PULL_POLICY_ENV] = args.proxy_image_pull_policy
    if args.proxy_image_pull_secret:
        env[PROXY_IMAGE_PULL_SECRETS_ENV] = ",".join(args.proxy_image_pull_secret)
    return env


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.update(settings_env(args))
    kopf.configure(
        debug=args.debug,
        verbose=args.verbose,
        log_format={"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL,
                    "json": kopf.LogFormat.JSON}[args.log_format],
    )  # fmt: skip
    from . import handlers  # noqa: F401 - registers the handlers with kopf

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=True,
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
