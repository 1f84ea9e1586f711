#!/usr/bin/python
# LTB module: the apt sources file of this host that image builds give mmdebstrap.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_apt_sources
short_description: Find the host's own Debian apt sources file
description:
  - Runs on the hypervisor with any Python 3; the choice is made by the module_utils
    C(ltb_apt_sources) (the first C(/etc/apt/sources.list.d/*.sources) file, then
    C(/etc/apt/sources.list), with an enabled deb entry of a Debian archive; else the first
    with any deb entry).
  - Fails, naming O(host) and O(variable), when the host has no such file. Reads only, so it
    runs the same in check mode.
options:
  host:
    description: The host's inventory name, for the error message.
    type: str
    required: true
  variable:
    description: The variable that sets the sources explicitly, for the error message.
    type: str
    required: true
  root:
    description: Root directory of the host's file system (another one in tests).
    type: path
    default: /
"""

EXAMPLES = r"""
- name: The hypervisor's apt sources are known
  ltb_apt_sources:
    host: "{{ inventory_hostname }}"
    variable: node_image_mirror
  register: node_image_apt_sources
"""

RETURN = r"""
sources:
  description: The apt sources file found.
  type: str
  returned: success
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_apt_sources import apt_sources, candidates


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", required=True),
            variable=dict(type="str", required=True),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    root = Path(p["root"])
    found = apt_sources(root)
    if found is None:
        looked = ", ".join(str(path) for path in candidates(root)) or "none exists"
        module.fail_json(
            msg=(
                f"hypervisor {p['host']}: no apt sources with a deb entry in "
                "/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list (files there: "
                f"{looked}); set {p['variable']} to a mirror URL or a sources file"
            )
        )
    module.exit_json(changed=False, sources=str(found))


if __name__ == "__main__":
    main()
