"""A node's terminal in the browser (portal/terminal.py, portal/ui/terminal.py): xterm.js in
headless Chromium and raw WebSocket clients (simple-websocket) against the live portal, over
one two-container lab deployed once for the module by a real worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from simple_websocket import Client, ConnectionClosed, ConnectionError

from jobs.queue import submit
from ltb.deployed import load_deployed_lab
from ltb.resources import find_lab_resources
from portal.terminal import (
    CLOSE_IDLE,
    CLOSE_LIMIT,
    CLOSE_NORMAL,
    CLOSE_UNAVAILABLE,
    Target,
    TerminalRefused,
    open_ssh,
)
from store.db import session_factory
from store.models import JobStatus, Lab, Role, User
from tests.integration.conftest import remove, wait_until
from tests.jobs.conftest import TASK_WAIT, JobProcesses, job_ended
from tests.portal.conftest import new_user as portal_user
from tests.ui.conftest import WAIT, assert_accessible, log_in, open_page, screenshot, viewport

pytestmark = pytest.mark.integration


def new_user(store, role: Role = Role.STUDENT) -> User:
    return portal_user(store, role, prefix="ws-")


def run_job(store, processes: JobProcesses, job_id: str) -> None:
    ended = wait_until(lambda: job_ended(store, job_id), TASK_WAIT, interval=0.2)
    assert ended, f"job {job_id} did not end\n{processes.log()}"
    assert ended.status == JobStatus.SUCCESSFUL, f"{ended.result}\n{processes.log()}"


@pytest.fixture(scope="module")
def lab(job_settings, tmp_path_factory) -> Iterator[dict]:
    """A lab of two containers (a and b) of a student, running; removed at the end."""
    store = session_factory(job_settings.database_url)
    owner = new_user(store)
    name = f"ws-{uuid.uuid4().hex[:6]}"
    topology = f"name: {name}\nnodes:\n  a: {{}}\n  b: {{}}\n"  # no links: a quicker deploy
    logs = tmp_path_factory.mktemp("ws-jobs")
    processes = JobProcesses(logs)
    processes.start("worker")
    try:
        run_job(store, processes, submit(name, "deploy", topology=topology, owner_id=owner.id))
        with store() as session:
            lab_id = session.query(Lab).filter_by(name=name).one().id
        yield {"id": lab_id, "name": name, "owner": owner}
        run_job(store, processes, submit(name, "remove"))
    finally:
        for process in reversed(processes.running):
            processes.stop(process)
        if not find_lab_resources(name).empty():
            path = Path(logs) / f"{name}.lab.yml"
            path.write_text(topology)
            remove(path)


@pytest.fixture(scope="module", autouse=True)
def slots(live_server, tmp_path_factory) -> Iterator[Path]:
    """The directory where the live portal counts open terminals, the module's own."""
    config = live_server.app.config
    saved = config.get("LTB_TERMINALS_DIR")
    config["LTB_TERMINALS_DIR"] = tmp_path_factory.mktemp("terminals")
    yield config["LTB_TERMINALS_DIR"]
    config["LTB_TERMINALS_DIR"] = saved


def open_terminals(slots: Path) -> int:
    return len(list(slots.glob("*.*.*")))


def logins_on(container) -> int:
    """Terminals (pseudo-terminals of SSH sessions) open on a node."""
    listed = container.exec_run(["sh", "-c", "ls /dev/pts | grep -c '^[0-9]'"]).output
    return int(listed.strip() or 0)


def node_container(lab: dict, node: str):
    name = load_deployed_lab(lab["name"]).container_name(node)
    return docker.from_env().containers.get(name)


@pytest.fixture
def terminals() -> Iterator[list[Client]]:
    """Raw WebSocket clients a test opens; closed at its end."""
    opened: list[Client] = []
    yield opened
    for client in opened:
        with contextlib.suppress(ConnectionClosed):
            client.close()


def session_cookie(live_server, user: User) -> str:
    answer = requests.post(
        f"{live_server.url}/api/auth/login",
        json={"username": user.username, "password": user.password},
        timeout=WAIT,
    )
    assert answer.status_code == 200, answer.text
    return f"session={answer.cookies['session']}"


# simple-websocket's client sends the Host header without the port: the same site's Origin.
SAME_SITE = "http://127.0.0.1"


