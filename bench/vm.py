"""VM node benchmark: deploy, boot, snapshot and restore of a mixed lab (container -- VM --
container, tests/integration/topologies/mixed.lab.yml), on this hypervisor's acceleration.

Measured, wall clock:

- deploy: `deploy.yml` from its start until the VM answers a command over SSH on the
  management network (`vm_ssh_s`) and until the playbook ends (`deploy_s`);
- bare boot: the same domain stopped (`virsh destroy`) and started with a bare `virsh start`,
  until it answers over SSH: the part of a deploy that is the VM's own boot;
- snapshot: `snapshot.yml` time, and what the snapshot stores (VM overlay copy and memory,
  container layers) in bytes; with VM memory (the default) and without
  (`snapshot_vm_memory=false`);
- bare snapshot: `virsh save` + `cp` of the overlay + `docker commit` of the two containers,
  the part of a snapshot that is libvirt's, the disk's and Docker's own work; bare restore:
  the overlay copied back + `virsh restore` of the memory, until the VM answers over SSH
  (`bare_restore_*`, the VM alone); and the whole bare counterpart of an LTB restore
  (`bare_restore_full_*`, issue 10's baseline): the same VM restore, plus each container
  replaced by a `docker run` of its committed image with its ports plugged again (veths,
  addresses, OVS ports: bench/chain.py's bare deploy lines) until it reports ready;
- restore: `restore.yml` time and until the VM answers, for both snapshots (with memory the
  VM resumes; without it boots). The lab runs from the snapshot's topology, so its network and
  links stay and only its nodes are replaced.

    .venv/bin/python bench/vm.py [--repeat 1]

Results: a table on stdout and bench/results/vm-<timestamp>.json. Only the lab vm-bench and
its snapshots are created or removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import chain  # noqa: E402
from bench.measure import Measurement, measure  # noqa: E402
from ltb.allocation import Registry  # noqa: E402
from ltb.ssh import ssh_argv  # noqa: E402
from ltb.topology import load_lab  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
RESULTS = ROOT / "bench" / "results"
TOPOLOGY = ROOT / "tests" / "integration" / "topologies" / "mixed.lab.yml"
STATE_DIR = Path("/var/lib/ltb")
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
LAB = "vm-bench"
SNAPSHOT = "bench"


# A task's line in profile_tasks' summary: "<task name> ----- 1.23s".
TASK_TIME = re.compile(r"^(?P<task>.*?) -{3,} (?P<seconds>[0-9.]+)s$", re.MULTILINE)


def playbook(
    name: str, lab_file: Path, *extra: str, tasks: dict[str, float] | None = None
) -> Measurement:
    """Run a playbook, measured (bench/measure.py): its time, CPU and peak memory. With
    `tasks`, ansible.posix.profile_tasks times its tasks: `tasks` gets {task name: seconds}
    (the slowest 20)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    if tasks is not None:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", "inventory/", "-i", str(lab_file), name]
    with tempfile.NamedTemporaryFile(prefix="vm-bench-", suffix=".log") as log:
        done = measure([*argv, *extra], env, Path(log.name), ROOT)
        text = Path(log.name).read_text()
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{text[-5000:]}")
    if tasks is not None:
        for found in TASK_TIME.finditer(text):
            tasks[found["task"].strip()] = float(found["seconds"])
    return done


# The restore in place's one module run per lab (playbooks/restore.yml, ltb_snapshot
# action=restore): nodes removed, containers and VMs back, ports, ready, routes.
RESTORE_TASK = (
    "container_node : Nodes of the lab are restored in place, or its restore plan is known"
)


def record(result: dict[str, Any], key: str, run: Measurement) -> None:
    """A step's wall time, the CPU time and peak memory of its process tree and the machine's
    busy CPU time (QEMU and libvirtd are not in the tree: their work is in machine_cpu_s)."""
    result[f"{key}_s"] = round(run.wall_s, 2)
    result[f"{key}_cpu_s"] = run.cpu_s
    result[f"{key}_peak_mib"] = run.peak_mib
    result[f"{key}_machine_cpu_s"] = run.machine_cpu_s


def ssh_answers(address: str) -> bool:
    return (
        subprocess.run(
            # A TCG guest on a loaded machine takes 10 s and more to answer over SSH.
            ssh_argv(address, "true", key=SSH_KEY, connect_timeout=5),
            capture_output=True,
            timeout=90,
            check=False,
        ).returncode
        == 0
    )


