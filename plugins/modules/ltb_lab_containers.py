#!/usr/bin/python
# LTB module: all container nodes of a lab, in one module run on the hypervisor.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_containers
short_description: The container nodes of a lab, created, wired, ready or removed at once
description:
  - Runs on the hypervisor with its own python3 (the Docker Engine API over its socket, C(ip)
    and C(nsenter); plugins/module_utils/ltb_docker.py, ltb_container_files.py, ltb_veth.py).
    One module run for the whole lab, several nodes at a time, instead of module runs per node.
  - O(state=preflight) checks that the image of every node is on the hypervisor, and changes
    nothing.
  - O(state=present) takes the wanted state of every container node of the lab (computed on
    the controller from the inventory), compares it with the lab's containers (found by the
    label C(ltb.lab)), their startup files and their veths, and does only the difference. A
    container that is missing or whose settings differ is (re)created and started, a stopped
    one started, files that differ written (one archive), missing interfaces and addresses
    made. Then, unless O(wait=false), it waits until every node of an LTB image (one labelled
    C(ltb.image.definition)) has written C(/run/ltb-node-ready).
  - With O(ports), O(state=present) wires the lab's ports before it waits (what
    ltb_lab_links does), so a lab whose nodes here are all containers deploys in this one run.
  - O(state=ready) only waits, like the end of O(state=present).
  - O(state=absent) removes every container labelled with the lab (also those no topology
    names any more), and the lab's untagged snapshot images.
  - Converges; check mode reports what would change (with O(nodes) differences in the diff).
