#!/usr/bin/python
# LTB module: the config drive of a VM node.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_config_drive
short_description: The config drive that gives a VM node its name, addresses and startup files
description:
  - Writes O(path), a plain tar archive that the VM gets as a read-only virtio disk with serial
    C(ltb-config); the LTB VM image's init (images/vm/ltb-vm-init) reads it at every boot.
    No file system and no cloud service are involved.
  - The archive holds C(ltb/node.env) (LTB_HOSTNAME, LTB_CONFIG_ID), C(ltb/interfaces) (one
    line per interface, C(MAC NAME ADDRESS...)) and C(files/<path>) for every startup file.
  - Each interface's MAC address is the one O(macs) gives for its hypervisor-side name (the
    model derives it, C(ltb.model.vm_mac_address), and the domain XML uses the same), or else
    derived here the same way (C(52:54:00) and three bytes of the name's SHA-256); returned in
    RV(interfaces).
  - Converges, as the archive is byte-for-byte the same for the same input (fixed times and
    owners), and rewritten (atomically) only when it differs. Check mode is supported.
options:
  path:
    description: Where the archive is written.
    type: path
    required: true
  hostname:
    description: Host name of the VM.
    type: str
    required: true
  interfaces:
    description: Interfaces of the node, the management interface first.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name inside the VM.
        type: str
        required: true
      host_name:
        description: Name of the VM's tap device on the hypervisor.
        type: str
        required: true
      addresses:
        description: IPv4 and IPv6 addresses with prefix length.
        type: list
        elements: str
        default: []
  macs:
    description: MAC address of each interface, by hypervisor-side name.
    type: dict
    default: {}
  files:
    description: Startup files, copied into place at the first boot of this configuration.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path in the VM.
        type: str
        required: true
      content:
        description: Content of the file, verbatim.
        type: str
        required: true
      mode:
        description: Octal mode of the file.
        type: str
        default: "0644"
"""

RETURN = r"""
interfaces:
  description: The interfaces given, each with its C(mac) address.
  type: list
  elements: dict
  returned: always
config_id:
  description: Identity of the startup files and host name (the guest copies files once per id).
  type: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_config_drive import mac_address, render, write

__all__ = ["mac_address", "render"]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            hostname=dict(type="str", required=True),
            interfaces=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    name=dict(type="str", required=True),
                    host_name=dict(type="str", required=True),
                    addresses=dict(type="list", elements="str", default=[]),
                ),
            ),
            macs=dict(type="dict", default={}),
            files=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    path=dict(type="str", required=True),
                    content=dict(type="str", required=True, no_log=False),
                    mode=dict(type="str", default="0644"),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    macs = module.params["macs"]
    interfaces = [
        dict(item, mac=macs.get(item["host_name"]) or mac_address(item["host_name"]))
        for item in module.params["interfaces"]
    ]
    try:
        data, config_id = render(module.params["hostname"], interfaces, module.params["files"])
    except ValueError as error:
        module.fail_json(msg=str(error))
    changed = write(path, data, module.check_mode)
    module.exit_json(changed=changed, interfaces=interfaces, config_id=config_id)


if __name__ == "__main__":
    main()
