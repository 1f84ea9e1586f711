# LTB module_utils: a lab's container nodes made as wanted, awaited or removed, several at a
# time (standard library only). ltb_lab_containers (deploy) and ltb_snapshot action=restore (a
# restore in place, each node from its committed snapshot image) both run this one copy.
from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.ltb_container_files import (
    StartupFileError,
    files_to_write,
    wanted_files,
    write_files,
)
from ansible.module_utils.ltb_docker import DockerError
from ansible.module_utils.ltb_lab_absent import containers_absent
from ansible.module_utils.ltb_veth import Netlink, VethError, ensure_present


class NodeError(Exception):
    """A failure of one node; the message names it."""


# The inventory's `ltb_node` keys of a container node the code reads, with their defaults.
NODE_SPEC = dict(
    name=dict(type="str", required=True),
    container_name=dict(type="str", required=True),
    image=dict(type="str"),
    cpus=dict(type="float"),
    memory_bytes=dict(type="int"),
    interfaces=dict(type="list", elements="dict", default=[]),
    files=dict(type="list", elements="dict", default=[]),
)


def normalise_nodes(nodes):
    """Each node as NODE_SPEC's keys; a node without a required key is an error naming it."""
    found = []
    for index, node in enumerate(nodes):
        missing = [
            key for key, spec in NODE_SPEC.items() if spec.get("required") and not node.get(key)
        ]
        if missing:
            raise NodeError(f"nodes[{index}] lacks {', '.join(missing)}")
        found.append({key: node.get(key, spec.get("default")) for key, spec in NODE_SPEC.items()})
    return found


AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
READY_FILE = "/run/ltb-node-ready"
LTB_IMAGE_LABEL = "ltb.image.definition"


# The wanted state ---------------------------------------------------------------------------


def node_image(params, node):
    return params["images"].get(node["name"]) or node.get("image") or params["default_image"]


def container_config(params, node, image):
    """The Engine API's create body of the node's container: the settings roles/container_node
    gave it with docker_container (network none, labels, capabilities, sysctls, limits, env,
    restart no)."""
    host_config = {
        "NetworkMode": "none",
        "CapAdd": list(params["capabilities"]),
        "Sysctls": {key: str(value) for key, value in params["sysctls"].items()},
        "RestartPolicy": {"Name": "no"},
    }
    if node.get("cpus"):
        host_config["NanoCpus"] = round(float(node["cpus"]) * 1e9)
    if node.get("memory_bytes"):
        host_config["Memory"] = int(node["memory_bytes"])
    interfaces = " ".join(i["name"] for i in node.get("interfaces") or [])
    return {
        "Image": image,
        "Hostname": node["name"],
        "Labels": {"ltb.lab": params["lab"], "ltb.node": node["name"]},
        "Env": [f"LTB_INTERFACES={interfaces}", f"LTB_WAIT_SECONDS={params['ready_timeout']}"],
        "HostConfig": host_config,
    }


def node_files(params, node):
    if not params["copy_files"]:
        return []
    files = list(node.get("files") or [])
    keys = params["authorized_keys"]
    if keys and AUTHORIZED_KEYS not in {f.get("path") for f in files}:
        content = "".join(f"{line}\n" for line in keys)
        files.append({"path": AUTHORIZED_KEYS, "content": content, "mode": "0600"})
    return files


def _capability(name):
    name = name.upper()
    return name if name.startswith("CAP_") else f"CAP_{name}"


