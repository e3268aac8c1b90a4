"""The contract between the operator and the proxy: where the config is, which ports, and
the proxy's command line. The operator renders `proxy_args(...)`; the proxy parses it with
`build_parser()`; both are defined here, once, and a test round-trips them."""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass
from pathlib import Path

CONFIG_KEY = "pool.yaml"  # the key of the rendered ConfigMap
CONFIG_MOUNT = "/etc/servicepool"  # where the proxy Pod mounts it
SECRETS_MOUNT = "/etc/servicepool/secrets"  # <mount>/<secret>/<key>
DEFAULT_SECRETS_DIR = Path(SECRETS_MOUNT)
PROXY_PORT = 8080
ADMIN_PORT = 9090

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@dataclass(frozen=True)
class ProxyOptions:
    """How to run the proxy (as opposed to the pool, which says where to send traffic)."""

    listen_host: str = "0.0.0.0"
    listen_port: int = PROXY_PORT
    admin_host: str = "0.0.0.0"
    admin_port: int = ADMIN_PORT
    pool_path: Path | None = None
    watch_interval: float = 1.0
    active_health: bool = True
    grace_seconds: float = 30.0
    # On SIGTERM, go on accepting at least this long (not ready, every answer closing), then
    # on while new connections keep arriving, up to as long again, before closing.
    drain_delay: float = 0.0
    reuse_port: bool = False
    workers: int = 1  # processes serving the port (SO_REUSEPORT); 0: one per usable CPU
    access_log: bool = False
    config_map: tuple[str, str] | None = None  # (namespace, name) to watch via the API
    kubeconfig: str | None = None
    secrets_dir: Path = DEFAULT_SECRETS_DIR
    # A connection idle this long is closed; one with a request head begun and still
    # incomplete by then gets a 408 (as after head_timeout).
    idle_timeout: float = 15.0
    max_header_bytes: int = 8190  # per request line and per header field
    max_head_bytes: int = 65536  # the whole header section, and the whole trailer section
    head_timeout: float = 10.0  # from a request head's first byte to its end
    trailer_timeout: float = 10.0  # from the first trailer byte to the end of the request
    trusted_proxies: Networks = ()  # peers whose X-Forwarded-* headers are believed
    body_buffer_bytes: int = 64 << 20  # request-body bytes held at once; beyond, bodies stream
    explain: bool = False  # X-ServicePool-Explain: 1 gets X-ServicePool-Decision

    @property
    def longest_shutdown(self) -> float:
        """Seconds from SIGTERM to exit at most: the longest drain, then the grace period."""
        return 2 * self.drain_delay + self.grace_seconds


def parse_host_port(value: str) -> tuple[str, int]:
    """HOST:PORT (or :PORT) as a tuple; argparse reports errors."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def parse_workers(value: str) -> int:
    """N (at least 1) or auto (0: one per CPU the proxy may use)."""
    if value == "auto":
        return 0
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of workers (1 or more) or auto, "
                                         f"got {value!r}")  # fmt: skip
    return int(value)


def parse_config_map(value: str) -> tuple[str, str]:
    """NAMESPACE/NAME as a tuple."""
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {value!r}")
    return namespace, name


def build_parser() -> argparse.ArgumentParser:
    """The proxy's command line (the operator renders it with `proxy_args`)."""
    parser = argparse.ArgumentParser(
        prog="servicepool-proxy",
        description="Balance HTTP requests across the members of a ServicePool.",
    )
    _add_where_flags(parser)
    _add_lifecycle_flags(parser)
    _add_limit_flags(parser)
    return parser


def _add_where_flags(parser: argparse.ArgumentParser) -> None:
    """Where the proxy listens, and where its pool and Secrets come from."""
    parser.add_argument(
        "--pool",
        metavar="FILE",
        required=True,
        type=Path,
        help="the ServicePool YAML file; re-read when it changes",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=f"0.0.0.0:{PROXY_PORT}",
        type=parse_host_port,
        help="where clients connect (default %(default)s)",
    )
    parser.add_argument(
        "--admin",
        metavar="HOST:PORT",
        default=f"0.0.0.0:{ADMIN_PORT}",
        type=parse_host_port,
        help="metrics, health and status (default %(default)s)",
    )
    parser.add_argument(
        "--configmap",
        metavar="NAMESPACE/NAME",
        type=parse_config_map,
        help="also follow this ConfigMap's pool.yaml through the Kubernetes "
        "API (the file is the fallback and may be absent at start)",
    )
    parser.add_argument(
        "--kubeconfig", metavar="FILE", help="kubeconfig for --configmap outside a cluster"
    )
    parser.add_argument(
        "--secrets-dir",
        metavar="DIR",
        type=Path,
        default=ProxyOptions.secrets_dir,
        help="where Secrets named by spec.access/upstreamAuth are mounted "
        "(<dir>/<secret>/<key>; default %(default)s)",
    )
    parser.add_argument(
        "--watch-interval",
        metavar="S",
        type=float,
        default=ProxyOptions.watch_interval,
        help="seconds between checks of the pool file and the mounted Secrets for changes",
    )


