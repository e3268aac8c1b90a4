"""`servicepool-proxy`: balance requests across the members of one pool file."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from pathlib import Path

from .access import DEFAULT_SECRETS_DIR
from .kubesource import make_core_api, read_config_map_text
from .loader import PoolFileError, parse_pool_text
from .server import ProxyOptions, ProxyServer, run_until_signalled


def parse_host_port(value: str) -> tuple[str, int]:
    """HOST:PORT (or :PORT) as a tuple; argparse reports errors."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def parse_config_map(value: str) -> tuple[str, str]:
    """NAMESPACE/NAME as a tuple."""
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {value!r}")
    return namespace, name


def read_initial_config(args: argparse.Namespace) -> str:
    """The pool text to start with: the file, or the ConfigMap when the file is absent."""
    try:
        return args.pool.read_text(encoding="utf-8")
    except OSError as exc:
        if args.configmap is None:
            raise PoolFileError(f"cannot read {args.pool}: {exc.strerror or exc}") from None
    namespace, name = args.configmap
    try:
        return read_config_map_text(make_core_api(args.kubeconfig), namespace, name)
    except Exception as exc:
        raise PoolFileError(
            f"{args.pool} is absent and ConfigMap {namespace}/{name} is unreadable: {exc}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servicepool-proxy",
        description="Balance HTTP requests across the members of a ServicePool.",
    )
    parser.add_argument("--pool", required=True, type=Path, help="ServicePool YAML file")
    parser.add_argument(
        "--listen",
        default="0.0.0.0:8080",
        type=parse_host_port,
        help="where clients connect (default 0.0.0.0:8080)",
    )
    parser.add_argument(
        "--admin",
        default="0.0.0.0:9090",
        type=parse_host_port,
        help="metrics, health and status (default 0.0.0.0:9090)",
    )
    parser.add_argument(
        "--no-active-health",
        action="store_true",
        help="do not probe members (when something else probes them)",
    )
    parser.add_argument(
        "--watch-interval",
        type=float,
        default=1.0,
        help="seconds between checks of the pool file for changes",
    )
    parser.add_argument(
        "--grace", type=float, default=30.0, help="seconds to finish in-flight requests on SIGTERM"
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT so several processes can share the port",
    )
    parser.add_argument(
        "--configmap",
        metavar="NAMESPACE/NAME",
        type=parse_config_map,
        help="also follow this ConfigMap's pool.yaml through the Kubernetes "
        "API (the file is the fallback and may be absent at start)",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig for --configmap outside a cluster")
    parser.add_argument(
        "--secrets-dir",
        type=Path,
        default=DEFAULT_SECRETS_DIR,
        help="where Secrets named by spec.access/upstreamAuth are mounted "
        "(<dir>/<secret>/<key>; default %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=15.0,
        help="close idle connections, and connections that do not complete "
        "a request's headers, after this many seconds",
    )
    parser.add_argument(
        "--max-header-bytes",
        type=int,
        default=8190,
        help="longest request line and header field accepted (431 beyond)",
    )
    parser.add_argument(
        "--max-head-bytes",
        type=int,
        default=ProxyOptions.max_head_bytes,
        help="largest request head, and trailer section, accepted (431 beyond)",
    )
    parser.add_argument(
        "--head-timeout",
        type=float,
        default=ProxyOptions.head_timeout,
        help="close a connection whose request head is not complete this many seconds "
        "after its first byte",
    )
    parser.add_argument(
        "--trailer-timeout",
        type=float,
        default=ProxyOptions.trailer_timeout,
        help="answer 408 when chunked trailers are not complete this many seconds after "
        "their first byte",
    )
    parser.add_argument(
        "--trusted-proxy",
        metavar="CIDR",
        action="append",
        type=ipaddress.ip_network,
        default=[],
        help="a proxy in front whose X-Forwarded-For/-Proto/-Host are kept (repeatable); "
        "from anyone else they are replaced",
    )
    parser.add_argument(
        "--body-buffer-bytes",
        type=int,
        default=ProxyOptions.body_buffer_bytes,
        help="request-body bytes held at once, across all requests, before a member is "
        "picked (see retries.bufferBytes); a body that would go past it streams",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def install_event_loop_policy() -> None:
    """Use uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        text = read_initial_config(args)
        pool = parse_pool_text(text)
    except PoolFileError as exc:
        print(f"servicepool-proxy: invalid pool file {args.pool}: {exc}", file=sys.stderr)
        return 2
    options = ProxyOptions(
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        admin_host=args.admin[0],
        admin_port=args.admin[1],
        pool_path=args.pool,
        watch_interval=args.watch_interval,
        active_health=not args.no_active_health,
        grace_seconds=args.grace,
        reuse_port=args.reuse_port,
        access_log=args.access_log,
        max_head_bytes=args.max_head_bytes,
        head_timeout=args.head_timeout,
        trailer_timeout=args.trailer_timeout,
        trusted_proxies=tuple(args.trusted_proxy),
        body_buffer_bytes=args.body_buffer_bytes,
    )
    install_event_loop_policy()
    try:
        asyncio.run(run_until_signalled(ProxyServer(pool, options, text)))
    except OSError as exc:
        print(f"servicepool-proxy: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
