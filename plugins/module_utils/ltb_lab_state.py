# LTB module_utils: what a hypervisor keeps of a deployed lab (standard library only; shipped
# to the hypervisor with ltb_lab_bridge).
"""A deployed lab's state directory on its hypervisor, `<state_dir>/labs/<lab>/`: the
topology the lab was deployed from and its allocation (tag and management subnet), which
`ltb.deployed` reads (names: ltb.deployed.TOPOLOGY_FILE, ltb.allocation.DEPLOYED_FILE)."""

from __future__ import annotations

import json
import os
import tempfile

TOPOLOGY_FILE = "topology.lab.yml"
DEPLOYED_FILE = "allocation.json"


def _read(path):
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError):
        return None


def _write(path, text, mode):
    """Replaces `path` atomically: a reader never sees half a file."""
    fd, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path)
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def allocation_text(lab, tag, mgmt_subnet):
    return json.dumps({"lab": lab, "tag": tag, "mgmt_subnet": mgmt_subnet}, indent=1) + "\n"


def keep_lab_state(state_dir, lab, topology, allocation, check_mode):
    """The lab's state directory holds `topology` (text) and `allocation` (text of
    allocation_text); returns what was (in check mode, would be) changed. `lab` must be a
    checked lab name: it names the directory."""
    directory = os.path.join(state_dir, "labs", lab)
    actions = []
    if not os.path.isdir(directory):
        actions.append(f"create {directory}")
        if not check_mode:
            os.makedirs(directory, mode=0o750, exist_ok=True)
    for name, text, mode in ((TOPOLOGY_FILE, topology, 0o640), (DEPLOYED_FILE, allocation, 0o644)):
        path = os.path.join(directory, name)
        if _read(path) != text:
            actions.append(f"write {path}")
            if not check_mode:
                _write(path, text, mode)
    return actions