options:
  lab:
    description: Lab name (the containers' C(ltb.lab) label).
    type: str
    required: true
  state:
    description: What to do (see above).
    type: str
    choices: [preflight, present, ready, absent]
    default: present
  nodes:
    description:
      - The lab's container nodes, each its inventory C(ltb_node) (name, container_name, image,
        cpus, memory_bytes, interfaces with name/host_name/addresses, files).
    type: list
    elements: dict
    default: []
  images:
    description: Image per node name, instead of the node's own (a restore's snapshot images).
    type: dict
    default: {}
  default_image:
    description: Image of a node that names none.
    type: str
    default: ltb/node:latest
  copy_files:
    description: Whether startup files are put into the nodes (a restore keeps the snapshot's).
    type: bool
    default: true
  authorized_keys:
    description:
      - Lines of C(/root/.ssh/authorized_keys) (mode 0600) in every node whose files do not
        give that path; none, no file.
    type: list
    elements: str
    default: []
  capabilities:
    description: Linux capabilities added to every node.
    type: list
    elements: str
    default: []
  sysctls:
    description: Kernel settings of every node's network namespace.
    type: dict
    default: {}
  ready_timeout:
    description: Seconds to wait for the nodes to be ready (given to them as C(LTB_WAIT_SECONDS)).
    type: int
    default: 120
  wait:
    description: With O(state=present), whether to wait for the nodes to be ready.
    type: bool
    default: true
  hypervisor:
    description: The hypervisor's inventory name, for messages.
    type: str
    default: this hypervisor
  bridge:
    description: The lab's bridge (with O(ports)).
    type: str
  ports:
    description:
      - With O(state=present), the lab's ports to wire once the interfaces are made (the
        lab network's C(ports), as ltb_lab_links takes them); none, no wiring.
    type: list
    elements: dict
  parallel:
    description: How many nodes are handled at the same time.
    type: int
    default: 8
"""

RETURN = r"""
actions:
  description: What changed (in check mode, what would), one line per change, by node.
  type: list
  elements: str
  returned: always
removed:
  description: With O(state=absent), names of the containers removed.
  type: list
  elements: str
  returned: when state is absent
"""

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_container_files import (
    StartupFileError,
    files_to_write,
    wanted_files,
    write_files,
)
from ansible.module_utils.ltb_docker import Docker, DockerError
from ansible.module_utils.ltb_links import wire
from ansible.module_utils.ltb_ovs import OvsError
from ansible.module_utils.ltb_lab_absent import containers_absent
from ansible.module_utils.ltb_veth import Netlink, VethError, ensure_present

AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
READY_FILE = "/run/ltb-node-ready"
LTB_IMAGE_LABEL = "ltb.image.definition"


class NodeError(Exception):
    """A failure of one node; the message names it."""


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


# Doing the difference, one node per thread ---------------------------------------------------


class Lab:
    def __init__(self, module, docker):
        self.module = module
        self.params = module.params
        self.docker = docker
        self.check_mode = module.check_mode
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


def main():
    node_spec = dict(
        name=dict(type="str", required=True),
        container_name=dict(type="str", required=True),
        image=dict(type="str"),
        cpus=dict(type="float"),
        memory_bytes=dict(type="int"),
        interfaces=dict(type="list", elements="dict", default=[]),
        files=dict(type="list", elements="dict", default=[]),
    )
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            state=dict(
                type="str", choices=["preflight", "present", "ready", "absent"], default="present"
            ),
            nodes=dict(type="list", elements="dict", default=[]),
            images=dict(type="dict", default={}),
            default_image=dict(type="str", default="ltb/node:latest"),
            copy_files=dict(type="bool", default=True),
            authorized_keys=dict(type="list", elements="str", default=[], no_log=False),
            capabilities=dict(type="list", elements="str", default=[]),
            sysctls=dict(type="dict", default={}),
            ready_timeout=dict(type="int", default=120),
            wait=dict(type="bool", default=True),
            hypervisor=dict(type="str", default="this hypervisor"),
            bridge=dict(type="str"),
            ports=dict(type="list", elements="dict"),
            parallel=dict(type="int", default=8),
        ),
        required_by={"ports": "bridge"},
        supports_check_mode=True,
    )
    params = module.params
    # Each node as the documented suboptions, so a missing key fails here, naming the node.
    nodes = []
    for index, node in enumerate(params["nodes"]):
        missing = [
            key for key, spec in node_spec.items() if spec.get("required") and not node.get(key)
        ]
        if missing:
            module.fail_json(msg=f"nodes[{index}] lacks {', '.join(missing)}")
        nodes.append({key: node.get(key, spec.get("default")) for key, spec in node_spec.items()})
    lab = Lab(module, Docker())
    state = params["state"]
    try:
        if state == "absent":
            removed, errors, images = lab.absent()
            result = dict(
                changed=bool(removed or images),
                removed=removed,
                actions=[f"remove container {c}" for c in removed]
                + [f"remove untagged image {i}" for i in images],
            )
            if errors:
                module.fail_json(msg="containers not removed: " + "; ".join(errors), **result)
            module.exit_json(**result)
        if state == "preflight":
            lab.images(nodes)
            module.exit_json(changed=False, actions=[])
        actions, errors = [], []
        if state == "present":
            actions, errors = lab.present(nodes)
            if params["ports"] is not None and not errors:
                wired, _, _ = wire(
                    params["lab"], params["bridge"], params["ports"], module.check_mode
                )
                actions += [f"wire port {port['name']} in VLAN {port['vlan']}" for port in wired]
        if not errors and not module.check_mode and (state == "ready" or params["wait"]):
            errors = lab.wait_ready(nodes)
    except NodeError as error:
        module.fail_json(msg=str(error))
    except DockerError as error:
        module.fail_json(msg=f"lab {params['lab']}: {error}")
    except VethError as error:
        module.fail_json(msg=f"lab {params['lab']}: {error}")
    except OvsError as error:
        module.fail_json(msg=f"lab {params['lab']}: links not wired: {error}")
    result = dict(changed=bool(actions), actions=actions)
    if module._diff and actions:
        result["diff"] = dict(before="", after="".join(f"{line}\n" for line in actions))
    if errors:
        module.fail_json(msg="; ".join(errors), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