def _add_lifecycle_flags(parser: argparse.ArgumentParser) -> None:
    """Probing, shutdown and logging."""
    parser.add_argument(
        "--no-active-health",
        action="store_true",
        help="do not probe members (when something else probes them)",
    )
    parser.add_argument(
        "--grace",
        metavar="S",
        type=float,
        default=ProxyOptions.grace_seconds,
        help="seconds to finish in-flight requests on SIGTERM",
    )
    parser.add_argument(
        "--drain-delay",
        metavar="S",
        type=float,
        default=ProxyOptions.drain_delay,
        help="on SIGTERM, keep accepting at least this many seconds with /readyz failing (and "
        "every answer closing its connection), then on while new connections still arrive, up "
        "to as long again, before the listener closes, so load balancers such as kube-proxy "
        "stop sending new connections first",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT so several processes can share the port",
    )
    parser.add_argument(
        "--workers",
        metavar="N|auto",
        type=parse_workers,
        default=ProxyOptions.workers,
        help="processes serving the port, each balancing on its own (SO_REUSEPORT), behind "
        "one admin port that merges their /metrics and /status; auto: one per CPU the proxy "
        "may use (default %(default)s)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="record why each member was or was not picked (in /status and /events), and "
        "answer a request carrying X-ServicePool-Explain: 1 with X-ServicePool-Decision",
    )
    parser.add_argument(
        "--log-level",
        metavar="L",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG, INFO, WARNING or ERROR",
    )


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """What one client may take: time, header sizes, buffered bodies; trusted proxies."""
    parser.add_argument(
        "--idle-timeout",
        metavar="S",
        type=float,
        default=ProxyOptions.idle_timeout,
        help="close connections idle this many seconds (a request head begun in that "
        "time and still incomplete gets a 408)",
    )
    parser.add_argument(
        "--max-header-bytes",
        metavar="N",
        type=int,
        default=ProxyOptions.max_header_bytes,
        help="longest request line and header field accepted (414 or 431 beyond)",
    )
    parser.add_argument(
        "--max-head-bytes",
        metavar="N",
        type=int,
        default=ProxyOptions.max_head_bytes,
        help="largest request head, and trailer section, accepted (431 beyond)",
    )
    parser.add_argument(
        "--head-timeout",
        metavar="S",
        type=float,
        default=ProxyOptions.head_timeout,
        help="answer 408 and close when a request head is not complete this many seconds "
        "after its first byte",
    )
    parser.add_argument(
        "--trailer-timeout",
        metavar="S",
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
        metavar="N",
        type=int,
        default=ProxyOptions.body_buffer_bytes,
        help="request-body bytes held at once, across all requests, before a member is "
        "picked (see retries.bufferBytes); a body that would go past it streams",
    )


def options_from_args(args: argparse.Namespace) -> ProxyOptions:
    """Every flag's value in the proxy's options (tests check that none is left out)."""
    return ProxyOptions(
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        admin_host=args.admin[0],
        admin_port=args.admin[1],
        pool_path=args.pool,
        watch_interval=args.watch_interval,
        active_health=not args.no_active_health,
        grace_seconds=args.grace,
        drain_delay=args.drain_delay,
        reuse_port=args.reuse_port,
        workers=args.workers,
        access_log=args.access_log,
        config_map=args.configmap,
        kubeconfig=args.kubeconfig,
        secrets_dir=args.secrets_dir,
        idle_timeout=args.idle_timeout,
        max_header_bytes=args.max_header_bytes,
        max_head_bytes=args.max_head_bytes,
        head_timeout=args.head_timeout,
        trailer_timeout=args.trailer_timeout,
        trusted_proxies=tuple(args.trusted_proxy),
        body_buffer_bytes=args.body_buffer_bytes,
        explain=args.explain,
    )


# The flag of each option that is not rendered specially below.
FLAG_OF = {
    "pool_path": "--pool", "watch_interval": "--watch-interval", "grace_seconds": "--grace",
    "drain_delay": "--drain-delay", "reuse_port": "--reuse-port", "access_log": "--access-log",
    "kubeconfig": "--kubeconfig", "secrets_dir": "--secrets-dir",
    "idle_timeout": "--idle-timeout", "max_header_bytes": "--max-header-bytes",
    "max_head_bytes": "--max-head-bytes", "head_timeout": "--head-timeout",
    "trailer_timeout": "--trailer-timeout", "body_buffer_bytes": "--body-buffer-bytes",
    "explain": "--explain",
}  # fmt: skip
SWITCHES = frozenset({"reuse_port", "access_log", "explain"})


def proxy_args(options: ProxyOptions) -> list[str]:
    """The command line that makes the proxy run with `options` (defaults left out)."""
    default = ProxyOptions()
    args = ["--pool", str(options.pool_path)]
    if (options.listen_host, options.listen_port) != (default.listen_host, default.listen_port):
        args += ["--listen", f"{options.listen_host}:{options.listen_port}"]
    if (options.admin_host, options.admin_port) != (default.admin_host, default.admin_port):
        args += ["--admin", f"{options.admin_host}:{options.admin_port}"]
    if options.config_map is not None:
        args += ["--configmap", "/".join(options.config_map)]
    if not options.active_health:
        args.append("--no-active-health")
    for network in options.trusted_proxies:
        args += ["--trusted-proxy", str(network)]
    if options.workers != default.workers:
        args += ["--workers", str(options.workers or "auto")]
    for name, flag in FLAG_OF.items():
        value = getattr(options, name)
        if name == "pool_path" or value == getattr(default, name):
            continue
        args += [flag] if name in SWITCHES else [flag, str(value)]
    return args
