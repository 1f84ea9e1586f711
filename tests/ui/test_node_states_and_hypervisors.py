"""Live node states, the hypervisors' use and the SSH copy button, on one deployed two-node
container lab shared by the module (deployed by a real worker, removed at the end):

- each node's own state (docker) in the API and on the open lab page, which polls it;
- the admin's hypervisors page: each hypervisor's capacity and what its labs hold, in words
  and as a bar;
- the copy button puts the SSH command on the clipboard and says "Copied".

The test that stops a container runs last: the others read a lab whose nodes all run.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest
from redis import Redis
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from jobs.queue import cancel, submit
from ltb import node_state
from ltb.deployed import load_deployed_lab
from ltb.resources import find_lab_resources
from store.db import session_factory
from store.models import JobStatus, Lab, Role, User
from tests.app_config import portal_app
from tests.integration.conftest import TOPOLOGIES, remove
from tests.jobs.conftest import TASK_WAIT, JobProcesses, job_ended, wait_for
from tests.portal.conftest import PASSWORD, app, client, login  # noqa: F401
from tests.portal.conftest import new_user as portal_user
from tests.ui.conftest import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    WAIT,
    LiveServer,
    assert_accessible,
    log_in,
    open_page,
    phone,
    screenshot,
    viewport,
)

pytestmark = pytest.mark.integration

PAIR = (TOPOLOGIES / "pair.lab.yml").read_text()
# The page polls every 5 s and a reading is kept 3 s: a change shows within about 8 s.
POLL_WAIT = 20


@dataclass
class DeployedLab:
    id: int
    name: str
    owner: User

    def container(self, node: str):
        engine = docker.from_env()
        return engine.containers.get(load_deployed_lab(self.name).container_name(node))


def new_user(store, role: Role = Role.STUDENT) -> User:
    return portal_user(store, role, prefix="ue-")


@pytest.fixture(scope="module")
def lab(job_settings, tmp_path_factory) -> Iterator[DeployedLab]:
    """The pair lab (two containers) of a student, deployed by a real worker; removed (and
    anything left of it) when the module ends."""
    store = session_factory(job_settings.database_url)
    redis = Redis.from_url(job_settings.redis_url)
    redis.flushdb()
    logs = tmp_path_factory.mktemp("ue-workers")
    processes = JobProcesses(logs)
    name = f"ue-{uuid.uuid4().hex[:6]}"
    topology = PAIR.replace("name: NAME", f"name: {name}")
    owner = new_user(store, Role.STUDENT)
    processes.start("worker")
    jobs = []
    try:
        job_id = submit(name, "deploy", topology=topology, owner=owner.username, owner_id=owner.id)
        jobs.append(job_id)
        job = wait_for(lambda: job_ended(store, job_id), TASK_WAIT, "the deploy", processes)
        assert job.status == JobStatus.SUCCESSFUL, job.result
        with store() as session:
            lab_id = session.query(Lab).filter_by(name=name).one().id
        yield DeployedLab(lab_id, name, owner)
        job_id = submit(name, "remove")
        jobs.append(job_id)
        job = wait_for(lambda: job_ended(store, job_id), TASK_WAIT, "the remove", processes)
        assert job.status == JobStatus.SUCCESSFUL, job.result
    finally:
        for process in reversed(processes.running):
            processes.stop(process)
        # A job the worker never took (a wait that timed out) stays queued in PostgreSQL: a
        # later test's scheduler would queue it again and its worker deploy this lab then.
        for job_id in jobs:
            cancel(job_id)
        if not find_lab_resources(name).empty():
            path = logs / f"{name}.lab.yml"
            path.write_text(topology)
            remove(path)
        redis.flushdb()
        redis.close()


@pytest.fixture
def fresh_states():
    """Node states read anew (not the few seconds' cache of an earlier test)."""
    node_state.CONTAINERS.forget()
    node_state.DOMAINS.forget()


def test_the_admin_sees_each_hypervisor_with_its_capacity_and_what_its_labs_hold(
    lab, driver, job_settings, tmp_path
):
    # The inventory of this machine and a second hypervisor with nothing on it.
    (tmp_path / "hosts.yaml").write_text(
        "hypervisors:\n  hosts:\n"
        "    localhost:\n      ltb_capacity_cpus: 4\n      ltb_capacity_memory: 8GiB\n"
        "    hv2:\n      ltb_capacity_cpus: 16\n      ltb_capacity_memory: 64GiB\n"
    )
    admin = new_user(session_factory(job_settings.database_url), Role.ADMIN)
    session_url = driver.base_url
    with LiveServer(portal_app(job_settings.database_url, tmp_path)) as server:
        driver.base_url = server.url
        try:
            log_in(driver, admin)
            open_page(driver, "/admin/hypervisors")
            rows = {
                row.find_element(By.TAG_NAME, "th").text.split("\n")[0]: row
                for row in driver.find_elements(By.CSS_SELECTOR, "table.hypervisors tbody tr")
            }
            assert set(rows) >= {"localhost", "hv2"}, list(rows)
            cells = [td.text for td in rows["localhost"].find_elements(By.TAG_NAME, "td")]
            # Two containers at least (0.25 CPU and 128 MiB each): the lab of this module,
            # and any other lab of the run's database still placed there.
            cpus, memory, labs, nodes, _holding, _booked_later = cells
            assert re.fullmatch(r"[\d.]+ of 4 CPUs \(\d+%\)( over capacity)?", cpus), cpus
            assert re.fullmatch(r"[\d.]+ of 8 GiB \(\d+%\)( over capacity)?", memory), memory
            assert int(labs) >= 1 and int(nodes) >= 2
            used = float(cpus.split()[0])
            assert used >= 0.5
            bar = rows["localhost"].find_element(By.CSS_SELECTOR, ".bar > span")
            width = float(bar.get_attribute("style").split(":")[1].strip(" %;"))
            assert width == pytest.approx(min(used / 4, 1) * 100, abs=0.1)
            idle = [td.text for td in rows["hv2"].find_elements(By.TAG_NAME, "td")]
            assert idle == ["0 of 16 CPUs (0%)", "0 of 64 GiB (0%)", "0", "0", "0", "0"]
            driver.execute_script("document.getElementById('hosts-heading').scrollIntoView()")
            screenshot(driver, "hypervisors-each")
            assert_accessible(driver)
            phone(driver)
            width = driver.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, f"the hypervisors page is {width} px wide on a phone"
            driver.execute_script("document.getElementById('hosts-heading').scrollIntoView()")
            screenshot(driver, "hypervisors-each-phone")
        finally:
            driver.base_url = session_url


def test_the_copy_button_puts_the_ssh_command_on_the_clipboard_and_says_copied(lab, driver):
    log_in(driver, lab.owner)
    open_page(driver, f"/labs/{lab.id}")
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {
            "origin": driver.base_url,
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
        },
    )
    command = driver.find_element(By.ID, "ssh-a").text
    assert command.startswith("ssh ")
    button = driver.find_element(By.CSS_SELECTOR, 'button.copy[data-copy-from="ssh-a"]')
    assert button.get_attribute("aria-live") == "polite"
    button.click()
    WebDriverWait(driver, WAIT).until(lambda d: button.text == "Copied")
    driver.set_script_timeout(WAIT)
    pasted = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, e => done('failed: ' + e));"
    )
    assert pasted == command
    WebDriverWait(driver, WAIT).until(lambda d: button.text == "Copy SSH command for a")


