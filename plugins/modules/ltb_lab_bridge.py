#!/usr/bin/python
# LTB module: a lab's bridge and the hypervisor's port on the lab's management network, and
# (state=absent) the whole of a lab's network on the hypervisor gone in one module run.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_bridge
short_description: The Open vSwitch bridge of a lab and the hypervisor's management port on it
description:
  - Runs on the hypervisor with any Python 3 (standard library and module_utils only); the
    names and addresses are the controller's (C(ltb.inventory.lab_network_vars)).
  - Reads the bridge and the management port in one ovs-vsctl call each and makes what
    differs in one transaction - the bridge with its datapath type, forwarding the nodes'
    link-local protocols (STP, LLDP, LACP; a link is a wire) and the lab's identity; the
    management port, internal, in the management VLAN - then gives the port the lab's
    gateway address, brings it up and keeps the hypervisor from forwarding what comes
    from it.
  - With O(state=absent), removes everything of the lab's network on the hypervisor, found
    by the lab's identity, also what a failed deploy or a changed topology left - the bridge
    with all its ports (one C(ovs-vsctl del-br)), every hypervisor interface whose alias is
    C(ltb:<lab>:...) (veth ends, the VXLAN tunnel device) and every unlabelled one named
    like a host end or the tunnel device of the lab's tag, and the lab's state directory
    C(<state_dir>/labs/<lab>). A lab that is not there changes nothing.
  - With O(state=present) and O(state_dir), first fails, changing nothing, when the
    management subnet O(mgmt_subnet) is in use on the hypervisor by anything but the lab's
    own management port (a route of any table that overlaps it, an address of the hypervisor
    in it, a default route whose gateway is in it); then, with the network, keeps the lab's
    topology O(topology) and allocation (O(tag), O(mgmt_subnet)) in C(<state_dir>/labs/<lab>)
    where C(ltb.deployed) reads them. One module run for what were four tasks of a deploy.
  - Fails, changing nothing, when the bridge belongs to another lab. Check mode reports
    what would change, with a diff.
options:
  lab:
    description: Lab name.
    type: str
    required: true
  bridge:
    description: The lab's bridge.
    type: str
    required: true
  datapath_type:
    description: The bridge's datapath (C(system) on a kernel with openvswitch, else C(netdev)).
    type: str
  mgmt_port:
    description: The hypervisor's port on the management network.
    type: str
  mgmt_vlan:
    description: The management VLAN.
    type: int
  mgmt_gateway:
    description: The gateway address of the management network, with its prefix length.
    type: str
  tag:
    description: The lab's tag (C(Lab.tag)); with O(state=absent), names unlabelled leftovers.
    type: str
  state_dir:
    description: LTB's state directory on the hypervisor (O(state=absent) removes C(labs/<lab>);
      with O(state=present) the lab's topology and allocation are kept there).
    type: path
  mgmt_subnet:
    description: The lab's management subnet (with O(state=present) and O(state_dir)).
    type: str
  topology:
    description: Text of the topology file the lab is deployed from (with O(state=present)
      and O(state_dir)).
    type: str
  state:
    description: Whether the lab's network exists; V(present) needs datapath_type, mgmt_port,
      mgmt_vlan and mgmt_gateway, V(absent) needs tag and state_dir.
    type: str
    choices: [present, absent]
    default: present
"""

RETURN = r"""
actions:
  description: What was changed (in check mode, what would be).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.ltb_lab_bridge import MODULE_SPEC, outcome
from ansible.module_utils.ltb_module import run


def main():
    run(MODULE_SPEC, outcome)


if __name__ == "__main__":
    main()