def differences(config, image_id, have):
    """What differs between the wanted container and the one there (empty: the same)."""
    wanted_host, host = config["HostConfig"], have.get("HostConfig") or {}
    labels = (have.get("Config") or {}).get("Labels") or {}
    env = set((have.get("Config") or {}).get("Env") or [])
    checks = (
        ("image", image_id, have.get("Image")),
        ("hostname", config["Hostname"], (have.get("Config") or {}).get("Hostname")),
        ("labels", config["Labels"], {k: labels.get(k) for k in config["Labels"]}),
        ("env", set(config["Env"]), env & set(config["Env"])),
        ("network", "none", host.get("NetworkMode")),
        (
            "capabilities",
            {_capability(c) for c in wanted_host["CapAdd"]},
            {_capability(c) for c in host.get("CapAdd") or []},
        ),
        ("sysctls", wanted_host["Sysctls"], host.get("Sysctls") or {}),
        ("cpus", wanted_host.get("NanoCpus", 0), host.get("NanoCpus") or 0),
        ("memory", wanted_host.get("Memory", 0), host.get("Memory") or 0),
        ("restart", "no", (host.get("RestartPolicy") or {}).get("Name") or "no"),
    )
    return [name for name, want, got in checks if want != got]


def committed_from(docker, image_id, ancestor_id, depth=64):
    """True when image `image_id` was committed from `ancestor_id`, through any number of
    commits (a snapshot of a restored node): Docker keeps each commit's parent image."""
    for _ in range(depth):
        record = docker.image(image_id) or {}
        image_id = record.get("Parent")
        if not image_id:
            return False
        if image_id == ancestor_id:
            return True
    return False


# Doing the difference, one node per thread ---------------------------------------------------