# The innermost elements that reach past the screen's right edge, to name them in a failure.
WIDER_THAN_THE_SCREEN = """
const right = e => e.getBoundingClientRect().right, edge = window.innerWidth + 1;
return [...document.body.querySelectorAll('*')]
  .filter(e => right(e) > edge && ![...e.children].some(c => right(c) > edge))
  .filter(e => !e.closest('.table-wrap, pre'))
  .slice(0, 5).map(e => `${e.tagName}.${e.className} ${Math.round(right(e))}`);
"""
# Words (up to 12 characters between spaces, hyphens and slashes) that the page breaks across
# lines, e.g. "runni ng" in a squeezed table column; code (SSH commands) may break anywhere.
BROKEN_WORDS = """
const found = [], walker = document.createTreeWalker(document.querySelector('main'),
  NodeFilter.SHOW_TEXT);
while (walker.nextNode() && found.length < 5) {
  const node = walker.currentNode, words = /[^\\s\\-\\/]+/g;
  if (node.parentElement.closest('code, pre')) continue;
  let m;
  while ((m = words.exec(node.data)) && found.length < 5) {
    if (m[0].length > 12) continue;
    const range = document.createRange();
    range.setStart(node, m.index);
    range.setEnd(node, m.index + m[0].length);
    const rects = [...range.getClientRects()].filter(r => r.width > 0);
    if (new Set(rects.map(r => Math.round(r.top))).size > 1) found.push(m[0]);
  }
}
return found;
"""
# Pages with parameters, other than the lab's own (below), and pages that stream.
NOT_VISITED = {"ui.login", "ui.static", "ui.lab_node_states"}


