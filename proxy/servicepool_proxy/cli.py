"""`servicepool-proxy`: balance requests across the members of one pool file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from .loader import PoolFileError, load_pool_file
from .server import ProxyOptions, ProxyServer, run_until_signalled


def parse_host_port(value: str) -> tuple[str, int]:
    """HOST:PORT (or :PORT) as a tuple; argparse reports errors."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


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
        pool = load_pool_file(args.pool)
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
    )
    install_event_loop_policy()
    try:
        asyncio.run(run_until_signalled(ProxyServer(pool, options)))
    except OSError as exc:
        print(f"servicepool-proxy: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
