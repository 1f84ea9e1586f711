"""A separate hypervisor host of the project's own making: a Debian 12 machine in a container.

Unlike tests/multihost/hypervisor.py (a network namespace that shares this machine's files,
dockerd and libvirtd), this host has its own root file system (Debian 12 minbase made with
mmdebstrap, imported into Docker as an image), its own address on a Docker network of its own
(198.19.13.0/24 of the benchmarking range; .1 is this machine), sshd that lets in the platform
key, and no init system: site.yml installs and starts everything else there (Docker, Open
vSwitch, libvirt, supervisord, the exporters, the lab images), as on a fresh server.

It runs with every capability this machine grants (all but CAP_SYS_RESOURCE, outside this
machine's bounding set, which is why `docker run --privileged` fails here), no seccomp or
AppArmor profile, every device allowed, and /sys and the cgroup hierarchies remounted
read-write by its init, so that its own dockerd and libvirtd can run. Its /var/lib/docker is
a Docker volume (ext4 below: overlay2 works there, not on the container's own overlay).

A second variant, SYSTEMD, has systemd as PID 1 (Debian's systemd, systemd-sysv and dbus;
sshd is then its ssh.service), so that site.yml's systemd path runs for real: what it needs
from Docker is in SYSTEMD_RUN_OPTIONS (measured here: the remounting init of the plain host,
then systemd, reaches `running` in about 1 s).

The image is cached: the root file system tarball in /var/cache/ltb-separate-host/ and the
image `ltb-separate-host:<recipe hash>`, rebuilt only when its recipe (packages, init)
changes. Downloaded Debian packages are kept in the volume `ltb-separate-host-apt` (its
/var/cache/apt/archives), so a host made again installs without downloading.

    python -m tests.separate_host.host up sh1 2     # prints the inventory entry and timings
    python -m tests.separate_host.host down sh1 2
    python -m tests.separate_host.host up sj1 3 systemd
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

PLATFORM_KEY = Path("/var/lib/ltb/ssh/id_ed25519")
CACHE_DIR = Path("/var/cache/ltb-separate-host")
IMAGE_REPOSITORY = "ltb-separate-host"
NETWORK = "ltb-separate-host"
NETWORK_BRIDGE = "ltbsh0"
SUBNET = IPv4Network("198.19.13.0/24")  # RFC 2544 benchmarking range: never routed out
GATEWAY = SUBNET.network_address + 1  # this machine's address on the host's network
APT_VOLUME = "ltb-separate-host-apt"
HOST_APT_SOURCES = "/etc/apt/sources.list.d/0000debian.sources"
NAME_PATTERN = re.compile(r"[a-z0-9]{1,8}")

# What a fresh minimal Debian server has for being driven by Ansible: sshd and python3.
PACKAGES = ["openssh-server", "python3", "iproute2", "procps", "iputils-ping", "ca-certificates"]
# Its init (PID 2 under docker-init): make /sys and the cgroups writable for its own daemons
# (the bind mounts need `remount,bind`), then sshd in the foreground, as the host's one service.
INIT = """\
#!/bin/sh
# The separate host's init (tests/separate_host/host.py): writable /sys and cgroups, then sshd.
set -e
mount -o remount,rw /sys
mount -o remount,rw /sys/fs/cgroup
for hierarchy in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$hierarchy"; done
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e
"""
# Every capability, device and path its own dockerd and libvirtd need (both variants).
HOST_OPTIONS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--device-cgroup-rule", "a *:* rwm", "--device", "/dev/net/tun", "--device", "/dev/fuse",
]  # fmt: skip
RUN_OPTIONS = [*HOST_OPTIONS, "--init"]

# The systemd variant: the same init's remounts (for its own dockerd), then systemd as PID 1.
SYSTEMD_PACKAGES = [*PACKAGES, "systemd", "systemd-sysv", "dbus"]
SYSTEMD_INIT = """\
#!/bin/sh
# The separate host's init (tests/separate_host/host.py): writable /sys and cgroups, then systemd.
set -e
mount -o remount,rw /sys
mount -o remount,rw /sys/fs/cgroup
for hierarchy in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$hierarchy"; done
exec /lib/systemd/systemd
"""
# Tried here (Docker 20.10, cgroup v1 with a cgroup2 `unified` hierarchy): systemd 252 needs
# CAP_SYS_ADMIN (it mounts; without it the container exits at once, code 255), a /run and
# /run/lock of its own (tmpfs), `container=docker` (so it skips what a container may not do),
# and its own cgroup namespace (`--cgroupns=host` ran too). It stops on SIGRTMIN+3. Without
# the remounts, systemd ran on the writable cgroup2 hierarchy alone.
SYSTEMD_RUN_OPTIONS = [
    *HOST_OPTIONS, "--cgroupns", "private", "--tmpfs", "/run:exec,mode=755",
    "--tmpfs", "/run/lock", "--env", "container=docker", "--stop-signal", "SIGRTMIN+3",
]  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """A kind of separate host: what its image holds and how Docker runs it."""

    packages: list[str]
    init: str
    run_options: list[str]

    @property
    def recipe_hash(self) -> str:
        return hashlib.sha256(json.dumps([self.packages, self.init]).encode()).hexdigest()[:12]

    @property
    def image(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.recipe_hash}"


PLAIN = Variant(PACKAGES, INIT, RUN_OPTIONS)
SYSTEMD = Variant(SYSTEMD_PACKAGES, SYSTEMD_INIT, SYSTEMD_RUN_OPTIONS)
VARIANTS = {"plain": PLAIN, "systemd": SYSTEMD}
RECIPE_HASH = PLAIN.recipe_hash
IMAGE = PLAIN.image


def _run(*argv: str | Path, timeout: float | None = None) -> str:
    process = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, timeout=timeout
    )
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed: {process.stderr.strip()[-2000:]}")
    return process.stdout


def _succeeds(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def build_image(variant: Variant = PLAIN) -> float | None:
    """The variant's image exists; returns the seconds its build took, None when it was cached."""
    image, recipe_hash = variant.image, variant.recipe_hash
    if _succeeds("docker", "image", "inspect", image):
        return None
    start = time.monotonic()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"rootfs-{recipe_hash}.tar"
    if not tarball.exists():
        init = CACHE_DIR / f"init-{recipe_hash}"
        init.write_text(variant.init)
        partial = CACHE_DIR / f"rootfs-{recipe_hash}.partial.tar"
        _run(
            "mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(variant.packages)}",
            f"--customize-hook=upload {init} /usr/local/sbin/ltb-host-init",
            '--customize-hook=chmod 0755 "$1"/usr/local/sbin/ltb-host-init',
            "bookworm", partial, "/etc/apt/sources.list.d/debian.sources",
        )  # fmt: skip
        partial.rename(tarball)
        init.unlink()
    _run(
        "docker", "import", "--change", 'CMD ["/usr/local/sbin/ltb-host-init"]',
        "--message", "LTB separate host (tests/separate_host/host.py)", tarball, image,
    )  # fmt: skip
    return time.monotonic() - start