def pages_to_visit(flask_app, lab: DeployedLab) -> list[str]:
    """Every page without parameters, and the lab's pages (its page, a node's information
    page, its usage) and its owner's admin page."""
    paths = [
        rule.rule
        for rule in flask_app.url_map.iter_rules()
        if rule.endpoint.startswith("ui.")
        and "GET" in rule.methods
        and not rule.arguments
        and rule.endpoint not in NOT_VISITED
    ]
    paths += [f"/labs/{lab.id}", f"/labs/{lab.id}/nodes/a/info", f"/admin/users/{lab.owner.id}"]
    if "ui.lab_usage_page" in flask_app.view_functions:
        paths.append(f"/labs/{lab.id}/usage")
    return sorted(paths)


def whole_page_screenshot(driver, name: str) -> None:
    """artifacts/screenshots/pages/<name>.png: the whole page, not only what the screen shows."""
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    target = SCREENSHOTS / "pages" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(shot["data"]))


def test_every_page_fits_a_phone_and_a_desktop_unbroken_and_passes_the_accessibility_check(
    lab, driver, job_settings
):
    admin = new_user(session_factory(job_settings.database_url), Role.ADMIN)
    log_in(driver, admin)
    problems = []
    for path in pages_to_visit(driver.live_app, lab):
        name = path.strip("/").replace("/", "-") or "dashboard"
        for size, mobile in ((DESKTOP, False), (PHONE, True)):
            viewport(driver, size, mobile)
            open_page(driver, path)
            width = driver.execute_script("return document.documentElement.scrollWidth")
            if width > size[0]:
                wide = driver.execute_script(WIDER_THAN_THE_SCREEN)
                problems.append(f"{path} is {width} px wide at {size[0]} px: {wide}")
            broken = driver.execute_script(BROKEN_WORDS)
            if broken:
                problems.append(f"{path} breaks words at {size[0]} px: {broken}")
            whole_page_screenshot(driver, f"{name}-{size[0]}")
        viewport(driver, DESKTOP)
        open_page(driver, path)
        assert_accessible(driver)
    assert not problems, "\n".join(problems)


def test_a_node_stopped_by_hand_is_stopped_in_the_api_and_on_the_open_page_the_other_runs(
    lab,
    driver,
    client,  # noqa: F811
    login,  # noqa: F811
    fresh_states,
):
    login(client, lab.owner)
    nodes = {n["name"]: n for n in client.get(f"/api/labs/{lab.id}").get_json()["nodes"]}
    assert {name: node["state"] for name, node in nodes.items()} == {
        "a": "running",
        "b": "running",
    }
    log_in(driver, lab.owner)
    open_page(driver, f"/labs/{lab.id}")
    assert driver.find_element(By.ID, "state-a").text == "running"
    picture = driver.find_element(By.ID, "lab-picture")
    assert "a (running), b (running)" in picture.get_attribute("alt")
    first_picture = picture.get_attribute("src")
    driver.execute_script("window.notReloaded = true")

    lab.container("a").stop(timeout=1)
    node_state.CONTAINERS.forget()
    nodes = {n["name"]: n for n in client.get(f"/api/labs/{lab.id}").get_json()["nodes"]}
    assert nodes["a"]["state"] == "stopped" and nodes["b"]["state"] == "running"
    info = client.get(f"/api/labs/{lab.id}/nodes/a").get_json()
    assert info["state"] == "stopped"
    assert client.get(f"/api/labs/{lab.id}/nodes/b").get_json()["state"] == "running"

    # The open page shows it without a reload: the state in words, the picture anew.
    WebDriverWait(driver, POLL_WAIT).until(
        lambda d: d.find_element(By.ID, "state-a").text == "stopped"
    )
    assert driver.execute_script("return window.notReloaded === true")
    state_a = driver.find_element(By.ID, "state-a")
    assert "state-stopped" in state_a.get_attribute("class")
    assert driver.find_element(By.ID, "state-b").text == "running"
    picture = driver.find_element(By.ID, "lab-picture")
    assert "a (stopped), b (running)" in picture.get_attribute("alt")
    assert picture.get_attribute("src") != first_picture
    svg = client.get(picture.get_attribute("src").removeprefix(driver.base_url)).text
    assert "state: stopped" in svg and "state: running" in svg
    driver.execute_script("document.getElementById('picture-heading').scrollIntoView()")
    screenshot(driver, "lab-node-states")
    assert_accessible(driver)
    phone(driver)
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the lab page is {width} px wide on a phone"
    driver.execute_script("document.getElementById('nodes-heading').scrollIntoView()")
    screenshot(driver, "lab-node-states-phone")
