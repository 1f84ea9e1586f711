"""Template pages and the lab page: problems shown at their lines, versions, sharing,
deletion with a confirmation, starting a lab (at once or booked from now), the lab page with
its progress, nodes, SSH one-liners and actions, refusals shown where the user acted; and
one real deploy driven through the browser from a template with an error to a capture.

The Flask test web tests are light (no browser, no deploy); the browser test deploys one
two-node lab with a real worker and scheduler (Redis db of LTB_TEST_REDIS_URL).
"""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser

import docker
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from jobs.queue import cancel, submit
from ltb.deployed import load_deployed_lab
from store.models import Lab, Reservation, Role, Template, utcnow
from tests.integration.conftest import TOPOLOGIES
from tests.jobs.conftest import (  # noqa: F401
    TASK_WAIT,
    cleanup,
    job_ended,
    processes,
    redis_db,
    wait_for,
)
from tests.portal.conftest import app, login  # noqa: F401
from tests.portal.test_labs import PCAP_MAGIC
from tests.ui.conftest import (
    PHONE,
    WAIT,
    assert_accessible,
    log_in,
    open_page,
    path_of,
    phone,
    screenshot,
)

PAIR = (TOPOLOGIES / "pair.lab.yml").read_text().replace("name: NAME", "name: pair")
# The pair lab with an unknown key on line 5 (a typo of "interfaces").
PAIR_WITH_ERROR = PAIR.replace("  a:\n    interfaces:", "  a:\n    interfacez:", 1)


def unique(prefix: str = "u2") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def page_text(answer) -> str:
    return answer.get_data(as_text=True)


