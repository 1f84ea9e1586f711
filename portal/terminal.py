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
import errno
import fcntl
import hashlib
import json
import os
import select
import signal
import struct
import subprocess
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
from simple_websocket import ConnectionClosed

from ltb import kinds
from ltb.deployed import LabNotDeployed, load_deployed_lab
from ltb.ssh import ssh_argv
from store.models import Lab, LabState

# Terminal size until the browser sends its own.
DEFAULT_SIZE = (80, 24)
# Bounds of what the browser may ask for.
MAX_COLS, MAX_ROWS = 1000, 500
SSH_CONNECT_SECONDS = 8
# How long ssh may take from its start to the node's first output (connect, handshake, login).
LOGIN_SECONDS = 3 * SSH_CONNECT_SECONDS
SERVER_ALIVE_SECONDS = 15
# Linux's termios flag (<asm-generic/termbits.h>); Python's termios module does not name it.
IUTF8 = getattr(termios, "IUTF8", 0o40000)
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


class SshSession:
    """The real OpenSSH client (`ssh -tt`) logged in to a node, on a pseudo-terminal of ours.

    ssh's stdin and stdout are the pty's slave side, left in a console's modes: ssh asks the
    node for a PTY of its size with the modes it finds there (echo, line editing, Ctrl-C),
    then puts its own side in raw mode; the portal reads and writes the master side. ssh runs in
    its own session and process group, so close() ends it and whatever it started; its
    stderr (its own errors, never the node's output) goes to a file read when it fails."""

    def __init__(self, argv: list[str], size: tuple[int, int]) -> None:
        self.master, slave = os.openpty()
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            self._set_size(slave, size)
            # xterm.js speaks UTF-8: the node's line editing then erases a character, not a byte.
            modes = termios.tcgetattr(slave)
            modes[0] |= IUTF8
            termios.tcsetattr(slave, termios.TCSANOW, modes)
            self.process = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=self.errors,
                env=ssh_environment(),
                start_new_session=True,
            )
        except BaseException:
            os.close(self.master)
            self.errors.close()
            raise
        finally:
            # Only ssh holds the slave side now: when it exits, reads here end (EIO).
            os.close(slave)
        self._closed = False

    @staticmethod
    def _set_size(fd: int, size: tuple[int, int]) -> None:
        cols, rows = size
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes of the node's output; b"" once ssh has exited."""
        try:
            return os.read(self.master, size)
        except OSError as error:
            if error.errno == errno.EIO:  # the slave side is closed: ssh ended
                return b""
            raise

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def resize(self, cols: int, rows: int) -> None:
        """The pty's new size; ssh is told by SIGWINCH (the pty is not its controlling
        terminal) and passes it on to the node."""
        self._set_size(self.master, (cols, rows))
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGWINCH)

    def wait_for_login(self, seconds: float) -> str | None:
        """None once the node's side has said something (a prompt, a banner), else why not:
        ssh's last error line if it exited first (it cannot connect, the key is refused),
        or that nothing came in `seconds`."""
        deadline = time.monotonic() + seconds
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            events = poller.poll(100)
            if any(event & select.POLLIN for _, event in events):
                return None
            if events:  # POLLHUP alone: ssh closed the pty and is exiting
                time.sleep(0.01)
        else:
            return f"no answer within {seconds:g} s"
        self.errors.seek(0)
        lines = self.errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1][:200] if lines else f"ssh exit status {self.process.returncode}"

    def exit_status(self, seconds: float = 2.0) -> int | None:
        """The shell's exit status once ssh has ended (it exits with it); None if the
        connection failed instead (ssh's 255), ssh was killed or did not end in time."""
        try:
            status = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None
        return status if 0 <= status < 255 else None

    def stop(self) -> None:
        """End ssh (and its process group) and reap it; its output ends (recv gives b"")."""
        if self.process.poll() is None:  # not reaped: its group id is still its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def close(self) -> None:
        """stop(), then the pty and the error file. Whoever reads recv() must have stopped
        (relay joins its reader first): a closed descriptor's number is soon another's."""
        self.stop()
        if not self._closed:
            self._closed = True
            os.close(self.master)
            self.errors.close()


def ssh_environment() -> dict[str, str]:
    """ssh's environment: the portal's own (its settings, secrets) is not passed on, nor an
    agent; TERM is what the node's PTY is told (xterm.js is an xterm)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "TERM": "xterm-256color",
    }


def terminal_argv(address: str, key_file: Path) -> list[str]:
    """The `ssh` command line of a terminal: ltb/ssh.py's (the platform key, root, host keys
    not recorded, BatchMode, ConnectTimeout) with a PTY on the node (-tt), and nothing the
    user could reach through the portal's ssh: no escape character (its `~C` could add
    port forwardings), no forwarding, no agent, no shared connection."""
    base = ssh_argv(address, key=key_file, connect_timeout=SSH_CONNECT_SECONDS)
    options = [
        "-tt",
        "-e", "none",
        "-o", "IdentitiesOnly=yes",
        "-o", "ClearAllForwardings=yes",
        "-o", "ForwardAgent=no",
        "-o", "ForwardX11=no",
        "-o", "ControlPath=none",
        # A node that vanishes (powered off, its network gone) ends the session in 45 s.
        "-o", f"ServerAliveInterval={SERVER_ALIVE_SECONDS}",
        "-o", "ServerAliveCountMax=3",
    ]  # fmt: skip
    return [base[0], *options, *base[1:]]


def open_ssh(target: Target, key_file: Path, size: tuple[int, int] = DEFAULT_SIZE) -> SshSession:
    """An SSH session with a PTY on the node; the caller closes it.

    Refused before any relay when the platform's key cannot be read, or ssh cannot log in
    (it exits first, saying why) or the node says nothing within LOGIN_SECONDS."""
    try:
        head = key_file.read_bytes()[:64]
    except OSError as error:
        raise TerminalRefused(f"the platform's SSH key cannot be read ({error})") from None
    if not head.startswith(b"-----BEGIN ") or b"PRIVATE KEY-----" not in head:
        raise TerminalRefused(
            f"the platform's SSH key cannot be read ({key_file} is not a private key)"
        )
    session = SshSession(terminal_argv(target.address, key_file), size)
    why = session.wait_for_login(LOGIN_SECONDS)
    if why is not None:
        session.close()
        raise TerminalRefused(
            f"node {target.node} of lab {target.lab} does not answer on SSH: it is down or "
            f"still starting ({why})"
        )
    return session


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


def relay(ws, session: SshSession, idle_seconds: float) -> None:
    """Bytes both ways until either side ends or nobody typed for `idle_seconds`; ssh is
    ended when this returns."""
    stop = threading.Event()

    def node_to_browser() -> None:
        try:
            while not stop.is_set():
                data = session.recv(READ_BYTES)
                if not data:
                    break
                ws.send(data)
        except (ConnectionClosed, OSError):
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
                    session.sendall(message)
                else:
                    size = parse_control(message)
                    if size is not None:
                        session.resize(*size)
            except OSError:
                stop.set()  # the node's side went away while we wrote: said below
        else:
            # The node's side ended (exit, reboot): say so before closing.
            status = session.exit_status()
            if status is not None:
                text = f"session ended (exit status {status})"
            else:
                text = "the node closed the session"
            say(ws, text)
            close(ws, CLOSE_NORMAL, text)
    finally:
        stop.set()
        session.stop()  # the reader's recv() ends
        reader.join(timeout=5)
        session.close()


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