class SshWatch:
    """Time from `start()` until the address answers over SSH, polled in a thread."""

    def __init__(self, address: str):
        self.address = address
        self.seconds: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> SshWatch:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            if ssh_answers(self.address):
                self.seconds = time.monotonic() - self._started
                return
            time.sleep(0.25)

    def wait(self, timeout: float) -> float | None:
        self._thread.join(timeout)
        self._stop.set()
        return self.seconds


# What a snapshot of the lab is without LTB: $1 domain, $2 directory, $3 overlay, then the
# containers to commit (image name = the container's name, tag "bare-snapshot"). The domain is
# left saved (off), as BARE_RESTORE finds it.
BARE_SNAPSHOT = (
    'domain="$1"; dir="$2"; overlay="$3"; shift 3'
    ' && virsh -c qemu:///system save "$domain" "$dir/vm.memory" --running'
    ' && cp --sparse=always "$overlay" "$dir/vm.qcow2"'
    ' && for c in "$@"; do docker commit "$c" "$c:bare-snapshot" >/dev/null || exit 1; done'
)
# What a restore of the VM is without LTB: the overlay copied back, the memory restored (the
# VM resumes). The containers keep running: a bare restore does not recreate them.
BARE_RESTORE = (
    'cp --sparse=always "$2/vm.qcow2" "$3"'
    ' && virsh -c qemu:///system restore "$2/vm.memory" --running'
)


def bare_containers_script(lab: Any, images: dict[str, str]) -> str:
    """The containers' counterpart of their commits in a bare restore: each container replaced
    by a `docker run` of its committed image (node -> image), its ports plugged again, then
    waited for until ready; bench/chain.py's bare deploy lines (its keys are in the image)."""
    lines = ["set -euo pipefail"]
    for node_name, image in images.items():
        node = lab.node(node_name)
        ends = [node.mgmt_host_name, *(i.host_name for i in node.interfaces)]
        lines.append(chain._q("docker", "rm", "-f", lab.container_name(node_name)) + " >/dev/null")
        for end in ends:  # the kernel may delete them late; their OVS ports stay
            lines.append(chain._q("ip", "link", "del", end) + " 2>/dev/null || true")
            lines.append(chain._q("ovs-vsctl", "--if-exists", "del-port", lab.bridge, end))
        for line in chain._node_lines(lab, node_name):
            if line.startswith("docker exec"):
                continue
            lines.append(
                line.replace(
                    f" {chain._q(chain.IMAGE)} >/dev/null", f" {chain._q(image)} >/dev/null"
                )
            )
    lines += [chain._ready_line(lab, node_name) for node_name in images]
    return "\n".join(lines) + "\n"


def bare(*argv: str) -> Measurement:
    """Run bare commands, measured like the playbooks."""
    with tempfile.NamedTemporaryFile(prefix="vm-bench-bare-", suffix=".log") as log:
        done = measure(list(argv), dict(os.environ), Path(log.name), ROOT)
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed:\n{Path(log.name).read_text()[-3000:]}")
    return done


def virsh(*argv: str) -> None:
    subprocess.run(["virsh", "-c", "qemu:///system", *argv], check=True, capture_output=True)


def delete_snapshots(lab_file: Path) -> None:
    for name in (SNAPSHOT, f"{SNAPSHOT}-disk"):
        playbook(
            "playbooks/snapshot.yml",
            lab_file,
            "-e",
            f"snapshot={name}",
            "-e",
            "snapshot_action=delete",
        )


