# LTB module_utils: the VM nodes of one lab on its hypervisor, checked and deployed in one
# module run (ltb_lab_vms), several at a time. Standard library only.
#
# Per node: its image is there (and the acceleration known) -> its directory -> its disk, a
# copy-on-write overlay of the image's build directory (or the snapshot's copy of its overlay,
# when deployed from a snapshot) -> its config drive (ltb_config_drive) -> its domain defined
# from the XML rendered here -> started (or resumed from the snapshot's memory; should that
# fail, booted from the disk). Each step acts only when what is there differs from what must
# be, so a second run changes nothing. Waiting until a VM answers is not done here: the
# per-node ready plays (roles/vm_node/tasks/ready.yml) reach the node itself.
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from xml.sax.saxutils import escape, quoteattr

from ansible.module_utils.ltb_config_drive import mac_address, render, write
from ansible.module_utils.ltb_names import LAB_NAME
from ansible.module_utils.ltb_module import failure

# An image name as ltb.topology allows it: it names a directory under the image root.
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
METADATA_NS = "https://ltb.invalid/libvirt/1"
DEFINITION = re.compile(r'definition="([0-9a-f]{16})"')
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
NO_DOMAIN = ("failed to get domain", "Domain not found")


class VmError(RuntimeError):
    """What stops a VM of the lab from being deployed; the message names node and hypervisor."""


