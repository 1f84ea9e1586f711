"""What ltb_lab_containers wants of a lab's containers, and when a container there differs
(want/have): the container settings roles/container_node always gave, and which files go in."""

from __future__ import annotations

import copy

from ltb.module_utils import load

containers = load("ltb_containers")  # the one copy ltb_lab_containers runs

PARAMS = {
    "lab": "pl-unit",
    "images": {},
    "default_image": "ltb/node:latest",
    "copy_files": True,
    "authorized_keys": ["ssh-ed25519 AAAA platform", "ssh-ed25519 BBBB user"],
    "capabilities": ["NET_ADMIN", "SYS_ADMIN"],
    "sysctls": {"net.ipv4.ip_forward": 1},
    "ready_timeout": 120,
}
NODE = {
    "name": "r1",
    "container_name": "ltb-pl-unit.r1",
    "image": None,
    "cpus": 0.5,
    "memory_bytes": 268435456,
    "interfaces": [{"name": "eth0"}, {"name": "eth1"}],
    "files": [{"path": "/etc/frr/frr.conf", "content": "hostname r1\n"}],
}


def inspected(config, image_id="sha256:1"):
    """A container as Docker reports it after creating it from `config`: capabilities with
    CAP_, the image's own environment beside ours, the image as its ID."""
    host = copy.deepcopy(config["HostConfig"])
    host["CapAdd"] = [f"CAP_{c}" for c in host["CapAdd"]]
    return {
        "Image": image_id,
        "Config": {
            "Hostname": config["Hostname"],
            "Labels": {**config["Labels"], "ltb.image.definition": "abc"},
            "Env": ["PATH=/usr/sbin:/usr/bin", *config["Env"]],
        },
        "HostConfig": host,
    }


def test_container_has_the_settings_the_role_always_gave():
    config = containers.container_config(PARAMS, NODE, "ltb/node:latest")
    assert config["Image"] == "ltb/node:latest" and config["Hostname"] == "r1"
    assert config["Labels"] == {"ltb.lab": "pl-unit", "ltb.node": "r1"}
    assert config["Env"] == ["LTB_INTERFACES=eth0 eth1", "LTB_WAIT_SECONDS=120"]
    assert config["HostConfig"] == {
        "NetworkMode": "none",
        "CapAdd": ["NET_ADMIN", "SYS_ADMIN"],
        "Sysctls": {"net.ipv4.ip_forward": "1"},
        "RestartPolicy": {"Name": "no"},
        "NanoCpus": 500_000_000,
        "Memory": 268435456,
    }


def test_a_container_as_docker_reports_it_does_not_differ():
    config = containers.container_config(PARAMS, NODE, "ltb/node:latest")
    assert containers.differences(config, "sha256:1", inspected(config)) == []


def test_a_new_image_or_other_limits_make_the_container_differ():
    config = containers.container_config(PARAMS, NODE, "ltb/node:latest")
    have = inspected(config)
    assert containers.differences(config, "sha256:2", have) == ["image"]
    have["HostConfig"]["Memory"] = 0
    have["Config"]["Env"].remove("LTB_WAIT_SECONDS=120")
    assert containers.differences(config, "sha256:1", have) == ["env", "memory"]


def test_a_restore_image_wins_over_the_nodes_own_and_the_default():
    assert containers.node_image(PARAMS, NODE) == "ltb/node:latest"
    assert containers.node_image(PARAMS, {**NODE, "image": "x/y:1"}) == "x/y:1"
    restored = {**PARAMS, "images": {"r1": "ltb-snapshot/pl-unit/r1:s1"}}
    assert containers.node_image(restored, {**NODE, "image": "x/y:1"}).endswith(":s1")


def test_keys_go_in_as_root_authorized_keys_unless_the_node_gives_that_file():
    files = containers.node_files(PARAMS, NODE)
    assert files[-1] == {
        "path": "/root/.ssh/authorized_keys",
        "content": "ssh-ed25519 AAAA platform\nssh-ed25519 BBBB user\n",
        "mode": "0600",
    }
    own = {"path": "/root/.ssh/authorized_keys", "content": "mine\n"}
    assert containers.node_files(PARAMS, {**NODE, "files": [own]}) == [own]
    assert containers.node_files({**PARAMS, "copy_files": False}, NODE) == []
