"""Resource usage end to end: the platform's exporters (roles/platform_metrics) scraped by a
real Prometheus, the usage API and the resource pages over it.

A Prometheus of this module runs the platform's own configuration (made by `make up`) with a
one-second scrape interval, so the tests wait seconds. The lab is one node container of the
platform's node image with the labels roles/container_node gives it (ltb.lab, ltb.node; that
role's labels are pinned by tests/unit/test_lab_exporter.py), started for the whole module
and removed at its end: a full deploy and remove took 2 minutes on a loaded CI machine, and
the exporter reads nothing else of a lab.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from selenium.webdriver.common.by import By
from sqlalchemy import delete

from ltb.model import container_name
from store.models import Lab, LabState, utcnow
from tests.app_config import portal_app
from tests.portal.conftest import (
    login,  # noqa: F401
)
from tests.ui.conftest import assert_accessible, log_in, open_page, screenshot

pytestmark = pytest.mark.integration

PLATFORM_CONFIG = Path("/etc/prometheus/prometheus.yml")
PLATFORM_PROMETHEUS = "http://127.0.0.1:9090"
LAB = "mx-usage"
NODE_IMAGE = "ltb/node:latest"
TOPOLOGY = f"name: {LAB}\nnodes:\n  n1: {{}}\n"


def ask(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
        return json.load(answer)["data"]["result"]


def wait_for(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[str]:
    """A Prometheus with the platform's scrape targets, scraping every second."""
    if not PLATFORM_CONFIG.exists():
        pytest.fail(f"{PLATFORM_CONFIG} is missing: run `make up` (roles/platform_metrics)")
    directory = tmp_path_factory.mktemp("prometheus")
    config = PLATFORM_CONFIG.read_text()
    assert "scrape_interval:" in config
    config = "\n".join(
        "  scrape_interval: 1s" if line.strip().startswith("scrape_interval:") else line
        for line in config.splitlines()
    )
    (directory / "prometheus.yml").write_text(config)
    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [
            "/usr/bin/prometheus",
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "log").open("w"),
    )
    try:

        def ready() -> bool:
            try:
                return urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200  # noqa: S310
            except OSError:
                return False

        assert wait_for(ready, 30), (directory / "log").read_text()[-2000:]
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def running_lab() -> Iterator[str]:
    client = docker.from_env()
    container = client.containers.run(
        NODE_IMAGE,
        ["sleep", "600"],
        name=container_name(LAB, "n1"),
        labels={"ltb.lab": LAB, "ltb.node": "n1"},
        network_mode="none",
        detach=True,
        remove=True,
    )
    try:
        yield LAB
    finally:
        container.remove(force=True)
        client.close()


