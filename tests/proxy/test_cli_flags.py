"""Every documented flag of `servicepool-proxy`, run through the installed console script.

Options built in-process once hid five flags that the command line parsed and dropped;
these tests start the real entry point and watch each flag change what the proxy does.
(`--configmap` and `--kubeconfig` need an API server: tests/integration runs them.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from servicepool_proxy.server import free_port
from tests.support import MemberProcess, eventually, start_member_process, wait_for_port

from .conftest import pool_document

ENTRY_POINT = shutil.which("servicepool-proxy", path=os.path.dirname(sys.executable))


@dataclass
class CliProxy:
    process: subprocess.Popen[str]
    port: int
    admin: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def admin_get(self, path: str) -> tuple[int, str]:
        try:
            url = f"http://127.0.0.1:{self.admin}{path}"
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def member(tmp_path: Path) -> Iterator[MemberProcess]:
    started = start_member_process("a")
    yield started
    started.kill()


@pytest.fixture
def pool_file(tmp_path: Path, member: MemberProcess) -> Path:
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(pool_document([{"name": "a", "url": member.url}])))
    return path


@pytest.fixture
def run_proxy(tmp_path: Path, pool_file: Path) -> Iterator:
    """Start the console script with the given extra flags; stops every proxy afterwards."""
    assert ENTRY_POINT, "the servicepool-proxy console script is not installed"
    started: list[CliProxy] = []

    def start(*flags: str, port: int | None = None, pool: Path = pool_file) -> CliProxy:
        port = port or free_port()
        admin = free_port()
        log = tmp_path / f"proxy-{len(started)}.log"
        argv = [ENTRY_POINT, "--pool", str(pool), "--listen", f"127.0.0.1:{port}",
                "--admin", f"127.0.0.1:{admin}", *flags]  # fmt: skip
        process = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
        proxy = CliProxy(process, port, admin, log)
        started.append(proxy)
        wait_for_port("127.0.0.1", admin, 20, process)  # type: ignore[arg-type]
        return proxy

    yield start
    for proxy in started:
        if proxy.process.poll() is None:
            proxy.process.kill()
            proxy.process.wait(5)


def test_listen_and_admin_bind_where_they_are_told(run_proxy) -> None:
    proxy = run_proxy()
    assert proxy.get("/hello")[0] == 200
    assert proxy.admin_get("/healthz") == (200, "ok\n")


def test_max_header_bytes_refuses_a_longer_header(run_proxy) -> None:
    proxy = run_proxy("--max-header-bytes", "1024")
    assert proxy.get("/", {"X-Big": "a" * 3000})[0] == 431
    assert proxy.get("/", {"X-Small": "a" * 500})[0] == 200


def test_idle_timeout_closes_an_idle_connection(run_proxy) -> None:
    proxy = run_proxy("--idle-timeout", "1")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the proxy, not by our timeout
        assert time.monotonic() - started < 3  # 1 s, swept every quarter second


def test_no_active_health_leaves_members_unprobed(run_proxy, member: MemberProcess) -> None:
    probed = run_proxy()
    unprobed = run_proxy("--no-active-health")
    member.kill()

    def health(proxy: CliProxy) -> str:
        return json.loads(proxy.admin_get("/status")[1])["members"][0]["health"]

    assert eventually(lambda: health(probed) == "Unhealthy", 5)
    time.sleep(1.0)  # two probe intervals of the probing proxy
    assert health(unprobed) == "Unknown"


def test_watch_interval_sets_how_soon_a_changed_file_applies(
    run_proxy, tmp_path: Path, member: MemberProcess
) -> None:
    other = start_member_process("b")
    try:
        fast = tmp_path / "fast.yaml"
        slow = tmp_path / "slow.yaml"
        document = pool_document([{"name": "a", "url": member.url}])
        for path in (fast, slow):
            path.write_text(yaml.safe_dump(document))
        quick = run_proxy("--watch-interval", "0.1", pool=fast)
        lazy = run_proxy("--watch-interval", "30", pool=slow)
        changed = yaml.safe_dump(pool_document([{"name": "b", "url": other.url}]))
        for path in (fast, slow):
            path.write_text(changed)

        def member_of(proxy: CliProxy) -> str:
            return json.loads(proxy.get("/")[1])["member"]

        assert eventually(lambda: member_of(quick) == "b", 3)
        assert member_of(lazy) == "a"
    finally:
        other.kill()


def slow_pool(tmp_path: Path, delay: float) -> tuple[Path, MemberProcess]:
    slow = start_member_process("slow", delay=delay)
    path = tmp_path / "slow-pool.yaml"
    path.write_text(yaml.safe_dump(pool_document([{"name": "slow", "url": slow.url}])))
    return path, slow


def background_get(proxy: CliProxy, results: list[int]) -> threading.Thread:
    def run() -> None:
        try:
            results.append(proxy.get("/")[0])
        except OSError:
            results.append(0)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_grace_bounds_how_long_in_flight_requests_may_finish(run_proxy, tmp_path: Path) -> None:
    path, slow = slow_pool(tmp_path, delay=5.0)
    try:
        proxy = run_proxy("--grace", "0.5", pool=path)
        results: list[int] = []
        thread = background_get(proxy, results)
        time.sleep(0.5)
        stopped = time.monotonic()
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.process.wait(10) == 0
        assert time.monotonic() - stopped < 3  # not the member's 5 s
        thread.join(10)
        assert results != [200]
    finally:
        slow.kill()


def test_drain_delay_keeps_serving_while_not_ready(run_proxy) -> None:
    proxy = run_proxy("--drain-delay", "2")
    assert proxy.admin_get("/readyz")[0] == 200
    proxy.process.send_signal(signal.SIGTERM)
    assert eventually(lambda: proxy.admin_get("/readyz")[0] == 503, 1)
    # New connections are still served, and told to close.
    request = urllib.request.Request(proxy.url + "/during-drain")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Connection"] == "close"
    assert proxy.process.wait(10) == 0
    assert "still accepting for 2.0s" in proxy.output()


def test_drain_goes_on_while_new_connections_still_arrive(run_proxy) -> None:
    # A load balancer slow to drop the Pod (kube-proxy on a busy node) still finds it open.
    proxy = run_proxy("--drain-delay", "1")
    signalled = time.monotonic()
    proxy.process.send_signal(signal.SIGTERM)
    answered = []
    while time.monotonic() - signalled < 1.6:
        with urllib.request.urlopen(proxy.url + "/late", timeout=5) as response:
            answered.append(response.status)
        time.sleep(0.2)
    assert answered and set(answered) == {200}  # past the 1 s delay, still accepting
    assert proxy.process.wait(10) == 0  # once connections stop, it closes and exits
    assert time.monotonic() - signalled < 2 * 1 + 3


def test_reuse_port_lets_two_proxies_share_a_port(run_proxy) -> None:
    port = free_port()
    first = run_proxy("--reuse-port", port=port)
    second = run_proxy("--reuse-port", port=port)
    assert first.process.poll() is None and second.process.poll() is None
    assert first.get("/")[0] == 200
    without = run_proxy(port=free_port())
    assert without.process.poll() is None  # its own port: fine
    refused = subprocess.run(
        [ENTRY_POINT, "--pool", str(first.log.with_name("pool.yaml")),
         "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert refused.returncode == 1 and "cannot start" in refused.stderr


def test_secrets_dir_is_where_client_tokens_are_read(
    run_proxy, tmp_path: Path, member: MemberProcess
) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "clients").mkdir(parents=True)
    (secrets / "clients" / "tokens").write_text("s3cret\n")
    path = tmp_path / "guarded.yaml"
    path.write_text(yaml.safe_dump(pool_document(
        [{"name": "a", "url": member.url}],
        access={"tokens": {"secretName": "clients", "key": "tokens"}},
    )))  # fmt: skip
    proxy = run_proxy("--secrets-dir", str(secrets), pool=path)
    assert proxy.get("/")[0] == 401
    assert proxy.get("/", {"Authorization": "Bearer s3cret"})[0] == 200


def test_access_log_logs_each_request(run_proxy) -> None:
    logged = run_proxy("--access-log")
    quiet = run_proxy()
    for proxy in (logged, quiet):
        assert proxy.get("/logged-path")[0] == 200
    assert eventually(lambda: '"GET /logged-path"' in logged.output(), 2)
    assert '"GET /logged-path"' not in quiet.output()


def test_log_level_filters_the_log(run_proxy) -> None:
    verbose = run_proxy()
    terse = run_proxy("--log-level", "WARNING")
    assert eventually(lambda: "proxy listening" in verbose.output(), 2)
    assert "proxy listening" not in terse.output()


def test_max_head_bytes_bounds_the_whole_header_section(run_proxy) -> None:
    proxy = run_proxy("--max-head-bytes", "2048")
    many = {f"X-H{i}": "a" * 400 for i in range(8)}  # each field short, together 3.3 KB
    assert proxy.get("/", many)[0] == 431
    assert run_proxy().get("/", many)[0] == 200


def test_trusted_proxy_keeps_the_forwarded_for_of_a_proxy_in_front(run_proxy) -> None:
    def forwarded_for(proxy: CliProxy) -> str:
        return json.loads(proxy.get("/", {"X-Forwarded-For": "203.0.113.9"})[1])["forwardedFor"]

    assert forwarded_for(run_proxy()) == "127.0.0.1"  # a client's claim is replaced
    assert forwarded_for(run_proxy("--trusted-proxy", "127.0.0.0/8")) == "203.0.113.9, 127.0.0.1"


def test_explain_answers_an_asking_request_with_its_decision(run_proxy) -> None:
    ask = {"X-ServicePool-Explain": "1"}

    def decision(proxy: CliProxy) -> str | None:
        request = urllib.request.Request(proxy.url + "/", headers=ask)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers.get("X-ServicePool-Decision")

    assert decision(run_proxy()) is None
    explaining = run_proxy("--explain")
    assert decision(explaining) == "attempt=1; pick=a; strategy=roundRobin; candidates=a; skipped=-"
    assert json.loads(explaining.admin_get("/status")[1])["explain"] is True


def test_admin_on_127_0_0_1_is_reachable_on_loopback_only(run_proxy, pool_file: Path) -> None:
    def reachable(host: str, port: int) -> bool:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            return False

    local = run_proxy()  # --admin 127.0.0.1:PORT
    assert reachable("127.0.0.1", local.admin)
    assert not reachable("127.0.0.2", local.admin)  # another address of this host
    port = free_port()
    everywhere = subprocess.Popen(
        [ENTRY_POINT, "--pool", str(pool_file), "--listen", f"127.0.0.1:{free_port()}",
         "--admin", f":{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 20, everywhere)  # type: ignore[arg-type]
        assert reachable("127.0.0.2", port)
    finally:
        everywhere.kill()
        everywhere.wait(5)


def _requests_in_metrics(text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("servicepool_requests_total{"))  # fmt: skip


def test_workers_share_one_port_and_the_admin_page_sums_them(run_proxy, tmp_path: Path) -> None:
    proxy = run_proxy("--workers", "2", "--watch-interval", "0.1")

    def workers_up() -> int:
        code, text = proxy.admin_get("/status")
        return len(json.loads(text)["workers"]) if code == 200 else 0

    assert eventually(lambda: workers_up() == 2, 10)  # ready as soon as the first is
    for _ in range(40):  # a new connection each: the kernel spreads them over the workers
        assert proxy.get("/")[0] == 200
    status = json.loads(proxy.admin_get("/status")[1])
    workers = status["workers"]
    assert len(workers) == 2
    own = [json.loads(urllib.request.urlopen(w["admin"] + "/status", timeout=5).read())
           for w in workers]  # fmt: skip
    served = [sum(m["requests"] for m in page["members"]) for page in own]
    assert sum(served) == 40 and min(served) > 0
    assert sum(m["requests"] for m in status["members"]) == 40
    own_metrics = [urllib.request.urlopen(w["admin"] + "/metrics", timeout=5).read().decode()
                   for w in workers]  # fmt: skip
    assert _requests_in_metrics(proxy.admin_get("/metrics")[1]) == 40
    assert [_requests_in_metrics(text) for text in own_metrics] == served
    # A changed pool file reaches every worker; SIGTERM drains every worker.
    pool = tmp_path / "pool.yaml"
    document = yaml.safe_load(pool.read_text())
    document["spec"]["strategy"] = "leastInFlight"
    pool.write_text(yaml.safe_dump(document))

    def generations() -> list[int]:
        return [w["generation"] for w in json.loads(proxy.admin_get("/status")[1])["workers"]]

    assert eventually(lambda: generations() == [2, 2], 5)
    proxy.process.send_signal(signal.SIGTERM)
    assert proxy.process.wait(20) == 0
    for worker in workers:
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(worker["admin"] + "/healthz", timeout=2)


def test_a_worker_whose_supervisor_is_gone_exits_at_once(pool_file: Path) -> None:
    from servicepool_proxy.workers import WORKER_ENV, bound_socket

    with bound_socket("127.0.0.1", 0, True) as listen, bound_socket("127.0.0.1", 0, False) as admin:
        fds = (listen.fileno(), admin.fileno())
        gone = subprocess.run(
            [ENTRY_POINT, "--pool", str(pool_file), "--workers", "2"],
            env={**os.environ, WORKER_ENV: f"{fds[0]},{fds[1]},1"},  # pid 1 is not its parent
            pass_fds=fds, capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    assert gone.returncode != 0
    assert "supervisor of this worker is gone" in gone.stderr


def test_status_and_log_say_which_build_runs(run_proxy) -> None:
    # The compiled tiers set SERVICEPOOL_EXPECT_BUILD=compiled: a wheel whose modules silently
    # stayed Python fails here instead of passing every other test as Python.
    expected = os.environ.get("SERVICEPOOL_EXPECT_BUILD", "python")
    proxy = run_proxy()
    assert json.loads(proxy.admin_get("/status")[1])["build"] == expected
    assert eventually(lambda: f"{expected} build" in proxy.output(), 2)
