"""`servicepool-proxy`: balance requests across the members of one pool file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from servicepool_api.contract import build_parser, options_from_args
from servicepool_api.loader import PoolFileError, parse_pool_text
from servicepool_proxy.config.kubesource import make_core_api, read_config_map_text
from servicepool_proxy.server import ProxyServer, run_until_signalled
from servicepool_proxy.workers import Supervisor, worker_count, worker_sockets


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
    options = options_from_args(args)
    install_event_loop_policy()
    sockets = worker_sockets()  # set when this process is one of several workers
    count = 1 if sockets is not None else worker_count(options.workers)
    try:
        if count > 1:
            arguments = sys.argv[1:] if argv is None else argv
            asyncio.run(Supervisor(options, count, arguments).run())
        else:
            asyncio.run(run_until_signalled(ProxyServer(pool, options, text, sockets)))
    except OSError as exc:
        print(f"servicepool-proxy: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
