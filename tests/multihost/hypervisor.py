"""A second hypervisor on this machine, of the project's own making, for multi-host tests.

A network namespace `ltbhv-<x>` with a veth to the root namespace (198.18.<n>.0/30 of the
benchmarking range: .1 is this machine's end, .2 the hypervisor's), its own Open vSwitch
(ovsdb-server and ovs-vswitchd with their own database and run directory), its own dockerd
(own data root, exec root, socket, containerd namespaces and cgroup parent; no Docker network,
no iptables) and its own sshd on its address (root with the platform key only). The sshd sets
DOCKER_HOST and OVS_RUNDIR for every session, so Ansible modules and the docker / ovs-vsctl
CLIs reached over SSH find the hypervisor's daemons, not this machine's. Its LTB state
directory is /var/lib/ltb-<x> (host var `ltb_state_dir`).

The file system is shared with this machine, but the hypervisor runs its modules with
Debian's /usr/bin/python3, which cannot import the controller's `ltb` package.

    python -m tests.multihost.hypervisor up a 1     # prints the inventory entry
    python -m tests.multihost.hypervisor down a 1
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

PLATFORM_KEY = Path("/var/lib/ltb/ssh/id_ed25519")
NODE_IMAGE = "ltb/node:latest"
UNDERLAY = IPv4Network("198.18.0.0/16")  # RFC 2544 benchmarking range: never routed out
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME_PATTERN = re.compile(r"[a-z0-9]{1,6}")


def _run(*argv: str | Path, env: dict[str, str] | None = None, **kwargs) -> str:
    process = subprocess.run(
        [str(a) for a in argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed: {process.stderr.strip()}")
    return process.stdout


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Whether the process runs; a zombie (dockerd is our child: reaped here) does not."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    """Ask a process we started to end, then make it end."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class NetnsHypervisor:
    """Hypervisor `<x>` (a few lower-case letters or digits), underlay 198.18.<index>.0/30."""

    x: str
    index: int

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.x) or not 1 <= self.index <= 255:
            raise ValueError(f"hypervisor {self.x!r} {self.index}: want [a-z0-9]{{1,6}}, 1-255")

    # Names and places, all derived from x and index.
    @property
    def name(self) -> str:
        """Its name as an Ansible host."""
        return f"hv-{self.x}"

    @property
    def netns(self) -> str:
        return f"ltbhv-{self.x}"

    @property
    def root_veth(self) -> str:
        return f"ltbhv-{self.x}"

    @property
    def subnet(self) -> IPv4Network:
        return IPv4Network((int(UNDERLAY.network_address) + self.index * 256, 30))

    @property
    def root_address(self) -> IPv4Interface:
        return IPv4Interface(f"{self.subnet.network_address + 1}/30")

    @property
    def address(self) -> IPv4Interface:
        return IPv4Interface(f"{self.subnet.network_address + 2}/30")

    @property
    def run_dir(self) -> Path:
        return Path(f"/run/ltbhv-{self.x}")

    @property
    def data_dir(self) -> Path:
        return Path(f"/var/lib/ltbhv-{self.x}")

    @property
    def state_dir(self) -> Path:
        """LTB's state directory on this hypervisor (its `ltb_state_dir`)."""
        return Path(f"/var/lib/ltb-{self.x}")

    @property
    def docker_host(self) -> str:
        return f"unix://{self.run_dir}/docker.sock"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this hypervisor's Docker and Open vSwitch."""
        return {
            "PATH": SBIN_PATH,
            "DOCKER_HOST": self.docker_host,
            "OVS_RUNDIR": str(self.run_dir / "ovs"),
            "OVS_DBDIR": str(self.data_dir / "ovs"),
            "OVS_LOGDIR": str(self.run_dir / "ovs"),
        }

    def inventory_host(self, key: Path = PLATFORM_KEY, python: str = "/usr/bin/python3") -> dict:
        """Its entry in group `hypervisors`: Debian's python3, as on a real hypervisor (the
        modules bring their shared code with them; nothing of the controller's venv)."""
        return {
            "ansible_host": str(self.address.ip),
            "ansible_connection": "ssh",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": (
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
            ),
            "ansible_python_interpreter": python,
            # One SSH round trip per module run, not three (the sshd has no requiretty).
            "ansible_pipelining": True,
            "ltb_state_dir": str(self.state_dir),
            "ltb_tunnel_address": str(self.address.ip),
        }

    # Running commands in it.
    def netns_argv(self, *argv: str | Path) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *map(str, argv)]

    def run(self, *argv: str | Path) -> str:
        """Run a command in the hypervisor, with its daemons' environment."""
        return _run(*self.netns_argv(*argv), env={**os.environ, **self.env})

    def docker(self, *argv: str) -> str:
        return _run("docker", *argv, env={**os.environ, "DOCKER_HOST": self.docker_host})

    # Up and down.
    def up(self, key: Path = PLATFORM_KEY, image: str = NODE_IMAGE) -> dict[str, float]:
        """Start everything; returns the seconds each step took. Stops what started on failure."""
        took: dict[str, float] = {}
        try:
            for step in (self._network, self._ovs, self._docker):
                start = time.monotonic()
                step()
                took[step.__name__.strip("_")] = time.monotonic() - start
            start = time.monotonic()
            self._sshd(key)
            took["sshd"] = time.monotonic() - start
            start = time.monotonic()
            if image:
                self._load_image(image)
            took["image"] = time.monotonic() - start
        except BaseException:
            self.down()
            raise
        return took

    def _network(self) -> None:
        for directory in (self.run_dir / "ovs", self.data_dir / "ovs", self.state_dir):
            directory.mkdir(parents=True, exist_ok=True)
        _run("ip", "netns", "add", self.netns)
        inside = f"ltbhv-{self.x}-in"
        _run("ip", "link", "add", self.root_veth, "type", "veth", "peer", "name", inside)
        _run("ip", "link", "set", inside, "netns", self.netns)
        _run("ip", "addr", "add", str(self.root_address), "dev", self.root_veth)
        _run("ip", "link", "set", self.root_veth, "up")
        self.run("ip", "link", "set", inside, "name", "uplink")
        self.run("ip", "addr", "add", str(self.address), "dev", "uplink")
        self.run("ip", "link", "set", "uplink", "up")
        self.run("ip", "link", "set", "lo", "up")

    def _ovs(self) -> None:
        ovs_run, conf = self.run_dir / "ovs", self.data_dir / "ovs" / "conf.db"
        _run("ovsdb-tool", "create", conf, OVS_SCHEMA)
        socket = f"unix:{ovs_run}/db.sock"
        self.run(
            "ovsdb-server", conf, f"--remote=punix:{ovs_run}/db.sock", "--pidfile",
            "--detach", "--log-file", "--no-chdir",
        )  # fmt: skip
        self.run("ovs-vsctl", f"--db={socket}", "--no-wait", "init")
        # TCP across a netdev bridge needs this before vswitchd starts (../shared/ENVIRONMENT.md).
        self.run(
            "ovs-vsctl", f"--db={socket}", "--no-wait", "set", "Open_vSwitch", ".",
            "other_config:userspace-tso-enable=true",
        )  # fmt: skip
        self.run(
            "ovs-vswitchd", socket, "--pidfile", "--detach", "--log-file", "--no-chdir",
            "--disable-system-route",
        )  # fmt: skip

    def _docker(self) -> None:
        config = self.run_dir / "daemon.json"
        config.write_text("{}\n")  # not the main daemon's /etc/docker/daemon.json
        log = (self.run_dir / "dockerd.log").open("w")
        namespace = f"ltbhv-{self.x}"
        # nsenter, not `ip netns exec`: that mounts a new /sys, without the cgroup file systems
        # dockerd needs; dockerd reads no interface of the namespace through /sys.
        argv = [
            "nsenter", f"--net=/run/netns/{self.netns}",
            "dockerd", "--config-file", str(config), "--host", self.docker_host,
            "--data-root", str(self.data_dir / "docker"),
            "--exec-root", str(self.run_dir / "docker"),
            "--pidfile", str(self.run_dir / "docker.pid"),
            "--containerd-namespace", namespace,
            "--containerd-plugins-namespace", f"{namespace}-plugins",
            "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", f"/{namespace}",
            "--bridge", "none", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--storage-driver", "overlay2",
        ]  # fmt: skip
        daemon = subprocess.Popen(
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                ["docker", "version", "--format", "{{.Server.Version}}"],
                env={**os.environ, "DOCKER_HOST": self.docker_host},
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"dockerd of {self.name} did not answer: "
                    f"{(self.run_dir / 'dockerd.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)

    def _sshd(self, key: Path) -> None:
        host_key = self.data_dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key)
        authorized = self.data_dir / "authorized_keys"
        shutil.copyfile(f"{key}.pub", authorized)
        authorized.chmod(0o600)
        config = self.run_dir / "sshd_config"
        environment = " ".join(f"{k}={v}" for k, v in self.env.items())
        config.write_text(
            f"ListenAddress {self.address.ip}\nPort 22\nHostKey {host_key}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\n"
            f"AuthorizedKeysFile {authorized}\nPidFile {self.run_dir}/sshd.pid\n"
            f"SetEnv {environment}\nMaxStartups 50\nMaxSessions 50\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.run("/usr/sbin/sshd", "-f", config, "-E", self.run_dir / "sshd.log")
        deadline = time.monotonic() + 10
        while _read_pid(self.run_dir / "sshd.pid") is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd of {self.name} did not start")
            time.sleep(0.05)

    def _load_image(self, image: str) -> None:
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        try:
            _run(
                "docker", "load", "--quiet", stdin=save.stdout,
                env={**os.environ, "DOCKER_HOST": self.docker_host},
            )  # fmt: skip
        finally:
            save.stdout.close()
            if save.wait() != 0:
                raise RuntimeError(f"docker save {image} failed")

    def down(self) -> None:
        """Stop everything of the hypervisor and remove its directories; safe to call twice."""
        if (self.run_dir / "docker.sock").exists():
            # Containers first: their shims outlive dockerd otherwise.
            ids = subprocess.run(
                ["docker", "ps", "-aq"],
                env={**os.environ, "DOCKER_HOST": self.docker_host},
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            if ids:
                subprocess.run(
                    ["docker", "rm", "-f", *ids],
                    env={**os.environ, "DOCKER_HOST": self.docker_host},
                    capture_output=True,
                    check=False,
                )
        for pidfile in ("sshd.pid", "docker.pid", "ovs/ovs-vswitchd.pid", "ovs/ovsdb-server.pid"):
            pid = _read_pid(self.run_dir / pidfile)
            if pid is not None:
                _stop_pid(pid)
        if Path(f"/run/netns/{self.netns}").exists():
            # What is left in the namespace is ours too (containerd and its shims).
            left = subprocess.run(
                ["ip", "netns", "pids", self.netns], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in left:
                _stop_pid(int(pid), timeout=3)
            subprocess.run(["ip", "netns", "del", self.netns], check=False)
        subprocess.run(
            ["ip", "link", "del", self.root_veth], capture_output=True, check=False
        )  # gone with the namespace, unless that was never made
        cgroup_parent = f"ltbhv-{self.x}"
        for controller in Path("/sys/fs/cgroup").glob(f"*/{cgroup_parent}"):
            for child in sorted(controller.rglob("*"), key=lambda p: -len(p.parts)):
                if child.is_dir():
                    child.rmdir()
            controller.rmdir()
        for directory in (self.run_dir, self.data_dir, self.state_dir):
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("up", "down"):
        print(__doc__, file=sys.stderr)
        return 2
    hypervisor = NetnsHypervisor(argv[1], int(argv[2]))
    if argv[0] == "down":
        hypervisor.down()
        return 0
    took = hypervisor.up()
    entry = {"took_seconds": took, hypervisor.name: hypervisor.inventory_host()}
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
