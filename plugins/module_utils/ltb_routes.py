# LTB module_utils: what on a hypervisor uses a subnet (standard library only; shipped to the
# hypervisor with ltb_lab_bridge, which checks it before it makes the lab's network).
"""Whether a lab's management subnet is free on a hypervisor: its routes of every table and
its addresses, read with `ip -j`."""

from __future__ import annotations

import json
import subprocess
import time
from ipaddress import IPv4Address, IPv4Interface, ip_network


def ip_json(*args):
    """`ip -4 -j ARGS` as Python data."""
    # A dump fails ("Dump was interrupted") while other labs change routes: try again.
    for attempt in range(5):
        result = subprocess.run(
            ["ip", "-4", "-j", *args], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            return json.loads(result.stdout or "[]")
        time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


def subnet_conflicts(subnet, own_port, routes, links):
    """What on a hypervisor already uses `subnet` (an IPv4Network), besides the lab's own
    management port.

    `routes` is `ip -4 -j route show table all`, `links` is `ip -4 -j addr show`. Refused:
    any route that overlaps the subnet (the local table's entries are the addresses, checked
    below), a default route whose gateway is inside it, any address of the hypervisor whose
    subnet overlaps it."""
    found = []
    for route in routes:
        dev = route.get("dev")
        if dev == own_port or route.get("table") == "local":
            continue
        via = f" via {route['gateway']}" if route.get("gateway") else ""
        on = f" dev {dev}" if dev else ""
        table = f" (table {route['table']})" if route.get("table") else ""
        if route.get("dst") == "default":
            gateway = route.get("gateway")
            if gateway and IPv4Address(gateway) in subnet:
                found.append(f"the default route's gateway {gateway}{on}{table}")
            continue
        try:
            destination = ip_network(route.get("dst", ""), strict=False)
        except ValueError:
            continue
        if destination.version == 4 and destination.overlaps(subnet):
            kind = f"{route['type']} " if route.get("type") not in (None, "unicast") else ""
            found.append(f"{kind}route {route['dst']}{via}{on}{table}")
    for link in links:
        if link.get("ifname") == own_port:
            continue
        for address in link.get("addr_info", []):
            if address.get("family") != "inet":
                continue
            interface = IPv4Interface(f"{address['local']}/{address.get('prefixlen', 32)}")
            if interface.network.overlaps(subnet):
                found.append(f"address {interface} of {link.get('ifname')}")
    return found
