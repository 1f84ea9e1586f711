"""Web terminals: a WebSocket of the browser relayed to an SSH session on a lab node.

The browser never names an address or a key: it names a lab it may see and a node of it
(portal.access.lab_or_404); the portal looks up the node's management address in the
deployed lab and logs in as root with the platform's key, which never leaves the portal.

Frames: the browser sends keystrokes as binary frames and control messages as text frames
holding JSON (`{"resize": [cols, rows]}`); the portal sends the node's output as binary
frames. Why a session ends (idle timeout, node down, a limit) is written into the terminal
and is the close frame's reason.

Each terminal holds a gunicorn thread for its life, so open terminals are counted
(TerminalSlots): per worker process, so that a worker keeps threads for the API
(portal/gunicorn.conf.py gives each worker that many threads more), and per user, across
the worker processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import paramiko
from simple_websocket import ConnectionClosed

from ltb import kinds
from ltb.deployed import LabNotDeployed, load_deployed_lab
from store.models import Lab, LabState

# Terminal size until the browser sends its own.
DEFAULT_SIZE = (80, 24)
# Bounds of what the browser may ask for.
MAX_COLS, MAX_ROWS = 1000, 500
SSH_CONNECT_SECONDS = 8
READ_BYTES = 32 * 1024
# How often the relay wakes to check the idle timeout and whether the node hung up.
TICK_SECONDS = 1.0
# WebSocket close codes (4000-4999 are the application's own).
CLOSE_NORMAL = 1000
CLOSE_ERROR = 1011
CLOSE_IDLE = 4000
CLOSE_UNAVAILABLE = 4001
CLOSE_LIMIT = 4002


class TerminalRefused(Exception):
    """A terminal cannot open; the message says why, in words the user can act on."""

    def __init__(self, message: str, code: int = CLOSE_UNAVAILABLE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Target:
    """Where a terminal logs in: what the user sees and what only the portal knows."""

    lab: str
    node: str
    kind: str
    address: str
    container: str


def node_target(lab: Lab, name: str) -> Target:
    """The node's SSH target if its lab is running, else TerminalRefused naming why.

    The caller has checked that the user may see the lab and that it has the node."""
    if lab.state != LabState.RUNNING.value:
        raise TerminalRefused(f"lab {lab.name} is {lab.state}, not running: no terminal")
    try:
        deployed = load_deployed_lab(lab.name)
        node = deployed.node(name)
    except (LabNotDeployed, KeyError) as error:
        raise TerminalRefused(f"node {name} of lab {lab.name} is not deployed ({error})") from None
    return Target(
        lab=lab.name,
        node=name,
        kind=node.kind,
        address=str(node.mgmt_ipv4.ip),
        container=deployed.container_name(name),
    )


def check_container_running(target: Target) -> None:
    """A container node that is not running is said at once (SSH would only time out)."""
    if kinds.get(target.kind).runtime != kinds.DOCKER:
        return
    try:
        status = docker.from_env().containers.get(target.container).status
    except docker.errors.NotFound:
        status = "gone"
    except docker.errors.DockerException:
        return  # Docker cannot say; the SSH attempt will
    if status != "running":
        raise TerminalRefused(
            f"node {target.node} of lab {target.lab} is down (its container is {status})"
        )


def open_ssh(target: Target, key_file: Path, size: tuple[int, int] = DEFAULT_SIZE):
    """An SSH client and an interactive shell channel with a PTY on the node.

    Nodes get new host keys at every deploy (ltb/ssh.py), so none is recorded."""
    try:
        key = paramiko.Ed25519Key.from_private_key_file(str(key_file))
    except (OSError, paramiko.SSHException) as error:
        raise TerminalRefused(f"the platform's SSH key cannot be read ({error})") from None
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - see above
    try:
        client.connect(
            target.address,
            username="root",
            pkey=key,
            timeout=SSH_CONNECT_SECONDS,
            banner_timeout=SSH_CONNECT_SECONDS,
            auth_timeout=SSH_CONNECT_SECONDS,
            allow_agent=False,
            look_for_keys=False,
        )
        channel = client.invoke_shell(term="xterm-256color", width=size[0], height=size[1])
    except (OSError, paramiko.SSHException) as error:
        client.close()
        raise TerminalRefused(
            f"node {target.node} of lab {target.lab} does not answer on SSH: it is down or "
            f"still starting ({error.__class__.__name__})"
        ) from None
    return client, channel


def origin_matches(origin: str | None, host: str) -> bool:
    """Whether a WebSocket's Origin header names this site (`host`: the request's Host).

    Browsers send the session cookie with a WebSocket opened by any site's page, so the
    Origin is what tells our own pages apart (cross-site WebSocket hijacking). A proxy that
    passes the Host without its port (nginx's `$host`) names only the host name: then the
    host names must match."""
    if not origin:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = host.lower()
    if ":" in host.rsplit("]", 1)[-1]:
        return parts.netloc.lower() == host
    return parts.hostname == host.strip("[]")


def parse_control(text: str) -> tuple[int, int] | None:
    """The terminal size of a control message, or None if it is not a valid resize."""
    try:
        message = json.loads(text)
        cols, rows = message["resize"]
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(cols, int) and isinstance(rows, int)):
        return None
    if not (1 <= cols <= MAX_COLS and 1 <= rows <= MAX_ROWS):
        return None
    return cols, rows


def say(ws, text: str) -> None:
    """A line of the portal's own in the terminal (not from the node)."""
    with contextlib.suppress(ConnectionClosed):
        ws.send(f"\r\n\x1b[1m[LTB] {text}\x1b[0m\r\n".encode())


def close(ws, code: int, reason: str) -> None:
    with contextlib.suppress(ConnectionClosed, OSError):
        # Close frame reasons are at most 123 bytes.
        ws.close(reason=code, message=reason.encode()[:120].decode(errors="ignore"))


def relay(ws, channel, idle_seconds: float) -> None:
    """Bytes both ways until either side ends or nobody typed for `idle_seconds`."""
    stop = threading.Event()

    def node_to_browser() -> None:
        try:
            while not stop.is_set():
                data = channel.recv(READ_BYTES)
                if not data:
                    break
                ws.send(data)
        except (ConnectionClosed, OSError, EOFError):
            pass
        finally:
            stop.set()

    reader = threading.Thread(target=node_to_browser, name="terminal-reader", daemon=True)
    reader.start()
    last_input = time.monotonic()
    try:
        while not stop.is_set():
            try:
                message = ws.receive(timeout=TICK_SECONDS)
            except ConnectionClosed:
                break
            if message is None:
                if time.monotonic() - last_input >= idle_seconds:
                    minutes = idle_seconds / 60
                    text = (
                        f"closed after {minutes:g} minutes without input; "
                        "reload the page for a new session"
                    )
                    say(ws, text)
                    close(ws, CLOSE_IDLE, text)
                    break
                continue
            last_input = time.monotonic()
            try:
                if isinstance(message, bytes):
                    channel.sendall(message)
                else:
                    size = parse_control(message)
                    if size is not None:
                        channel.resize_pty(width=size[0], height=size[1])
            except (OSError, EOFError, paramiko.SSHException):
                stop.set()  # the node's side went away while we wrote: said below
        else:
            # The node's side ended (exit, reboot): say so before closing.
            if channel.exit_status_ready():
                text = f"session ended (exit status {channel.recv_exit_status()})"
            else:
                text = "the node closed the session"
            say(ws, text)
            close(ws, CLOSE_NORMAL, text)
    finally:
        stop.set()
        channel.close()
        reader.join(timeout=5)


class TerminalSlots:
    """Open terminals, counted across the portal's worker processes.

    One file per open terminal in `directory`, named `<user>.<pid>.<n>`; a lock file makes
    count-and-add atomic; files of processes that died (a killed worker) do not count and
    are removed. Per worker process: at most `per_worker` (the threads gunicorn added for
    terminals); per user: at most `per_user` over all workers."""

    def __init__(self, directory: Path, per_user: int, per_worker: int) -> None:
        self.directory = directory
        self.per_user = per_user
        self.per_worker = per_worker
        self._counter = 0
        self._counter_lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _open_ones(self) -> list[tuple[int, int]]:
        """(user id, pid) of every open terminal; dead processes' files are removed."""
        found = []
        for path in self.directory.iterdir():
            parts = path.name.split(".")
            if len(parts) != 3 or not all(part.isdigit() for part in parts):
                continue
            user, pid = int(parts[0]), int(parts[1])
            if not _alive(pid):
                path.unlink(missing_ok=True)
                continue
            found.append((user, pid))
        return found

    @contextlib.contextmanager
    def slot(self, user_id: int) -> Iterator[None]:
        pid = os.getpid()
        with self._locked():
            open_ones = self._open_ones()
            if sum(1 for user, _ in open_ones if user == user_id) >= self.per_user:
                raise TerminalRefused(
                    f"you have {self.per_user} terminals open, the most allowed: "
                    "close one to open another",
                    CLOSE_LIMIT,
                )
            if sum(1 for _, owner in open_ones if owner == pid) >= self.per_worker:
                raise TerminalRefused(
                    "the portal has as many terminals open as it can serve: try again later",
                    CLOSE_LIMIT,
                )
            with self._counter_lock:
                self._counter += 1
                path = self.directory / f"{user_id}.{pid}.{self._counter}"
            path.touch()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def count(self) -> int:
        with self._locked():
            return len(self._open_ones())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_slots_dir(database_url: str) -> Path:
    """One directory per lab store: the workers of one portal share it, a test portal on
    another database does not count the real portal's terminals."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"ltb-terminals-{os.getuid()}-{digest}"


_slots: dict[tuple[Any, ...], TerminalSlots] = {}
_slots_lock = threading.Lock()


def slots_for(directory: Path, per_user: int, per_worker: int) -> TerminalSlots:
    """The process's TerminalSlots for these settings (one per app configuration)."""
    key = (str(directory), per_user, per_worker)
    with _slots_lock:
        if key not in _slots:
            _slots[key] = TerminalSlots(directory, per_user, per_worker)
        return _slots[key]
