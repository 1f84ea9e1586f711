"""A VM node on another hypervisor is reached through that hypervisor: only it reaches the VM's
management address. group_vars/vms.yml gives Ansible a ProxyCommand made of the hypervisor's
own connection settings; a VM on the local hypervisor connects directly.

The real `ansible` renders the variable for each VM host of a spread topology (the debug
action runs on the controller and connects to nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
TOPOLOGY = """\
name: vj-jump
nodes:
  here: {kind: vm, interfaces: {eth1: {ipv4: 10.0.1.1/30}}}
  there: {kind: vm, hypervisor: hv2, interfaces: {eth1: {ipv4: 10.0.1.2/30}}}
  keyed: {kind: vm, hypervisor: hv3, interfaces: {eth1: {ipv4: 10.0.2.2/30}}}
links:
  - endpoints: [here:eth1, there:eth1]
"""
HYPERVISORS = {
    "hypervisors": {
        "hosts": {
            "localhost": {"ltb_tunnel_address": "192.0.2.1"},
            "hv2": {
                "ansible_connection": "ssh",
                "ansible_host": "192.0.2.7",
                "ansible_user": "ops",
                "ansible_port": 2222,
                "ltb_tunnel_address": "192.0.2.7",
            },
            "hv3": {
                "ansible_host": "hv3.example.net",
                "ansible_ssh_private_key_file": "/etc/ltb/hv3_key",
                "ltb_tunnel_address": "192.0.2.8",
            },
        }
    }
}


def rendered_extra_args(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "vj-jump.lab.yml").write_text(TOPOLOGY)
    (tmp_path / "hypervisors.yaml").write_text(yaml.safe_dump(HYPERVISORS))
    shown = subprocess.run(
        [BIN / "ansible", "-i", "inventory/", "-i", tmp_path / "hypervisors.yaml",
         "-i", tmp_path / "vj-jump.lab.yml", "vms", "-o",
         "-m", "ansible.builtin.debug", "-a", "var=ansible_ssh_extra_args"],
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
             "LTB_STATE_DIR": str(tmp_path / "state"), "ANSIBLE_INVENTORY_CACHE": "false"},
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    # One line per host: `there | SUCCESS => {"ansible_ssh_extra_args": "...", ...}`.
    args = {}
    for line in shown.stdout.splitlines():
        host, _, rest = line.partition(" | SUCCESS => ")
        if rest:
            args[host] = str(yaml.safe_load(rest)["ansible_ssh_extra_args"] or "")
    return args


def test_a_vm_on_another_hypervisor_is_reached_through_it_and_a_local_one_directly(tmp_path):
    args = rendered_extra_args(tmp_path)
    assert args["here"] == ""
    assert args["there"] == (
        '-o ProxyCommand="ssh -i /var/lib/ltb/ssh/id_ed25519 -o StrictHostKeyChecking=no'
        ' -o UserKnownHostsFile=/dev/null -o BatchMode=yes -p 2222 -W %h:%p ops@192.0.2.7"'
    )
    # The hypervisor's own key and address; root and port 22 when it names none.
    assert "-i /etc/ltb/hv3_key " in args["keyed"]
    assert args["keyed"].endswith('-p 22 -W %h:%p root@hv3.example.net"')