class PageStructure(HTMLParser):
    """Ids, label targets and form controls of a page, for checks without a browser."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.label_targets: list[str] = []
        self.controls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.append(attributes["id"])
        if tag == "label":
            self.label_targets.append(attributes.get("for", ""))
        if tag in ("input", "select", "textarea") and attributes.get("type") != "hidden":
            self.controls.append(attributes.get("id", ""))


def assert_well_formed(text: str) -> None:
    """Ids are unique and every visible form control has a <label for> (axe checks the rest
    in the browser test)."""
    page = PageStructure()
    page.feed(text)
    assert len(page.ids) == len(set(page.ids)), sorted(i for i in page.ids if page.ids.count(i) > 1)
    assert set(page.controls) <= set(page.label_targets), (page.controls, page.label_targets)
    assert set(page.label_targets) <= set(page.ids)


def csrf_of(web) -> str:
    with web.session_transaction() as session:
        return session["csrf"]


@pytest.fixture
def web(app):  # noqa: F811
    """A browser without a browser: the Flask test client, which keeps the session cookie."""
    return app.test_client()


@pytest.fixture
def student(web, make_user, login):  # noqa: F811
    user = make_user(Role.STUDENT)
    login(web, user)
    return user


def upload(web, name: str, topology: str, **extra):
    form = {"csrf": csrf_of(web), "name": name, "description": "", "topology": topology}
    return web.post("/templates", data=form | extra)


def template_id_of(answer) -> int:
    assert answer.status_code == 302, page_text(answer)[:2000]
    return int(re.search(r"/templates/(\d+)", answer.headers["Location"]).group(1))


def test_an_upload_with_an_unknown_key_shows_the_problem_at_its_line_and_stores_nothing(
    web, student, store
):
    name = unique()
    answer = upload(web, name, PAIR_WITH_ERROR)
    assert answer.status_code == 422
    text = page_text(answer)
    assert PAIR_WITH_ERROR.splitlines()[4] == "    interfacez:"
    assert 'data-line="5">line 5</a>' in text and "nodes.a.interfacez" in text
    assert 'data-bad-lines="5"' in text and '<li class="bad">5</li>' in text
    # The form keeps what the user typed, to fix it.
    assert "interfacez:" in text and f'value="{name}"' in text
    assert_well_formed(text)
    with store() as session:
        assert session.query(Template).filter_by(name=name).count() == 0


def test_check_lists_errors_and_warnings_apart_without_saving(web, student):
    form = {"csrf": csrf_of(web), "topology": PAIR_WITH_ERROR}
    checked = web.post("/templates/check", data=form, headers={"HX-Request": "true"})
    assert checked.status_code == 200
    text = page_text(checked)
    assert "The topology has 1 error" in text and "line 5" in text
    good = web.post("/templates/check", data=form | {"topology": PAIR})
    assert "No errors." in page_text(good) and 'data-bad-lines=""' in page_text(good)
    broken = web.post("/templates/check", data=form | {"topology": "nodes: [\n"})
    assert "error" in page_text(broken) and "line" in page_text(broken)


def test_a_template_is_uploaded_from_a_file_edited_into_versions_shared_and_deleted(web, student):
    name = unique()
    files = {"file": (__import__("io").BytesIO(PAIR.encode()), "pair.lab.yml")}
    created = web.post(
        "/templates",
        data={"csrf": csrf_of(web), "name": name, "topology": ""} | files,
        content_type="multipart/form-data",
    )
    template_id = template_id_of(created)
    detail = page_text(web.get(f"/templates/{template_id}"))
    assert f"Template {name}" in detail
    assert (
        f'src="/api/templates/{template_id}/picture.svg"' in detail and 'alt="Topology of' in detail
    )
    assert web.get(f"/api/templates/{template_id}/picture.svg").mimetype == "image/svg+xml"

    form = {"csrf": csrf_of(web), "name": name, "description": "two hosts"}
    bad = web.post(f"/templates/{template_id}", data=form | {"topology": PAIR_WITH_ERROR})
    assert bad.status_code == 422 and "line 5" in page_text(bad)
    saved = web.post(f"/templates/{template_id}", data=form | {"topology": PAIR + "# v2\n"})
    assert saved.status_code == 302
    detail = page_text(web.get(f"/templates/{template_id}"))
    assert_well_formed(detail)
    assert "View version 2" in detail and "View version 1" in detail and "two hosts" in detail
    version = page_text(web.get(f"/templates/{template_id}/versions/1"))
    assert "version 1" in version and "# v2" not in version
    assert web.get(f"/templates/{template_id}/versions/9").status_code == 404

    share = {"csrf": csrf_of(web), "visibility": "course", "course_id": ""}
    refused = web.post(f"/templates/{template_id}/share", data=share)
    assert refused.status_code == 422 and "course" in page_text(refused)
    public = web.post(f"/templates/{template_id}/share", data=share | {"visibility": "public"})
    assert public.status_code == 302
    assert name in page_text(web.get("/templates"))

    deleted = web.post(
        f"/templates/{template_id}/delete",
        data={"csrf": csrf_of(web)},
        headers={"HX-Request": "true"},
    )
    assert deleted.headers["HX-Redirect"] == "/templates"
    assert web.get(f"/templates/{template_id}").status_code == 404


def test_another_students_template_and_lab_are_404_pages_and_forms_need_the_csrf_token(
    web, student, make_user, store
):
    template_id = template_id_of(upload(web, unique(), PAIR))
    other = make_user(Role.STUDENT)
    with web.session_transaction() as session:
        session.clear()
    answer = web.post(
        "/login",
        data={
            "csrf": csrf_of_login(web),
            "username": other.username,
            "password": other.password,
        },
    )
    assert answer.status_code == 302
    for path in (f"/templates/{template_id}", f"/templates/{template_id}/versions/1"):
        missing = web.get(path)
        assert missing.status_code == 404 and "Not found" in page_text(missing)
    with store() as session:
        lab = session.query(Lab).order_by(Lab.id).first()
    if lab is not None and lab.owner_id != other.id:
        assert web.get(f"/labs/{lab.id}").status_code == 404
    assert web.get("/labs/2147483648").status_code == 404
    forged = web.post(f"/templates/{template_id}/delete", data={"csrf": "forged"})
    assert forged.status_code == 403 and "expired" in page_text(forged)


def csrf_of_login(web) -> str:
    web.get("/login")
    return csrf_of(web)


def test_a_started_lab_shows_its_nodes_ssh_and_progress_and_refuses_actions_in_words(
    web,
    student,
    redis_db,  # noqa: F811
):
    template_id = template_id_of(upload(web, unique(), PAIR))
    started = web.post(
        f"/templates/{template_id}/start", data={"csrf": csrf_of(web), "title": "my lab"}
    )
    assert started.status_code == 302, page_text(started)[:2000]
    lab_path = started.headers["Location"]
    page = page_text(web.get(lab_path))
    job_id = re.search(r'data-job-id="([^"]+)"', page).group(1)
    try:
        assert "Lab my lab" in page and 'data-active="true"' in page
        assert_well_formed(page)
        assert f"/api/jobs/{job_id}/stream" in page and f"/api/jobs/{job_id}/events" in page
        assert page.count("ssh -i") == 2 and "Copy SSH command for a" in page
        assert '<option value="a:eth1">' in page and '<option value="b:eth1">' in page
        assert 'hx-confirm="Remove lab' in page and 'hx-confirm="Restore lab' in page
        htmx = {"HX-Request": "true"}
        busy = web.post(f"{lab_path}/remove", data={"csrf": csrf_of(web)}, headers=htmx)
        assert busy.status_code == 200 and 'role="alert"' in page_text(busy)
        assert job_id in page_text(busy)
        bad_name = web.post(f"{lab_path}/snapshot", data={"csrf": csrf_of(web), "name": "../x"})
        assert bad_name.status_code == 422
        text = page_text(bad_name)
        # The refusal is next to the snapshot button, in the whole lab page.
        assert re.search(r'id="snapshot-message"><p class="error" role="alert">[^<]*name', text)
        in_use = web.post(
            f"/templates/{template_id}/delete", data={"csrf": csrf_of(web)}, headers=htmx
        )
        assert in_use.status_code == 200 and "is in use by lab" in page_text(in_use)
        info = web.get(f"{lab_path}/nodes/a/info", headers=htmx)
        assert info.status_code == 200 and "could not be read" in page_text(info)
        assert web.get(f"{lab_path}/nodes/zz/info").status_code == 404
    finally:
        cancel(job_id)
    ended = page_text(web.get(lab_path))
    assert 'data-active="false"' in ended and "canceled" in ended


def test_start_now_books_from_now_and_waits_for_the_lab_of_the_reservation(
    web,
    student,
    store,
    redis_db,  # noqa: F811
):
    template_id = template_id_of(upload(web, unique(), PAIR))
    too_long = web.post(
        f"/templates/{template_id}/start-now",
        data={"csrf": csrf_of(web), "hours": "100"},
        headers={"HX-Request": "true"},
    )
    assert too_long.status_code == 200 and "longer than the maximum" in page_text(too_long)
    booked = web.post(
        f"/templates/{template_id}/start-now", data={"csrf": csrf_of(web), "hours": "1"}
    )
    assert booked.status_code == 302
    waiting_path = booked.headers["Location"]
    reservation_id = int(re.search(r"/reservations/(\d+)/lab", waiting_path).group(1))
    with store() as session:
        reservation = session.get(Reservation, reservation_id)
        assert reservation.owner_id == student.id and reservation.state == "scheduled"
        assert (reservation.end_at - reservation.start_at).total_seconds() == 3600
        lab_name = reservation.lab_name
    waiting = web.get(waiting_path)
    assert waiting.status_code == 200 and lab_name in page_text(waiting)
    assert 'hx-trigger="every 2s"' in page_text(waiting)
    # Once the reservation's start made its lab, the page goes to the lab.
    with store() as session:
        now = utcnow()
        session.add(
            Lab(
                name=lab_name,
                topology=PAIR,
                hypervisor="localhost",
                owner_id=student.id,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
        lab_id = session.query(Lab).filter_by(name=lab_name).one().id
        session.query(Reservation).filter_by(id=reservation_id).update({"state": "cancelled"})
        session.commit()
    found = web.get(waiting_path, headers={"HX-Request": "true"})
    assert found.headers["HX-Redirect"] == f"/labs/{lab_id}"
    with store() as session:
        session.query(Lab).filter_by(id=lab_id).delete()
        session.commit()
    # A reservation that will make no lab says so instead of waiting.
    ended = page_text(web.get(waiting_path, headers={"HX-Request": "true"}))
    assert "is cancelled: it has no lab to open" in ended and "hx-trigger" not in ended


# The end-to-end lab: an FRR router (a static route in its running configuration) and a host.
E2E_TOPOLOGY = """\
# u2 end to end: an FRR router and a host on one link
name: u2-e2e
nodes:
  r1:
    interfaces:
      eth1: {ipv4: 10.212.1.1/24}
    files:
      /etc/frr/daemons: "staticd=yes\\n"
      /etc/frr/frr.conf: "ip route 10.212.9.0/24 10.212.1.2\\n"
  h2:
    interfaces:
      eth1: {ipv4: 10.212.1.2/24}
