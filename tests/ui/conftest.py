"""Harness of the portal's browser tests: the real application served on 127.0.0.1 (a free
port, a thread of this test run) over the run's PostgreSQL database, driven by headless
Chromium through Selenium (Debian's /usr/bin/chromium and /usr/bin/chromedriver, installed by
`make up`), with axe-core (vendored into portal/ui/static/vendor/ by `make up`) for
accessibility checks.

    from tests.ui.conftest import assert_accessible, log_in, open_page, phone, screenshot

    def test_x(driver, make_user):
        student = make_user("student")          # tests/portal/conftest.py's users
        log_in(driver, student)                 # through the login form; lands on the dashboard
        open_page(driver, "/admin")             # a path of the live server
        assert_accessible(driver)               # axe: WCAG 2.x A/AA rules, or rules=(...)
        screenshot(driver, "admin-users")       # artifacts/screenshots/admin-users.png
        phone(driver)                           # 390x844 from now on in this test

The browser is started once per test run; `driver` gives each test a clean one (no cookies,
1280x800). With LTB_DOCS_SCREENSHOTS=1 screenshots are also copied to docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from tests.app_config import portal_app
from tests.jobs.conftest import job_settings, store  # noqa: F401
from tests.portal.conftest import (  # noqa: F401
    PASSWORD,
    make_user,
    no_booking_outlives_its_test,
    no_queued_job_outlives_its_test,
    roomy_inventory,
)

ROOT = Path(__file__).parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE = ROOT / "portal/ui/static/vendor/axe.min.js"
SCREENSHOTS = ROOT / "artifacts/screenshots"
DOCS_SCREENSHOTS = ROOT / "docs/screenshots"
DESKTOP = (1280, 800)
PHONE = (390, 844)
# Long enough for a page of the portal on a busy two-core machine.
WAIT = 15


class LiveServer:
    """The portal served by werkzeug in a thread of the test run."""

    def __init__(self, app) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_app(job_settings, roomy_inventory):  # noqa: F811
    return portal_app(job_settings.database_url, roomy_inventory)


@pytest.fixture(scope="session")
def live_server(live_app) -> Iterator[LiveServer]:
    with LiveServer(live_app) as server:
        yield server


@pytest.fixture(scope="session")
def browser(live_server) -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, CHROMEDRIVER, AXE):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing; run `make up` (browser tests need it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    chrome = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    chrome.set_page_load_timeout(60)
    chrome.base_url = live_server.url
    chrome.live_app = live_server.app
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def driver(browser) -> webdriver.Chrome:
    """The browser, logged out, at 1280x800, on a blank page."""
    browser.get("about:blank")
    # delete_all_cookies() clears only the current page's site (none on about:blank).
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    viewport(browser, DESKTOP)
    return browser


def open_page(driver, path: str) -> None:
    """Open a path of the live server and wait until the page has loaded."""
    driver.get(driver.base_url + path)
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def path_of(driver) -> str:
    """The current page's path (with its query), without the live server's address."""
    return driver.current_url.removeprefix(driver.base_url)


def log_in(driver, user, password: str | None = None, path: str = "/login") -> None:
    """Log in through the form (at `path`, e.g. "/login?next=/admin"); no check of where
    it lands: tests assert that themselves."""
    open_page(driver, path)
    driver.find_element(By.ID, "username").send_keys(user.username)
    driver.find_element(By.ID, "password").send_keys(password or user.password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, WAIT).until(lambda d: "/login" not in path_of(d) or _has_error(d))


def _has_error(driver) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, "[role=alert]"))


def log_out(driver) -> None:
    driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    WebDriverWait(driver, WAIT).until(lambda d: path_of(d).startswith("/login"))


def viewport(driver, size: tuple[int, int], mobile: bool = False) -> None:
    """Exactly this viewport (a window's size would include the browser's own bars)."""
    width, height = size
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def phone(driver) -> None:
    """A phone's viewport (390x844, a mobile browser) for the rest of the test."""
    viewport(driver, PHONE, mobile=True)


def screenshot(driver, name: str) -> Path:
    """Save the page as artifacts/screenshots/<name>.png (and in docs/screenshots/ with
    LTB_DOCS_SCREENSHOTS=1)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(target)), f"no screenshot {target}"
    if os.environ.get("LTB_DOCS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, DOCS_SCREENSHOTS / target.name)
    return target


def assert_accessible(driver, rules: tuple[str, ...] | None = None) -> None:
    """Run axe-core on the current page: every WCAG 2.0/2.1 A and AA rule, or only `rules`
    (axe rule ids such as "label", "color-contrast"); fail listing each violation."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(AXE.read_text())
    if rules:
        options = {"runOnly": {"type": "rule", "values": list(rules)}}
    else:
        tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
        options = {"runOnly": {"type": "tag", "values": tags}}
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, arguments[0])"
        ".then(r => done(r.violations), e => done({error: String(e)}));",
        options,
    )
    if isinstance(result, dict):
        pytest.fail(f"axe failed on {path_of(driver)}: {result['error']}")
    problems = [
        f"{violation['id']} ({violation['impact']}): {violation['help']}\n"
        + "\n".join(
            f"    {node['target']}: {node['failureSummary']}" for node in violation["nodes"]
        )
        for violation in result
    ]
    assert not problems, f"accessibility of {path_of(driver)}:\n" + "\n".join(problems)