class Hypervisor:
    """Where the VMs run and how they are made: everything but the nodes themselves."""

    def __init__(
        self,
        name,
        state_dir,
        image_root,
        default_image,
        accel="auto",
        libvirt_uri="qemu:///system",
        bridge="",
        default_cpus=1,
        default_memory_bytes=256 * 1024 * 1024,
        kernel_cmdline="console=ttyS0 rw panic=10",
        authorized_keys=(),
        parallel=4,
    ):
        self.name = name
        self.state_dir = os.path.abspath(state_dir)
        self.image_root = os.path.abspath(image_root)
        self.default_image = default_image
        self.accel = accel
        self.libvirt_uri = libvirt_uri
        self.bridge = bridge
        self.default_cpus = default_cpus
        self.default_memory_bytes = default_memory_bytes
        self.kernel_cmdline = kernel_cmdline
        self.authorized_keys = list(authorized_keys)
        self.parallel = max(1, parallel)

    def virsh(self, *args, timeout=120):
        done = subprocess.run(
            ["virsh", "-c", self.libvirt_uri, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise VmError(f"virsh {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout


def _run(*argv, timeout=300):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise VmError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


# Checks -----------------------------------------------------------------------------------------


def domain_type(where):
    """kvm or qemu: the setting, or with `auto` what the hypervisor's probe found (vm_image)."""
    if where.accel != "auto":
        return where.accel
    probe = os.path.join(where.state_dir, "vm-accel.json")
    try:
        with open(probe) as source:
            return json.load(source)["accel"]
    except (OSError, ValueError, KeyError):
        raise VmError(
            f"ltb_vm_accel is auto but hypervisor {where.name} has no readable {probe}: run "
            "make up (playbooks/images.yml probes it) or set ltb_vm_accel to kvm or qemu"
        ) from None


def image_dir(node, where):
    image = node.get("image") or where.default_image
    if not IMAGE_NAME.fullmatch(image):
        raise VmError(f"node {node['name']}: VM image name {image!r} is not allowed")
    return image, os.path.join(where.image_root, image)


def check(lab, nodes, where, restore=None):
    """Everything the lab's VMs need that deploy does not make: (domain type, errors). Reads
    only."""
    restore = restore or {}
    errors = []
    if not LAB_NAME.fullmatch(lab):
        errors.append(f"lab name {lab!r} is not allowed")
    for node in nodes:
        try:
            image, directory = image_dir(node, where)
        except VmError as error:
            errors.append(str(error))
            continue
        if not os.path.isfile(os.path.join(directory, "disk.qcow2")):
            errors.append(
                f"node {node['name']}: VM image '{image}' is not on hypervisor {where.name} "
                f"(no {directory}/disk.qcow2). Build it (make up builds {where.default_image}) "
                "or put a disk image there."
            )
        for part in ("disk", "memory"):
            saved = (restore.get(node["name"]) or {}).get(part)
            if saved and not os.path.isfile(saved):
                errors.append(f"node {node['name']}: the snapshot's {part} {saved} is gone")
        for key in ("dir", "disk", "config_drive", "console_log"):
            path = os.path.normpath(os.path.join(where.state_dir, node["vm"][key]))
            if not path.startswith(os.path.join(where.state_dir, "labs", lab) + os.sep):
                errors.append(f"node {node['name']}: {key} {path} is outside lab {lab}'s directory")
    try:
        kind = domain_type(where)
    except VmError as error:
        errors.append(str(error))
        kind = None
    return kind, errors


# What each VM must be ---------------------------------------------------------------------------


def node_files(node, authorized_keys):
    """The node's startup files, with root's authorized_keys (the platform's and users' keys)
    unless the topology gives that file itself."""
    files = [
        {"path": f["path"], "content": f["content"], "mode": f.get("mode") or "0644"}
        for f in node.get("files") or []
    ]
    if authorized_keys and AUTHORIZED_KEYS not in [f["path"] for f in files]:
        content = "\n".join(authorized_keys) + "\n"
        files.append({"path": AUTHORIZED_KEYS, "content": content, "mode": "0600"})
    return files


def config_drive(node, where):
    """The config drive's bytes: the node's name, interfaces with their MACs, startup files."""
    macs = node["vm"]["macs"]
    interfaces = [
        {
            "name": i["name"],
            "mac": macs.get(i["host_name"]) or mac_address(i["host_name"]),
            "addresses": list(i.get("addresses") or []),
        }
        for i in node["interfaces"]
    ]
    data, _config_id = render(node["name"], interfaces, node_files(node, where.authorized_keys))
    return data


def paths(node, where):
    return {
        key: os.path.join(where.state_dir, node["vm"][key])
        for key in ("dir", "disk", "config_drive", "console_log")
    }


def image_base(node, where):
    """(build directory, whether it boots a kernel directly). Overlays name the build they
    were made from, not the image's link: rebuilding the image leaves running labs and
    snapshots on their own base."""
    _image, directory = image_dir(node, where)
    base = os.path.realpath(directory) if os.path.islink(directory) else directory
    return base, os.path.exists(os.path.join(base, "vmlinuz"))


def domain_xml(lab, node, where, kind, base, kernel):
    """The node's libvirt domain, its name, UUID and metadata carrying the lab's identity, and
    a hash of the rest in its metadata (`definition`): an unchanged definition is not defined
    again."""
    vm = node["vm"]
    where_is = paths(node, where)
    memory = int(node.get("memory_bytes") or where.default_memory_bytes)
    vcpus = math.ceil(float(node.get("cpus") or where.default_cpus))
    a = quoteattr
    if kernel:
        boot = [
            f"    <kernel>{escape(base)}/vmlinuz</kernel>",
            f"    <initrd>{escape(base)}/initrd.img</initrd>",
            f"    <cmdline>{escape(where.kernel_cmdline)}</cmdline>",
        ]
    else:
        boot = ["    <boot dev='hd'/>"]
    interfaces = []
    for interface in node["interfaces"]:
        host_name = interface["host_name"]
        mac = vm["macs"].get(host_name) or mac_address(host_name)
        if interface.get("vlan") is not None:
            interfaces += [
                "    <interface type='bridge'>",
                f"      <source bridge={a(where.bridge)}/>",
                "      <virtualport type='openvswitch'>",
                f"        <parameters interfaceid={a(vm['interface_ids'][interface['name']])}/>",
                "      </virtualport>",
                f"      <vlan><tag id={a(str(int(interface['vlan'])))}/></vlan>",
            ]
        else:
            interfaces.append("    <interface type='ethernet'>")
        interfaces += [
            f"      <mac address={a(mac)}/>",
            f"      <target dev={a(host_name)}/>",
            "      <model type='virtio'/>",
            "      <rom enabled='no'/>",
            "    </interface>",
        ]
    lines = [
        f"<domain type={a('kvm' if kind == 'kvm' else 'qemu')}>",
        f"  <name>{escape(vm['domain'])}</name>",
        f"  <uuid>{escape(vm['uuid'])}</uuid>",
        f"  <title>LTB lab {escape(lab)}, node {escape(node['name'])}</title>",
        "  <metadata>",
        f"    <ltb:node xmlns:ltb={a(METADATA_NS)} lab={a(lab)} node={a(node['name'])}"
        " definition='@DEFINITION@'/>",
        "  </metadata>",
        f"  <memory unit='b'>{memory}</memory>",
        f"  <vcpu>{vcpus}</vcpu>",
        "  <os>",
        "    <type arch='x86_64' machine='pc'>hvm</type>",
        *boot,
        "  </os>",
        *(["  <cpu mode='host-passthrough'/>"] if kind == "kvm" else []),
        "  <features><acpi/></features>",
        "  <on_poweroff>destroy</on_poweroff>",
        "  <on_reboot>restart</on_reboot>",
        "  <on_crash>destroy</on_crash>",
        "  <devices>",
        "    <disk type='file' device='disk'>",
        "      <driver name='qemu' type='qcow2' discard='unmap'/>",
        f"      <source file={a(where_is['disk'])}/>",
        "      <target dev='vda' bus='virtio'/>",
        "      <serial>ltb-root</serial>",
        "    </disk>",
        "    <disk type='file' device='disk'>",
        "      <driver name='qemu' type='raw'/>",
        f"      <source file={a(where_is['config_drive'])}/>",
        "      <target dev='vdb' bus='virtio'/>",
        "      <serial>ltb-config</serial>",
        "      <readonly/>",
        "    </disk>",
        *interfaces,
        "    <serial type='file'>",
        f"      <source path={a(where_is['console_log'])} append='on'/>",
        "      <target port='0'/>",
        "    </serial>",
        "    <memballoon model='none'/>",
        "  </devices>",
        "</domain>",
        "",
    ]
    xml = "\n".join(lines)
    definition = hashlib.sha256(xml.encode()).hexdigest()[:16]
    return xml.replace("@DEFINITION@", definition), definition


# Deploying --------------------------------------------------------------------------------------


def domain_state(domain, where):
    """libvirt's state of the domain ('running', 'shut off', 'paused', ...), None if none."""
    done = subprocess.run(
        ["virsh", "-c", where.libvirt_uri, "domstate", domain],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        if any(text in done.stderr for text in NO_DOMAIN):
            return None
        raise VmError(f"virsh domstate {domain} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def defined_definition(domain, where):
    """The `definition` hash of the domain's persistent definition (None: not ours, or older)."""
    found = DEFINITION.search(where.virsh("dumpxml", "--inactive", domain))
    return found[1] if found else None


def deploy_one(lab, node, where, kind, restore, check_mode):
    """Make one VM as it must be. Returns {'changed', 'actions', 'state'[, 'why']}; state is
    'running' (already), 'started', 'resumed' (from the snapshot's memory) or 'booted' (the
    memory could not be resumed: from the disk)."""
    name, domain = node["name"], node["vm"]["domain"]
    where_is = paths(node, where)
    base, kernel = image_base(node, where)
    xml, definition = domain_xml(lab, node, where, kind, base, kernel)
    drive = config_drive(node, where)
    state = domain_state(domain, where)
    running = state in ("running", "paused", "blocked")
    actions = []

    if not os.path.isdir(where_is["dir"]):
        actions.append(f"make directory {where_is['dir']}")
        if not check_mode:
            os.makedirs(where_is["dir"], mode=0o750, exist_ok=True)
    if restore.get("disk") and not running:
        # Always copied: the disk of the instant its memory was saved, or the snapshot's disk.
        actions.append(f"copy the snapshot's disk {restore['disk']} to {where_is['disk']}")
        if not check_mode:
            _run("cp", "--sparse=always", restore["disk"], where_is["disk"])
    elif not os.path.exists(where_is["disk"]):
        actions.append(f"make disk {where_is['disk']}, an overlay of {base}/disk.qcow2")
        if not check_mode:
            _run(
                "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                "-b", os.path.join(base, "disk.qcow2"), where_is["disk"],
            )  # fmt: skip
    if check_mode and not os.path.isdir(where_is["dir"]):
        drive_changed = True
    else:
        drive_changed = write(where_is["config_drive"], drive, check_mode)
    if drive_changed:
        actions.append(f"write config drive {where_is['config_drive']}")
    if state is None or defined_definition(domain, where) != definition:
        actions.append(f"define domain {domain} ({definition})")
        if not check_mode:
            define_domain(xml, where.virsh)

    result = {"state": "running"}
    if state == "paused":
        actions.append(f"resume domain {domain}")
        if not check_mode:
            where.virsh("resume", domain)
    elif not running and restore.get("memory"):
        actions.append(f"restore domain {domain} from the snapshot's memory {restore['memory']}")
        result = {"state": "resumed"}
        if not check_mode:
            try:
                # The domain's UUID, devices and disk path are the snapshot's, as the names
                # derive from the lab, so libvirt accepts the saved state for it.
                where.virsh("restore", restore["memory"], "--running", timeout=600)
            except VmError as error:
                where.virsh("start", domain)
                result = {"state": "booted", "why": str(error)}
    elif not running:
        actions.append(f"start domain {domain}")
        result = {"state": "started"}
        if not check_mode:
            where.virsh("start", domain)
    result.update(changed=bool(actions), actions=[f"node {name}: {a}" for a in actions])
    return result


def with_xml_file(xml, use):
    """`use(path)` with `xml` in a temporary file at `path`: virsh reads XML from files
    (`define`; `snapshot-create`, for ltb_snapshot)."""
    fd, path = tempfile.mkstemp(prefix="ltb-", suffix=".xml")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(xml)
        return use(path)
    finally:
        os.unlink(path)


def define_domain(xml, virsh):
    """Defines a domain from its XML with `virsh(*args)`. Also the restore's
    (ltb_snapshot_resume), which defines a domain from its snapshot."""
    with_xml_file(xml, lambda path: virsh("define", path))


def deploy(lab, nodes, where, restore=None, check_mode=False):
    """Check, then make every VM of `nodes` as it must be, `where.parallel` at a time.
    `restore`: node -> {'disk', 'memory'} of a snapshot to deploy from. Returns node ->
    deploy_one's result; raises VmError naming every node that failed."""
    restore = restore or {}
    kind, errors = check(lab, nodes, where, restore)
    if errors:
        raise VmError("; ".join(errors))
    if not nodes:
        return {}

    def one(node):
        try:
            return deploy_one(lab, node, where, kind, restore.get(node["name"]) or {}, check_mode)
        except (VmError, OSError, subprocess.TimeoutExpired) as error:
            return {"error": f"lab {lab}, node {node['name']} on hypervisor {where.name}: {error}"}

    with ThreadPoolExecutor(max_workers=min(where.parallel, len(nodes))) as pool:
        results = dict(zip([n["name"] for n in nodes], pool.map(one, nodes), strict=True))
    failed = [r["error"] for r in results.values() if "error" in r]
    if failed:
        raise VmError("; ".join(failed))
    return results


# The ltb_lab_vms module's arguments and result (module_utils/ltb_module.py).
MODULE_SPEC = dict(
    argument_spec=dict(
        lab=dict(type="str", required=True),
        state=dict(type="str", choices=["preflight", "present"], default="present"),
        nodes=dict(type="list", elements="dict", default=[]),
        state_dir=dict(type="path", required=True),
        image_root=dict(type="path", required=True),
        default_image=dict(type="str", required=True),
        accel=dict(type="str", choices=["auto", "kvm", "qemu"], default="auto"),
        libvirt_uri=dict(type="str", default="qemu:///system"),
        bridge=dict(type="str", default=""),
        default_cpus=dict(type="float", default=1),
        default_memory_bytes=dict(type="int", default=256 * 1024 * 1024),
        kernel_cmdline=dict(type="str", default="console=ttyS0 rw panic=10"),
        authorized_keys=dict(type="list", elements="str", default=[], no_log=False),
        restore=dict(type="dict", default={}),
        hypervisor=dict(type="str", default="localhost"),
        parallel=dict(type="int", default=4),
    ),
    supports_check_mode=True,
)


def outcome(p, check_mode, diff=False):
    where = Hypervisor(
        p["hypervisor"],
        p["state_dir"],
        p["image_root"],
        p["default_image"],
        accel=p["accel"],
        libvirt_uri=p["libvirt_uri"],
        bridge=p["bridge"],
        default_cpus=p["default_cpus"],
        default_memory_bytes=p["default_memory_bytes"],
        kernel_cmdline=p["kernel_cmdline"],
        authorized_keys=p["authorized_keys"],
        parallel=p["parallel"],
    )
    if p["state"] == "preflight":
        _kind, errors = check(p["lab"], p["nodes"], where, p["restore"])
        if errors:
            return failure("; ".join(errors))
        return dict(changed=False, resumed=[], actions=[])
    try:
        vms = deploy(p["lab"], p["nodes"], where, p["restore"], check_mode)
    except VmError as error:
        return failure(str(error))
    actions = [line for vm in vms.values() for line in vm["actions"]]
    result = dict(
        changed=bool(actions),
        vms=vms,
        resumed=sorted(n for n, r in vms.items() if r["state"] == "resumed"),
        actions=actions,
        warnings=[
            f"node {name}: the memory saved in the snapshot could not be restored "
            f"({vm['why']}); the node booted from its restored disk instead"
            for name, vm in vms.items()
            if vm["state"] == "booted"
        ],
    )
    if diff and actions:
        result["diff"] = dict(before="", after="".join(f"{line}\n" for line in actions))
    return result