def socket_url(live_server, lab_id: int, node: str) -> str:
    return f"ws{live_server.url.removeprefix('http')}/labs/{lab_id}/nodes/{node}/terminal/socket"


def connect(live_server, lab_id: int, node: str, cookie: str | None, origin: str | None) -> Client:
    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if origin:
        headers["Origin"] = origin
    return Client.connect(socket_url(live_server, lab_id, node), headers=headers)


def read_until(client: Client, pattern: str, timeout: float = WAIT) -> str:
    """The terminal's output until `pattern` (a regex) shows, or fail with what came."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = client.receive(timeout=0.5)
        except ConnectionClosed:
            break
        if data:
            seen += data if isinstance(data, bytes) else data.encode()
            text = seen.decode(errors="replace")
            if re.search(pattern, text):
                return text
    pytest.fail(f"no {pattern!r} in the terminal's output: {seen.decode(errors='replace')!r}")


def closed_reason(client: Client, timeout: float = WAIT) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.receive(timeout=0.5)
        except ConnectionClosed as closed:
            return closed.reason, closed.message or ""
    pytest.fail("the terminal did not close")


def screen_text(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#terminal .xterm-rows").text


def type_into_terminal(driver, text: str) -> None:
    driver.find_element(By.CSS_SELECTOR, "#terminal .xterm-helper-textarea").send_keys(text)


def test_a_nodes_terminal_in_the_browser_runs_commands_on_that_node_and_follows_the_window(
    driver, lab, live_server, slots
):
    log_in(driver, lab["owner"])
    first_tab = driver.current_window_handle
    driver.switch_to.new_window("tab")
    open_page(driver, f"/labs/{lab['id']}")
    driver.find_element(By.CSS_SELECTOR, "a[href$='/nodes/a/terminal']").click()
    wait = WebDriverWait(driver, WAIT)
    wait.until(lambda d: d.find_element(By.ID, "terminal").get_attribute("data-state") == "open")
    assert "Connected to a" in driver.find_element(By.ID, "terminal-status").text

    type_into_terminal(driver, "hostname; echo done-$((6*7))\n")
    wait.until(lambda d: "done-42" in screen_text(d))
    assert re.search(r"^a$", screen_text(driver), re.MULTILINE), screen_text(driver)
    screenshot(driver, "terminal")
    assert_accessible(driver)

    def size_shown() -> tuple[int, int]:
        type_into_terminal(driver, "clear; echo size $(stty size) end\n")
        found = wait.until(lambda d: re.search(r"size (\d+) (\d+) end", screen_text(d)))
        return int(found.group(1)), int(found.group(2))

    rows, cols = size_shown()
    assert rows > 10 and cols > 60
    viewport(driver, (700, 500))
    wait.until(lambda d: size_shown() != (rows, cols))
    smaller_rows, smaller_cols = size_shown()
    assert smaller_rows < rows and smaller_cols < cols

    # Closing the tab ends the SSH session.
    assert open_terminals(slots) == 1 and logins_on(node_container(lab, "a")) == 1
    driver.close()
    driver.switch_to.window(first_tab)
    assert wait_until(lambda: logins_on(node_container(lab, "a")) == 0, WAIT, interval=0.5)
    assert wait_until(lambda: open_terminals(slots) == 0, WAIT, interval=0.5)


def test_two_terminals_are_two_ssh_sessions_and_closing_them_leaves_nothing_open(
    lab, live_server, terminals, slots
):
    cookie = session_cookie(live_server, lab["owner"])
    container = node_container(lab, "a")
    logins_before = logins_on(container)
    threads_before = {thread.ident for thread in threading.enumerate()}
    for _ in range(2):
        terminals.append(connect(live_server, lab["id"], "a", cookie, SAME_SITE))
    shells = []
    for client in terminals:
        client.send(b"echo shell-$$-$(tty)\n")
        shells.append(re.search(r"shell-(\d+)-(/dev/pts/\d+)", read_until(client, r"shell-\d+-/")))
    assert shells[0].groups() != shells[1].groups()
    assert open_terminals(slots) == 2 and logins_on(container) == logins_before + 2

    for client in terminals:
        client.close()
    terminals.clear()

    def leftovers() -> list[str]:
        threads = [t.name for t in threading.enumerate() if t.ident not in threads_before]
        logins = logins_on(container) - logins_before
        return (
            threads
            + [f"{logins} logins"] * bool(logins)
            + [f"{open_terminals(slots)} slots"] * bool(open_terminals(slots))
        )

    assert wait_until(lambda: not leftovers(), WAIT, interval=0.5), leftovers()


def test_the_nodes_shell_echoes_keys_and_ctrl_c_interrupts_as_on_a_console(
    lab, live_server, terminals
):
    # The node's PTY takes its modes from the terminal of the portal's ssh: they must be a
    # console's (echo, line editing, signals), not the raw modes ssh runs its own side in.
    client = connect(
        live_server, lab["id"], "a", session_cookie(live_server, lab["owner"]), SAME_SITE
    )
    terminals.append(client)
    client.send(b"stty -a; echo modes-done\r")
    modes = read_until(client, r"\nmodes-done\r?\n")  # the output, not the echo
    for mode in ("echo", "icanon", "isig", "opost", "icrnl", "iutf8"):
        assert re.search(rf"(?<![-\w]){mode}\b", modes), f"{mode} is off: {modes!r}"
    client.send(b"typed-not-run")
    read_until(client, "typed-not-run")  # echoed before any Enter
    client.send(b"\x15sleep 60; echo sleep-$((1+1))-ended\r")  # Ctrl-U drops the typed line first
    time.sleep(1)
    client.send(b"\x03echo after-interrupt-$((6*7))\r")
    after = read_until(client, "after-interrupt-42", timeout=10)
    assert "sleep-2-ended" not in after  # (the echo shows $((1+1)))


def test_leaving_the_shell_ends_the_terminal_with_its_exit_status(lab, live_server, terminals):
    client = connect(
        live_server, lab["id"], "a", session_cookie(live_server, lab["owner"]), SAME_SITE
    )
    terminals.append(client)
    client.send(b"exit 3\n")
    read_until(client, r"session ended \(exit status 3\)")
    assert closed_reason(client) == (CLOSE_NORMAL, "session ended (exit status 3)")


@pytest.mark.parametrize("who", ["anonymous", "another student", "wrong origin", "no origin"])
def test_the_handshake_is_refused_without_a_terminal(who, lab, live_server, store, terminals):
    cookie = session_cookie(live_server, lab["owner"])
    origin = SAME_SITE
    expected = {"anonymous": 401, "another student": 404, "wrong origin": 403, "no origin": 403}
    if who == "anonymous":
        cookie = None
    elif who == "another student":
        cookie = session_cookie(live_server, new_user(store))
    elif who == "wrong origin":
        origin = "http://evil.example"
    else:
        origin = None
    with pytest.raises(ConnectionError) as refused:
        terminals.append(connect(live_server, lab["id"], "a", cookie, origin))
    assert refused.value.status_code == expected[who]


def test_an_unknown_node_or_lab_is_refused_like_the_lab_page(lab, live_server, terminals):
    cookie = session_cookie(live_server, lab["owner"])
    for lab_id, node in ((lab["id"], "zz"), (2**31 - 2, "a")):
        with pytest.raises(ConnectionError) as refused:
            terminals.append(connect(live_server, lab_id, node, cookie, SAME_SITE))
        assert refused.value.status_code == 404


def test_a_quiet_terminal_closes_after_the_idle_timeout_saying_so(lab, live_server, terminals):
    config = live_server.app.config
    saved = config["LTB_TERMINAL_IDLE_SECONDS"]
    config["LTB_TERMINAL_IDLE_SECONDS"] = 3
    try:
        client = connect(
            live_server, lab["id"], "a", session_cookie(live_server, lab["owner"]), SAME_SITE
        )
        terminals.append(client)
        opened = time.monotonic()
        read_until(client, r"without input")
        assert time.monotonic() - opened >= 2.5
        code, reason = closed_reason(client)
        assert code == CLOSE_IDLE and "without input" in reason
    finally:
        config["LTB_TERMINAL_IDLE_SECONDS"] = saved


def test_a_user_over_the_terminal_limit_is_told_to_close_one(lab, live_server, terminals):
    config = live_server.app.config
    saved = config["LTB_TERMINALS_PER_USER"]
    config["LTB_TERMINALS_PER_USER"] = 2
    cookie = session_cookie(live_server, lab["owner"])
    try:
        for _ in range(2):
            terminals.append(connect(live_server, lab["id"], "a", cookie, SAME_SITE))
            terminals[-1].send(b"echo ready\n")
            read_until(terminals[-1], "ready")
        third = connect(live_server, lab["id"], "b", cookie, SAME_SITE)
        terminals.append(third)
        assert "close one to open another" in read_until(third, "close one")
        assert closed_reason(third)[0] == CLOSE_LIMIT
    finally:
        config["LTB_TERMINALS_PER_USER"] = saved


def ssh_children() -> list[int]:
    """Processes of this test run (the live portal's threads) running the ssh client."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            if fields.get("Name") == "ssh" and int(fields.get("PPid", 0)) == os.getpid():
                found.append(int(status.parent.name))
    return found


def test_a_node_without_sshd_is_refused_in_words_and_leaves_no_ssh_running(
    lab, live_server, terminals
):
    container = node_container(lab, "b")
    assert container.exec_run(["pkill", "-x", "sshd"]).exit_code == 0
    try:
        assert wait_until(lambda: container.exec_run(["pgrep", "-x", "sshd"]).exit_code == 1, WAIT)
        fds_before = len(os.listdir("/proc/self/fd"))
        client = connect(
            live_server, lab["id"], "b", session_cookie(live_server, lab["owner"]), SAME_SITE
        )
        terminals.append(client)
        text = read_until(client, r"does not answer on SSH.*refused")
        assert "node b of lab" in text and "it is down or still starting" in text, text
        assert closed_reason(client)[0] == CLOSE_UNAVAILABLE
        assert ssh_children() == []
        assert wait_until(lambda: len(os.listdir("/proc/self/fd")) <= fds_before, WAIT)
    finally:
        container.exec_run(["/usr/sbin/sshd"])


def test_the_terminal_has_no_ssh_escape_so_tilde_dot_is_only_typed(lab, live_server, terminals):
    """The portal's ssh client has no escape character: `~.` would end the session, and
    `~C` open port forwardings from the portal's host."""
    client = connect(
        live_server, lab["id"], "a", session_cookie(live_server, lab["owner"]), SAME_SITE
    )
    terminals.append(client)
    client.send(b"echo ready-$TERM\r")
    read_until(client, "ready-xterm-256color")
    client.send(b"\r~.\r")
    client.send(b"echo still-$((40+2))\r")
    read_until(client, "still-42")


def test_a_key_the_portal_cannot_read_or_the_node_refuses_is_said_before_any_session(lab, tmp_path):
    deployed = load_deployed_lab(lab["name"])
    target = Target(
        lab=lab["name"],
        node="a",
        kind="linux",
        address=str(deployed.node("a").mgmt_ipv4.ip),
        container=deployed.container_name("a"),
    )
    with pytest.raises(TerminalRefused, match="the platform's SSH key cannot be read"):
        open_ssh(target, tmp_path / "missing")
    other_key = tmp_path / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True
    )
    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(TerminalRefused, match=r"does not answer on SSH.*Permission denied"):
        open_ssh(target, other_key)
    assert ssh_children() == [] and len(os.listdir("/proc/self/fd")) == fds_before


def test_a_stopped_node_says_it_is_down_in_the_terminal(driver, lab, live_server, terminals):
    """Last of the module: node b stays stopped."""
    node_container(lab, "b").stop(timeout=1)
    log_in(driver, lab["owner"])
    open_page(driver, f"/labs/{lab['id']}/nodes/b/terminal")
    wait = WebDriverWait(driver, WAIT)
    wait.until(lambda d: d.find_element(By.ID, "terminal").get_attribute("data-state") == "closed")
    status = driver.find_element(By.ID, "terminal-status").text
    assert "node b of lab" in status and "is down" in status, status
    assert "is down (its container is exited)" in screen_text(driver)
    assert driver.find_element(By.ID, "terminal-reconnect").is_displayed()
    screenshot(driver, "terminal-node-down")

    client = connect(
        live_server, lab["id"], "b", session_cookie(live_server, lab["owner"]), SAME_SITE
    )
    terminals.append(client)
    read_until(client, "is down")
    assert closed_reason(client)[0] == CLOSE_UNAVAILABLE