class Lab:
    """A lab's container nodes on this hypervisor. `params`: ltb_lab_containers' arguments
    (lab, images, default_image, copy_files, authorized_keys, capabilities, sysctls,
    ready_timeout, hypervisor, parallel)."""

    def __init__(self, params, docker, check_mode):
        self.params = params
        self.docker = docker
        self.check_mode = check_mode
        self.created_host_ends = []  # appended to by the nodes' threads (list.append is atomic)

    def images(self, nodes):
        """image name -> inspect record of every node's image; a missing one is an error that
        names its nodes."""
        by_image = {}
        for node in nodes:
            by_image.setdefault(node_image(self.params, node), []).append(node["name"])
        found, errors = {}, []
        for image, names in sorted(by_image.items()):
            record = self.docker.image(image)
            if record is None:
                errors.append(
                    f"node {', '.join(names)}: image '{image}' is not on hypervisor "
                    f"{self.params['hypervisor']}. Build it (make up builds "
                    f"{self.params['default_image']}) or load it with docker load."
                )
            found[image] = record
        if errors:
            raise NodeError("; ".join(errors))
        return found

    def converge(self, node, image_record, host_links):
        """Makes one node as wanted; returns (actions, before, after) lines."""
        name, container = node["name"], node["container_name"]
        image = node_image(self.params, node)
        config = container_config(self.params, node, image)
        have = self.docker.inspect(container)
        actions = []
        fresh = False
        if have is not None:
            differ = differences(config, image_record["Id"], have)
            # A node restored from a snapshot runs the image committed from it: the wanted
            # image and the node's changes. Replacing it by the bare image would lose them.
            if "image" in differ and committed_from(self.docker, have["Image"], image_record["Id"]):
                differ.remove("image")
            if differ:
                actions.append(f"{name}: recreate container {container} ({', '.join(differ)})")
                if not self.check_mode:
                    self.docker.remove(container)
                have, fresh = None, True
        if have is None:
            if not fresh:
                actions.append(f"{name}: create container {container} from {image}")
            if self.check_mode:
                return actions + self._would_wire(node)
            self.docker.create(container, config)
            have = {"State": {"Running": False}}
        if not have["State"]["Running"]:
            if have.get("Id"):
                actions.append(f"{name}: start container {container}")
            if self.check_mode:
                return actions + self._would_wire(node)
            self.docker.start(container)
            have = self.docker.inspect(container)
            if not have or not have["State"]["Running"]:
                code = (have or {}).get("State", {}).get("ExitCode")
                raise NodeError(
                    f"node {name}: container {container} stopped right after it started (exit "
                    f"code {code}); see `docker logs {container}`."
                )
        wanted = wanted_files(node_files(self.params, node))
        if wanted:
            todo = files_to_write(self.docker, container, wanted)
            actions += [f"{name}: write {f[0]}" for f in todo]
            if todo and not self.check_mode:
                write_files(self.docker, container, todo)
        interfaces = [
            {key: i.get(key) for key in ("name", "host_name", "addresses")}
            for i in node.get("interfaces") or []
        ]
        veths = ensure_present(
            self.params["lab"],
            name,
            have["State"]["Pid"],
            interfaces,
            self.check_mode,
            host_links,
            self.created_host_ends,
        )
        return actions + [f"{name}: {action}" for action in veths]

    def _would_wire(self, node):
        name = node["name"]
        files = [f"{name}: write {f['path']}" for f in node_files(self.params, node)]
        veths = [
            f"{name}: create {i['host_name']} <-> {name}:{i['name']}"
            for i in node.get("interfaces") or []
        ]
        return files + veths

    def present(self, nodes):
        images = self.images(nodes)
        host_links = Netlink().links()

        def one(node):
            try:
                return self.converge(node, images[node_image(self.params, node)], host_links), None
            except NodeError as error:
                return [], str(error)
            except (DockerError, StartupFileError, VethError) as error:
                return [], f"node {node['name']}: {error}"

        actions, errors = run_all(self.params["parallel"], one, nodes)
        if not self.check_mode:
            forget_ports(self.created_host_ends)
        return actions, errors

    def wait_ready(self, nodes):
        """Waits until every node of an LTB image has written its ready file (read through the
        archive endpoint: nothing runs in the node). Returns the errors."""
        images = self.images(nodes)
        pending = {
            node["name"]: node["container_name"]
            for node in nodes
            if LTB_IMAGE_LABEL
            in ((images[node_image(self.params, node)].get("Config") or {}).get("Labels") or {})
        }
        deadline = time.monotonic() + self.params["ready_timeout"]
        errors = []
        while pending:
            for name, container in list(pending.items()):
                if self.docker.path_stat(container, READY_FILE) is not None:
                    del pending[name]
                    continue
                state = (self.docker.inspect(container) or {}).get("State") or {}
                if not state.get("Running"):
                    errors.append(
                        f"node {name}: container {container} stopped before it was ready (exit "
                        f"code {state.get('ExitCode')}); see `docker logs {container}`."
                    )
                    del pending[name]
            if not pending:
                break
            if time.monotonic() > deadline:
                errors += [
                    f"node {name}: not ready after {self.params['ready_timeout']} s (no "
                    f"{READY_FILE}); see `docker logs {container}`."
                    for name, container in sorted(pending.items())
                ]
                break
            time.sleep(0.5)
        return errors

    def absent(self):
        """Removes every container of the lab and its untagged images; returns (removed, errors,
        images)."""
        removed, images, errors = containers_absent(
            self.docker, self.params["lab"], self.params["parallel"], self.check_mode
        )
        return removed, errors, images


def forget_ports(host_ends):
    """Drops the Open vSwitch ports of host ends made anew. A port row outlives its interface
    (e.g. after `docker rm -f`), and the userspace datapath keeps using the vanished interface
    when one of the same name comes back: the node's link would stay dead. Without the row,
    lab_links adds the port afresh. One ovs-vsctl transaction for the lab."""
    if not host_ends:
        return
    command = [_ovs_vsctl()]
    for name in host_ends:
        command += ["--", "--if-exists", "del-port", name]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise VethError(f"ovs-vsctl del-port of new host ends failed: {done.stderr.strip()}")


def _ovs_vsctl():
    path = shutil.which("ovs-vsctl") or shutil.which("ovs-vsctl", path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        raise VethError("ovs-vsctl is not installed on the hypervisor")
    return path


def run_all(parallel, work, items):
    """Runs work(item) -> (lines, error) for all items, several at a time; (lines, errors)."""
    if not items:
        return [], []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
        results = list(pool.map(work, items))
    lines = [line for result, _ in results for line in result]
    return lines, [error for _, error in results if error]
