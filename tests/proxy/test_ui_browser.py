"""The live page in a real browser (Debian's headless Chromium driven by selenium): three
members appear, a killed member turns Unhealthy within 2 s. The screenshot is what
docs/proxy.md shows (SERVICEPOOL_UI_SCREENSHOT=docs/ui.png writes it there)."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import MemberProcess, ProxyProcess, start_member_process, start_proxy_process

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (dev extra)"
)
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("Debian's chromium and chromium-driver are not installed "
                "(e2e/cluster/install-deps.sh)", allow_module_level=True)  # fmt: skip


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1500,640", "--no-proxy-server"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[list[MemberProcess], ProxyProcess]]:
    started = [start_member_process(name) for name in ("alpha", "beta", "gamma")]
    spec = {
        "strategy": "leastInFlight",
        "members": [{"name": m.name, "url": m.url} for m in started],
        "healthCheck": {"intervalSeconds": 0.25, "timeoutSeconds": 0.2,
                        "unhealthyThreshold": 1},
    }  # fmt: skip
    proxy = start_proxy_process(tmp_path, spec, "--explain")
    try:
        yield started, proxy
    finally:
        proxy.stop()
        for member in started:
            member.kill()


def state_of(driver: webdriver.Chrome, member: str) -> str:
    """The state shown in the member's row (read in one step: rows are redrawn live)."""
    return str(driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
        f'tr[data-member="{member}"] .state',
    ))  # fmt: skip


def wait_until(predicate, seconds: float, step: float = 0.05) -> float | None:
    """Seconds until the predicate held, or None."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    return None


def test_a_killed_member_turns_unhealthy_on_the_live_page_within_two_seconds(
    browser: webdriver.Chrome, pool: tuple[list[MemberProcess], ProxyProcess], tmp_path: Path
) -> None:
    members, proxy = pool
    browser.get(f"http://127.0.0.1:{proxy.admin_port}/ui")
    names = [m.name for m in members]
    assert wait_until(lambda: all(state_of(browser, n) == "Healthy" for n in names), 10)
    for _ in range(30):  # some traffic, so the page has rates, latencies and decisions
        urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}/", timeout=5).read()
    victim = members[1]
    victim.kill()
    took = wait_until(lambda: state_of(browser, victim.name) == "Unhealthy", 2.0)
    assert took is not None, f"{victim.name} still shows {state_of(browser, victim.name)!r}"
    assert state_of(browser, "alpha") == "Healthy" and state_of(browser, "gamma") == "Healthy"
    time.sleep(1.2)  # let the request rates of the traffic show
    shot = tmp_path / "ui.png"
    assert browser.save_screenshot(str(shot))
    target = os.environ.get("SERVICEPOOL_UI_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
