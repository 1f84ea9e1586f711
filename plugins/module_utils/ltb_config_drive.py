# LTB module_utils: the config drive of a VM node, a plain tar archive the VM gets as a
# read-only virtio disk (serial ltb-config); the LTB VM image's init (images/vm/ltb-vm-init)
# reads it at every boot. Used by ltb_config_drive (one drive) and ltb_lab_vms (a lab's VMs).
# Standard library only.
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile


def mac_address(host_name):
    """The MAC of a VM interface by its hypervisor-side name (ltb.model.vm_mac_address)."""
    digest = hashlib.sha256(host_name.encode()).hexdigest()
    return "52:54:00:" + ":".join(digest[i : i + 2] for i in (0, 2, 4))


def _add(archive, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    archive.addfile(info, io.BytesIO(data))


def render(hostname, interfaces, files):
    """The archive's bytes and the config id, the same for the same input. `interfaces`: each
    with name, mac and addresses; `files`: each with path (absolute), content and mode."""
    for item in files:
        if not item["path"].startswith("/"):
            raise ValueError(f"startup file path {item['path']!r} is not absolute")
    identity = hashlib.sha256()
    identity.update(hostname.encode() + b"\0")
    for item in files:
        for part in (item["path"], item["mode"], item["content"]):
            identity.update(part.encode() + b"\0")
    config_id = identity.hexdigest()[:16]
    lines = [" ".join([item["mac"], item["name"], *item["addresses"]]) for item in interfaces]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        env = f"LTB_HOSTNAME={hostname}\nLTB_CONFIG_ID={config_id}\n"
        _add(archive, "ltb/node.env", env.encode())
        _add(archive, "ltb/interfaces", ("\n".join(lines) + "\n").encode())
        for item in files:
            _add(archive, "files" + item["path"], item["content"].encode(), int(item["mode"], 8))
    return buffer.getvalue(), config_id


def write(path, data, check_mode=False):
    """The archive at `path` is `data` (rewritten atomically only when it differs): changed."""
    try:
        with open(path, "rb") as existing:
            changed = existing.read() != data
    except FileNotFoundError:
        changed = True
    if changed and not check_mode:
        directory = os.path.dirname(path) or "."
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".config-drive.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
    return changed