links:
  - endpoints: [r1:eth1, h2:eth1]
"""
# The same with a typo at line 5 (an unknown key of node r1).
E2E_WITH_ERROR = E2E_TOPOLOGY.replace("  r1:\n    interfaces:", "  r1:\n    interfacez:", 1)


def set_textarea(driver, element_id: str, text: str) -> None:
    """Type a whole file at once (send_keys types it key by key, slowly)."""
    area = driver.find_element(By.ID, element_id)
    driver.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        area,
        text,
    )


def submit_and_wait(driver, button) -> None:
    """Click a button that loads a new page, and wait until the new page has loaded."""
    driver.execute_script("document.body.dataset.leaving = 'yes'")
    button.click()
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && !document.body.dataset.leaving"
        )
    )


def wait(driver, check, timeout: float = WAIT, what: str = "the page"):
    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(
        lambda d: check(d), message=f"timed out waiting for {what} on {path_of(driver)}"
    )


FETCH_BYTES = """
const [url, done] = [arguments[0], arguments[arguments.length - 1]];
fetch(url, {credentials: "same-origin"})
  .then(r => r.arrayBuffer().then(b => [r.status, r.headers.get("content-type"), b]))
  .then(([status, type, buffer]) => {
    const bytes = new Uint8Array(buffer);
    done({status, type, length: bytes.length, head: Array.from(bytes.slice(0, 40))});
  }, e => done({error: String(e)}));