@pytest.fixture
def lab_row(store, make_user, running_lab):
    """The running lab in the portal's store, owned by a student."""
    owner = make_user("student")
    with store() as session:
        lab = Lab(
            name=running_lab,
            owner_id=owner.id,
            topology=TOPOLOGY,
            state=LabState.RUNNING.value,
            hypervisor="localhost",
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(lab)
        session.commit()
        lab_id = lab.id
    yield lab_id, owner
    with store.begin() as session:
        session.execute(delete(Lab).where(Lab.id == lab_id))


@pytest.fixture
def metrics_app(job_settings, roomy_inventory, prometheus):
    return portal_app(job_settings.database_url, roomy_inventory, LTB_PROMETHEUS_URL=prometheus)


def test_the_platform_prometheus_scrapes_node_exporter_lab_exporter_portal_and_itself():
    jobs = {r["metric"]["job"]: r["value"][1] for r in ask(PLATFORM_PROMETHEUS, "up")}
    assert jobs == {"node": "1", "ltb_lab": "1", "ltb_portal": "1", "prometheus": "1"}


def test_prometheus_has_the_hypervisors_numbers_and_a_running_nodes_cpu_and_memory(
    prometheus, running_lab
):
    memory = wait_for(lambda: ask(prometheus, 'node_memory_MemTotal_bytes{hypervisor="localhost"}'))
    assert memory and float(memory[0]["value"][1]) > 0
    node = f'{{lab="{running_lab}",node="n1",kind="container",hypervisor="localhost"}}'
    cpu = wait_for(lambda: ask(prometheus, f"ltb_node_cpu_seconds_total{node}"))
    assert cpu and float(cpu[0]["value"][1]) > 0
    used = ask(prometheus, f"ltb_node_memory_bytes{node}")
    assert used and float(used[0]["value"][1]) > 0


def test_lab_usage_gives_the_owner_numbers_per_node_and_another_user_404(
    metrics_app,
    lab_row,
    make_user,
    login,  # noqa: F811
):
    lab_id, owner = lab_row
    client = metrics_app.test_client()
    login(client, owner)

    def numbers():
        answer = client.get(f"/api/labs/{lab_id}/usage?minutes=5")
        assert answer.status_code == 200, answer.get_json()
        nodes = answer.get_json()["nodes"]
        return nodes if nodes and nodes[0]["cpu_cores"] is not None else None

    nodes = wait_for(numbers)
    assert nodes, "no CPU rate of the lab's node within 30 s"
    assert [(n["node"], n["kind"]) for n in nodes] == [("n1", "container")]
    assert nodes[0]["memory_bytes"] > 0
    assert nodes[0]["memory_series"] and nodes[0]["memory_series"][-1][1] > 0

    other = metrics_app.test_client()
    login(other, make_user("student"))
    assert other.get(f"/api/labs/{lab_id}/usage").status_code == 404


def test_hypervisor_usage_over_time_is_for_admins_only(metrics_app, make_user, login):  # noqa: F811
    admin = metrics_app.test_client()
    login(admin, make_user("admin"))
    answer = wait_for(lambda: admin.get("/api/hypervisors/usage?hours=1").get_json()["hypervisors"])
    host = {h["hypervisor"]: h for h in answer}["localhost"]
    assert host["memory_total_bytes"] > 0
    for name in ("cpu", "memory", "disk"):
        assert host[name], f"no {name} series"
    assert 0 <= host["disk"][-1][1] <= 1

    student = metrics_app.test_client()
    login(student, make_user("student"))
    assert student.get("/api/hypervisors/usage").status_code == 403


def test_usage_says_prometheus_is_down_in_words_not_500(
    job_settings,
    roomy_inventory,
    make_user,
    login,  # noqa: F811
):
    app = portal_app(
        job_settings.database_url,
        roomy_inventory,
        LTB_PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}",
    )
    client = app.test_client()
    login(client, make_user("admin"))
    answer = client.get("/api/hypervisors/usage")
    assert answer.status_code == 503
    assert "Prometheus" in answer.get_json()["error"]["message"]
    page = client.get("/usage")
    assert page.status_code == 200
    assert b"Resource usage is unavailable: Prometheus" in page.data


@pytest.fixture
def live_prometheus(driver, prometheus):
    """The live server's portal asks this module's Prometheus."""
    config = driver.live_app.config
    before = config.get("LTB_PROMETHEUS_URL")
    config["LTB_PROMETHEUS_URL"] = prometheus
    yield
    config["LTB_PROMETHEUS_URL"] = before


def test_the_resource_page_plots_each_hypervisors_cpu_memory_and_disk(
    driver, live_prometheus, make_user
):
    log_in(driver, make_user("admin"))
    open_page(driver, "/usage?hours=1")
    plots = driver.find_elements(By.CSS_SELECTOR, "svg.plot polyline")
    assert len(plots) == 3, driver.find_element(By.TAG_NAME, "main").text
    titles = [
        t.get_attribute("textContent")
        for t in driver.find_elements(By.CSS_SELECTOR, "svg.plot title")
    ]
    assert titles == [
        f"{what} on localhost, last 1 h" for what in ("CPU busy", "Memory used", "Disk used (/)")
    ]
    assert "%" in driver.find_element(By.CSS_SELECTOR, "[data-usage=cpu]").text
    screenshot(driver, "usage-hypervisors")
    assert_accessible(driver)


def test_the_lab_resource_page_shows_its_nodes_now_and_plots_to_its_owner_only(
    driver, live_prometheus, lab_row, make_user
):
    lab_id, owner = lab_row
    log_in(driver, owner)
    open_page(driver, f"/labs/{lab_id}/usage")
    row = driver.find_element(By.ID, "usage-n1")
    assert "iB" in row.find_element(By.CSS_SELECTOR, ".usage-memory").text
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.plot")) == 2
    screenshot(driver, "usage-lab")
    assert_accessible(driver)

    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    log_in(driver, make_user("student"))
    open_page(driver, f"/labs/{lab_id}/usage")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "n1" not in driver.find_element(By.TAG_NAME, "main").text