@dataclass(frozen=True)
class SeparateHost:
    """Host `<x>` (a few lower-case letters or digits) at 198.19.13.<index>."""

    x: str
    index: int
    variant: Variant = PLAIN

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.x) or not 2 <= self.index <= 254:
            raise ValueError(f"host {self.x!r} {self.index}: want [a-z0-9]{{1,8}}, 2-254")

    @property
    def name(self) -> str:
        """Its name as an Ansible host."""
        return f"hv-{self.x}"

    @property
    def container(self) -> str:
        return f"ltb-host-{self.x}"

    @property
    def docker_volume(self) -> str:
        return f"ltb-host-{self.x}-docker"

    @property
    def address(self) -> IPv4Address:
        return SUBNET.network_address + self.index

    def inventory_host(self, key: Path = PLATFORM_KEY) -> dict:
        """Its entry in group `hypervisors`: reached over SSH as root with the platform key, its
        modules run by Debian's python3; the tunnel and the exporters on its own address."""
        return {
            "ansible_host": str(self.address),
            "ansible_connection": "ssh",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": (
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
            ),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ltb_tunnel_address": str(self.address),
            "platform_metrics_exporter_address": str(self.address),
            # mmdebstrap named the host's apt sources so; the image builds read the default
            # /etc/apt/sources.list.d/debian.sources otherwise (this machine's name for them).
            "node_image_mirror": HOST_APT_SOURCES,
            "vm_image_mirror": HOST_APT_SOURCES,
        }

    def exec(self, *argv: str, timeout: float | None = 120) -> str:
        """Run a command on the host (docker exec: no SSH, for tests' checks)."""
        return _run("docker", "exec", self.container, *argv, timeout=timeout)

    def up(self, key: Path = PLATFORM_KEY) -> dict[str, float]:
        """Start the host (building its image when missing); returns the seconds of each step."""
        took: dict[str, float] = {}
        built = build_image(self.variant)
        if built is not None:
            took["image_build"] = built
        start = time.monotonic()
        if not _succeeds("docker", "network", "inspect", NETWORK):
            _run(
                "docker", "network", "create", "--subnet", str(SUBNET), "--gateway", str(GATEWAY),
                "--opt", f"com.docker.network.bridge.name={NETWORK_BRIDGE}", NETWORK,
            )  # fmt: skip
        try:
            _run(
                "docker", "run", "--detach", "--name", self.container, "--hostname", self.name,
                *self.variant.run_options, "--network", NETWORK, "--ip", str(self.address),
                "--volume", f"{self.docker_volume}:/var/lib/docker",
                "--volume", f"{APT_VOLUME}:/var/cache/apt/archives",
                "--volume", f"{key}.pub:/root/.ssh/authorized_keys:ro",
                "--label", "ltb.separate-host=1", self.variant.image,
            )  # fmt: skip
            if self.variant is SYSTEMD:
                self._wait_for_systemd()
                took["start_to_running"] = time.monotonic() - start
            self._wait_for_ssh(key)
        except BaseException:
            self.down()
            raise
        took["start"] = time.monotonic() - start
        return took

    def reboot(self, key: Path = PLATFORM_KEY) -> float:
        """Stop the host cleanly (systemd: SIGRTMIN+3) and start it again, as after a reboot;
        returns the seconds until it answers over SSH."""
        start = time.monotonic()
        _run("docker", "restart", "--time", "60", self.container, timeout=120)
        if self.variant is SYSTEMD:
            self._wait_for_systemd()
        self._wait_for_ssh(key)
        return time.monotonic() - start

    def _wait_for_systemd(self, timeout: float = 60) -> None:
        """systemd finished starting up: `running`, or `degraded` (a unit failed: named)."""
        deadline = time.monotonic() + timeout
        argv = ["docker", "exec", self.container, "systemctl", "is-system-running", "--wait"]
        while True:  # until systemd's bus answers: nothing or `offline` before
            asked = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            state = asked.stdout
            if state.strip() not in ("", "offline") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if state.strip() not in ("running", "degraded"):
            failed = subprocess.run(
                ["docker", "exec", self.container, "systemctl", "--failed", "--no-legend"],
                capture_output=True,
                text=True,
            )
            raise RuntimeError(
                f"systemd of {self.name} is {state.strip()!r} ({asked.stderr.strip()}): "
                f"{failed.stdout}{failed.stderr}"
            )

    def _wait_for_ssh(self, key: Path, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        argv = [
            "ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            f"root@{self.address}", "true",
        ]  # fmt: skip
        while not _succeeds(*argv):
            if time.monotonic() > deadline:
                logs = subprocess.run(
                    ["docker", "logs", self.container], capture_output=True, text=True
                )
                raise RuntimeError(f"sshd of {self.name} did not answer: {logs.stderr[-2000:]}")
            time.sleep(0.3)

    def down(self) -> None:
        """Remove the host with everything on it (its Docker volume too); safe to call twice.
        The image, the tarball and the package cache stay, for the next host."""
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, check=False)
        subprocess.run(
            ["docker", "volume", "rm", self.docker_volume], capture_output=True, check=False
        )
        attached = subprocess.run(
            ["docker", "network", "inspect", NETWORK, "--format", "{{len .Containers}}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if attached == "0":
            subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True, check=False)


def main(argv: list[str]) -> int:
    variant = argv[3] if len(argv) == 4 else "plain"
    if len(argv) not in (3, 4) or argv[0] not in ("up", "down") or variant not in VARIANTS:
        print(__doc__, file=sys.stderr)
        return 2
    host = SeparateHost(argv[1], int(argv[2]), VARIANTS[variant])
    if argv[0] == "down":
        host.down()
        return 0
    took = host.up()
    print(json.dumps({"took_seconds": took, host.name: host.inventory_host()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