"""


@pytest.mark.integration
def test_a_student_fixes_a_template_starts_it_now_follows_it_reads_a_router_captures_and_removes_it(
    driver,
    make_user,
    store,
    processes,  # noqa: F811
    cleanup,  # noqa: F811
):
    processes.start("worker")
    processes.start("scheduler")
    student = make_user(Role.STUDENT)
    log_in(driver, student)

    # Upload with an error: the problem at line 5, its gutter line marked, nothing stored.
    open_page(driver, "/templates")
    name = unique()
    driver.find_element(By.ID, "name").send_keys(name)
    set_textarea(driver, "topology", E2E_WITH_ERROR)
    driver.find_element(By.XPATH, "//button[text()='Check']").click()
    jump = wait(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#problems a.jump[data-line="5"]'),
        what="the problem at line 5",
    )[0]
    problem = jump.find_element(By.XPATH, "..").text
    assert "line 5" in problem and "nodes.r1.interfacez" in problem, problem
    gutter = driver.find_elements(By.CSS_SELECTOR, ".editor .gutter li")
    marked = [li.text.strip("! ") for li in gutter if "bad" in (li.get_attribute("class") or "")]
    assert marked == ["5"]
    jump.click()
    selected = driver.execute_script(
        "const a = document.getElementById('topology');"
        "return a.value.slice(a.selectionStart, a.selectionEnd);"
    )
    assert selected == "    interfacez:"
    submit_and_wait(
        driver, driver.find_element(By.CSS_SELECTOR, "form.template-form [type=submit]")
    )
    assert "/templates" in path_of(driver)
    assert "The topology has 1 error" in driver.find_element(By.ID, "problems").text
    # The shot shows the marked gutter line and the problem list below it.
    driver.execute_script("document.querySelector('.editor').scrollIntoView()")
    screenshot(driver, "template-editor-errors")
    assert_accessible(driver)

    # Fixed, it is uploaded; "Start now" books it from now and opens the lab when it exists.
    set_textarea(driver, "topology", E2E_TOPOLOGY)
    submit_and_wait(
        driver, driver.find_element(By.CSS_SELECTOR, "form.template-form [type=submit]")
    )
    wait(driver, lambda d: re.fullmatch(r"/templates/\d+", path_of(d)), what="the template")
    assert driver.find_element(By.CSS_SELECTOR, "img.picture").get_attribute("alt")
    driver.find_element(By.ID, "start-now").click()
    wait(driver, lambda d: re.fullmatch(r"/labs/\d+", path_of(d)), 120, "the lab page")
    lab_id = int(path_of(driver).rsplit("/", 1)[1])
    with store() as session:
        lab = session.get(Lab, lab_id)
        assert lab.owner_id == student.id and lab.name.startswith("u2-")
        cleanup[lab.name] = lab.topology
        lab_name = lab.name
    removed = False
    try:
        # The deploy's events arrive live (server-sent events) while it runs ...
        live_events = 0

        def running(d) -> bool:
            nonlocal live_events
            if d.find_elements(By.CSS_SELECTOR, '#progress[data-active="true"]'):
                live_events = max(live_events, len(d.find_elements(By.CSS_SELECTOR, "li.event")))
            return bool(d.find_elements(By.CSS_SELECTOR, "#lab-state .state-running"))

        wait(driver, running, TASK_WAIT, "the lab running")
        assert live_events > 5, live_events
        # ... and the page, reloaded at its end, shows the lab running with them.
        assert "deploy: successful" in driver.find_element(By.ID, "job-status").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "li.event")) > 5
        ssh = driver.find_element(By.ID, "ssh-r1").text
        assert ssh.startswith("ssh -i ") and "@" in ssh
        screenshot(driver, "lab-running")
        assert_accessible(driver)

        # Device information of the router: its running configuration from FRR.
        driver.find_element(By.XPATH, "//button[text()='Device information of r1']").click()
        config = wait(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#info-r1 pre.running-config"),
            60,
            "r1's running configuration",
        )[0]
        assert "ip route 10.212.9.0/24 10.212.1.2" in config.text

        # A 5-second capture of the link, downloaded with the page's session, while r1 pings.
        container = docker.from_env().containers.get(
            load_deployed_lab(lab_name).container_name("r1")
        )
        container.exec_run(["ping", "-c", "60", "-i", "0.1", "10.212.1.2"], detach=True)
        form = driver.find_element(By.CSS_SELECTOR, "form.capture")
        endpoint = Select(driver.find_element(By.ID, "capture-endpoint"))
        endpoint.select_by_value("r1:eth1")
        url = f"{form.get_attribute('action')}?endpoint=r1:eth1&seconds=5"
        driver.set_script_timeout(60)
        pcap = driver.execute_async_script(FETCH_BYTES, url)
        assert pcap.get("status") == 200, pcap
        assert pcap["type"] == "application/vnd.tcpdump.pcap"
        assert bytes(pcap["head"][:4]) in PCAP_MAGIC
        # The global header (24 bytes), then packets: each a 16-byte header and its bytes.
        assert pcap["length"] > 24 + 16 + 60, pcap["length"]

        # Remove, confirmed; the page follows the remove to the lab's end.
        driver.find_element(By.ID, "remove").click()
        WebDriverWait(driver, WAIT).until(EC.alert_is_present())
        driver.switch_to.alert.accept()
        wait(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#lab-state .state-removed"),
            TASK_WAIT,
            "the lab removed",
        )
        removed = True
        assert "remove: successful" in driver.find_element(By.ID, "job-status").text
    finally:
        if not removed:
            job_id = submit(lab_name, "remove")
            wait_for(lambda: job_ended(store, job_id), TASK_WAIT, "remove", processes)


# The innermost elements that reach past the screen's right edge, to name them in a failure.
WIDER_THAN_THE_SCREEN = """
const right = e => e.getBoundingClientRect().right, edge = window.innerWidth + 1;
return [...document.body.querySelectorAll('*')]
  .filter(e => right(e) > edge && ![...e.children].some(c => right(c) > edge))
  .slice(0, 5).map(e => `${e.tagName}.${e.className} ${Math.round(right(e))}`);
"""


def test_the_template_and_lab_pages_are_readable_on_a_phone(
    web,
    student,
    driver,
    redis_db,  # noqa: F811
):
    template_id = template_id_of(upload(web, unique(), PAIR))
    started = web.post(f"/templates/{template_id}/start", data={"csrf": csrf_of(web)})
    lab_path = started.headers["Location"]
    job_id = re.search(r'data-job-id="([^"]+)"', page_text(web.get(lab_path))).group(1)
    try:
        log_in(driver, student)
        phone(driver)
        for path, name in (
            (f"/templates/{template_id}", "template-phone"),
            (lab_path, "lab-phone"),
        ):
            open_page(driver, path)
            width = driver.execute_script("return document.documentElement.scrollWidth")
            wide = driver.execute_script(WIDER_THAN_THE_SCREEN)
            assert width <= PHONE[0], f"{path} is {width} px wide on a phone: {wide}"
            screenshot(driver, name)
    finally:
        cancel(job_id)