def one_run(lab_file: Path) -> dict[str, Any]:
    # The allocation deploy will find (the registry gives a lab the same one again).
    lab = load_lab(lab_file, Registry(STATE_DIR).allocate)
    address = str(lab.node("vm").mgmt_ipv4.ip)
    domain = lab.container_name("vm")
    result: dict[str, Any] = {}

    watch = SshWatch(address).start()
    record(result, "deploy", playbook("playbooks/deploy.yml", lab_file))
    result["deploy_vm_ssh_s"] = round(watch.wait(300) or -1, 2)

    virsh("destroy", domain)
    started = time.monotonic()
    record(result, "bare_virsh_start", bare("virsh", "-c", "qemu:///system", "start", domain))
    watch = SshWatch(address)
    watch._started = started
    watch._thread.start()
    result["bare_virsh_start_ssh_s"] = round(watch.wait(300) or -1, 2)
    # The restarted VM's tap ports lost lab_links' external_ids: deploy again (converges).
    playbook("playbooks/deploy.yml", lab_file)

    for name, extra in ((SNAPSHOT, ()), (f"{SNAPSHOT}-disk", ("-e", "snapshot_vm_memory=false"))):
        key = "snapshot" if name == SNAPSHOT else "snapshot_disk_only"
        record(
            result,
            key,
            playbook("playbooks/snapshot.yml", lab_file, "-e", f"snapshot={name}", *extra),
        )
        manifest = json.loads((STATE_DIR / "snapshots" / LAB / name / "snapshot.json").read_text())
        result[f"{key}_bytes"] = {node: state["bytes"] for node, state in manifest["nodes"].items()}
        result[f"{key}_module_s"] = manifest["seconds"]
        # Per node: reading its runtime state (a VM over SSH) and saving it.
        result[f"{key}_node_s"] = {
            node: state.get("seconds") for node, state in manifest["nodes"].items()
        }

    overlay = STATE_DIR / "labs" / LAB / "vms" / "vm" / "disk.qcow2"
    containers = [lab.container_name(name) for name in ("c1", "c2")]
    committed = {name: f"{lab.container_name(name)}:bare-snapshot" for name in ("c1", "c2")}
    try:
        with tempfile.TemporaryDirectory(dir=STATE_DIR) as saved_to:
            record(
                result,
                "bare_snapshot",
                bare(
                    "sh", "-c", BARE_SNAPSHOT, "bare", domain, saved_to, str(overlay), *containers
                ),
            )
            started = time.monotonic()
            record(
                result,
                "bare_restore",
                bare("sh", "-c", BARE_RESTORE, "bare", domain, saved_to, str(overlay)),
            )
            watch = SshWatch(address)
            watch._started = started
            watch._thread.start()
            result["bare_restore_vm_ssh_s"] = round(watch.wait(300) or -1, 2)
            # The VM saved again (not timed), then the whole bare restore: VM and containers.
            virsh("save", domain, f"{saved_to}/vm.memory", "--running")
            subprocess.run(
                ["cp", "--sparse=always", str(overlay), f"{saved_to}/vm.qcow2"], check=True
            )
            script = BARE_RESTORE + " && " + bare_containers_script(lab, committed)
            started = time.monotonic()
            record(
                result,
                "bare_restore_full",
                bare("bash", "-c", script, "bare", domain, saved_to, str(overlay)),
            )
            watch = SshWatch(address)
            watch._started = started
            watch._thread.start()
            result["bare_restore_full_vm_ssh_s"] = round(watch.wait(300) or -1, 2)
        # restore.yml removes the lab's nodes and deploys them again, wired to the links.
        saved = STATE_DIR / "snapshots" / LAB / SNAPSHOT / "topology.lab.yml"
        for name in (f"{SNAPSHOT}-disk", SNAPSHOT):
            key = "restore" if name == SNAPSHOT else "restore_disk_only"
            restore_started = time.monotonic()
            tasks: dict[str, float] = {}
            record(
                result,
                key,
                playbook("playbooks/restore.yml", saved, "-e", f"snapshot={name}", tasks=tasks),
            )
            result[f"{key}_tasks_s"] = tasks
            # After a restore the VM answers by the end of the playbook (ready.yml or the
            # resume module waits for it).
            result[f"{key}_vm_ssh_s"] = (
                round(time.monotonic() - restore_started, 2) if ssh_answers(address) else -1
            )
            if name == SNAPSHOT:
                result["restore_module_s"] = tasks.get(RESTORE_TASK, -1)
    finally:
        # After the restores: the containers the bare restore ran used these images.
        for image in committed.values():
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)
    delete_snapshots(lab_file)
    record(result, "remove", playbook("playbooks/remove.yml", lab_file))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    accel = json.loads((STATE_DIR / "vm-accel.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        lab_file = Path(tmp) / f"{LAB}.lab.yml"
        lab_file.write_text(TOPOLOGY.read_text().replace("name: NAME", f"name: {LAB}"))
        runs = []
        try:
            for _ in range(args.repeat):
                runs.append(one_run(lab_file))
        finally:
            playbook("playbooks/remove.yml", lab_file)
            with contextlib.suppress(SystemExit):
                delete_snapshots(lab_file)
    report = {"accel": accel, "cpus": os.cpu_count(), "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"vm-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"acceleration: {accel['accel']} ({accel['reason']})")
    for key in runs[0]:
        print(f"{key:26} " + "  ".join(str(run[key]) for run in runs))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
