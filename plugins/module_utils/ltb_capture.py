# LTB module_utils: the capture command of a hypervisor (standard library only). Installed by
# roles/platform_capture as `ltb-capture` with ltb_mirror and ltb_ovs beside it, run by Debian's
# python3; ltb.capture runs the same code in-process on the controller and over SSH elsewhere.
"""A bounded pcap stream of a running lab's link or interface, on the hypervisor it runs on.

    ltb-capture LAB NODE:INTERFACE [--interface-only] [--filter BPF]
                [--duration SECONDS] [--packets N] [--bytes N] [--write FILE]

It mirrors the link (or the interface alone) to a mirror port of its own, runs tcpdump there
and writes pcap to stdout, so that from a laptop

    ssh root@HYPERVISOR ltb-capture LAB r1:eth1 | wireshark -k -i -

shows the link live. What can be captured comes from the lab's ports as this hypervisor keeps
them on Open vSwitch (the bridge's `external_ids:ltb-lab`, each port's tag, `ltb-node` and
`ltb-interface`, set by ltb_lab_links), not from a topology: no `ltb` package is needed, and
a lab spread over hypervisors offers here the interfaces of its nodes here. Every capture is
bounded (duration, packets, bytes) and removes its mirror when it ends, however it ends.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid

from ansible.module_utils.ltb_mirror import (
    MirrorError,
    ensure_mirror,
    mirror_spec,
    remove_abandoned_mirrors,
    remove_mirror,
)
from ansible.module_utils.ltb_ovs import OvsError, bridge_ports, rows

MAX_FILTER_LENGTH = 1024
PCAP_HEADER = 24
RECORD_HEADER = 16
MGMT_VLAN = 1  # ltb.model.MGMT_VLAN: the management network is never mirrored
LAB_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")  # ltb.topology.LAB_NAME
# What the command says on stderr once tcpdump listens (ltb.capture waits for it over SSH).
READY = "ltb-capture: capturing"


class CaptureError(ValueError):
    pass


class CaptureBounds:
    """Limits that end a capture; a forgotten capture cannot run or grow without end."""

    MAX_SECONDS = 3600
    MAX_PACKETS = 10_000_000
    MAX_BYTES = 2 * 1024**3

    def __init__(self, seconds=600, packets=1_000_000, bytes=512 * 1024**2):
        self.seconds, self.packets, self.bytes = seconds, packets, bytes
        for name, value, most in (
            ("duration", seconds, self.MAX_SECONDS),
            ("packets", packets, self.MAX_PACKETS),
            ("bytes", bytes, self.MAX_BYTES),
        ):
            if not 0 < value <= most:
                raise CaptureError(f"{name} must be more than 0 and at most {most}, not {value}")

    def __eq__(self, other):
        return isinstance(other, CaptureBounds) and vars(self) == vars(other)

    def __repr__(self):
        return f"CaptureBounds({self.seconds}, {self.packets}, {self.bytes})"


DEFAULT_BOUNDS = CaptureBounds()


class CaptureSummary:
    def __init__(self, packets=0, bytes=0, stopped_by="end of traffic"):
        self.packets, self.bytes, self.stopped_by = packets, bytes, stopped_by


def check_filter(expression):
    """A BPF filter that tcpdump compiles; raise CaptureError naming what is wrong.

    The filter is passed to tcpdump as one argument, never through a shell; it is compiled
    here first so that a bad filter fails before any mirror exists.
    """
    expression = expression.strip()
    if len(expression) > MAX_FILTER_LENGTH:
        raise CaptureError(f"filter is longer than {MAX_FILTER_LENGTH} characters")
    if any(not (c.isprintable() and c.isascii()) for c in expression):
        raise CaptureError("filter may contain only printable ASCII characters")
    if expression.startswith("-"):
        raise CaptureError("filter must not start with '-'")
    if not expression:
        return ""
    result = subprocess.run(
        ["tcpdump", "-d", "-i", "lo", expression], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "invalid"
        raise CaptureError(f"bad capture filter {expression!r}: {message}")
    return expression


def read_exact(stream, size):
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def pcap_records(stream):
    """Split a pcap stream into the global header and then one item per packet."""
    header = read_exact(stream, PCAP_HEADER)
    if not header:
        return
    yield header
    order = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    while True:
        record = read_exact(stream, RECORD_HEADER)
        if not record:
            return
        (length,) = struct.unpack(order + "I", record[8:12])
        data = read_exact(stream, length)
        if len(data) < length:
            return
        yield record + data


def bounded(records, bounds, summary):
    """The records (header first) within the byte bound, counted into `summary`."""
    for index, item in enumerate(records):
        if summary.bytes + len(item) > bounds.bytes:
            summary.stopped_by = "bytes"
            return
        summary.bytes += len(item)
        summary.packets += index > 0  # the first item is the pcap header
        yield item
    if summary.packets >= bounds.packets:
        summary.stopped_by = "packets"


# The lab as this hypervisor keeps it ---------------------------------------------------------


def kept_lab(lab):
    """(bridge, tag, ports) of the lab on this hypervisor's Open vSwitch; ports as
    ltb_mirror.mirror_spec wants them (link None for management)."""
    if not LAB_NAME.fullmatch(lab):
        raise CaptureError(f"{lab!r} is not a lab name (lower-case letters, digits and '-')")
    try:
        bridges = rows("Bridge", ("name",), f"external_ids:ltb-lab={lab}")
        if not bridges:
            raise CaptureError(
                f"lab {lab!r} is not deployed on this hypervisor (no bridge with "
                f"external_ids:ltb-lab={lab})"
            )
        bridge = bridges[0]["name"]
        found = bridge_ports(bridge)
    except OvsError as error:
        raise CaptureError(str(error)) from None
    ports = []
    for name, (tag, ids) in sorted(found.items()):
        if ids.get("ltb-lab") != lab or not ids.get("ltb-node") or not ids.get("ltb-interface"):
            continue  # the tunnel, mirror outputs, the management port of the hypervisor
        port = {"name": name, "vlan": tag, "node": ids["ltb-node"]}
        port["interface"] = ids["ltb-interface"]
        ports.append(port)
    for port in ports:
        peers = sorted(f"{p['node']}:{p['interface']}" for p in ports if p["vlan"] == port["vlan"])
        port["link"] = None if port["vlan"] == MGMT_VLAN else "--".join(peers)
    return bridge, bridge[len("ltb-") :], ports


def lab_mirror_spec(lab, scope, endpoint, name=None):
    bridge, tag, ports = kept_lab(lab)
    try:
        return mirror_spec(lab, tag, bridge, ports, scope, endpoint, name)
    except MirrorError as error:
        raise CaptureError(str(error)) from None


# The capture ----------------------------------------------------------------------------------


def capture_stream(spec, expression="", bounds=None, summary=None, on_ready=None):
    """Yield a pcap stream (header, then packets) of the mirror `spec`, within bounds. The
    mirror is made here and removed when the generator ends or is closed."""
    bounds = bounds or DEFAULT_BOUNDS
    summary = summary if summary is not None else CaptureSummary()
    expression = check_filter(expression)
    try:
        remove_abandoned_mirrors(spec.lab, spec.tag, spec.bridge)
        ensure_mirror(spec, owner_pid=os.getpid())
    except MirrorError as error:
        raise CaptureError(str(error)) from None
    argv = ["tcpdump", "-i", spec.capture_interface, "-U", "-w", "-", "--immediate-mode"]
    argv += ["-c", str(bounds.packets)]
    process = subprocess.Popen(
        [*argv, expression] if expression else argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = threading.Timer(bounds.seconds, stop, args=(process, summary, "duration"))
    deadline.start()
    try:
        wait_until_listening(process.stderr)
        if on_ready is not None:
            on_ready(f"{spec.description} (mirror port {spec.capture_interface})")
        yield from bounded(pcap_records(process.stdout), bounds, summary)
    finally:
        deadline.cancel()
        stop(process, summary, None)
        remove_mirror(spec)


def wait_until_listening(stderr):
    """Return once tcpdump captures (it says 'listening on'); then keep draining its stderr."""
    said = []
    for line in iter(stderr.readline, b""):
        said.append(line.decode(errors="replace").strip())
        if b"listening on" in line:
            threading.Thread(target=stderr.read, daemon=True).start()
            return
    raise CaptureError(f"tcpdump did not start: {' '.join(said) or 'no output'}")


def stop(process, summary, reason):
    if process.poll() is None:
        if reason:
            summary.stopped_by = reason
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


def _end_at_stdin_eof():
    """The caller (ltb.capture over SSH) went away when our stdin closes: end the capture
    as a signal would, so the mirror goes now and not at the duration bound."""
    while True:
        ready, _, _ = select.select([sys.stdin.buffer], [], [])
        if ready and not os.read(sys.stdin.fileno(), 4096):
            os.kill(os.getpid(), signal.SIGTERM)
            return


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="ltb-capture", description="Stream a pcap of a lab link or interface."
    )
    parser.add_argument("lab", help="name of the running lab")
    parser.add_argument("endpoint", help="NODE:INTERFACE on the link to capture, e.g. r1:eth1")
    parser.add_argument(
        "--interface-only", action="store_true", help="capture the interface alone, not its link"
    )
    parser.add_argument("--filter", default="", help="BPF capture filter, e.g. 'icmp or arp'")
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_BOUNDS.seconds,
        help="seconds before the capture stops (default %(default)s)",
    )
    parser.add_argument(
        "--packets",
        type=int,
        default=DEFAULT_BOUNDS.packets,
        help="packets before the capture stops (default %(default)s)",
    )
    parser.add_argument(
        "--bytes",
        type=int,
        default=DEFAULT_BOUNDS.bytes,
        help="pcap bytes before the capture stops (default %(default)s)",
    )
    parser.add_argument("--write", metavar="FILE", help="write a .pcap file instead of stdout")
    # For ltb.capture over SSH: the end of stdin means the caller is gone.
    parser.add_argument("--end-with-stdin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)  # accepted, no longer needed
    args = parser.parse_args(argv)

    # ssh closing the session, Ctrl-C or a kill must still remove the mirror.
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _raise_exit)
    summary = CaptureSummary()
    started = time.monotonic()
    try:
        bounds = CaptureBounds(args.duration, args.packets, args.bytes)
        expression = check_filter(args.filter)
        scope = "interface" if args.interface_only else "link"
        spec = lab_mirror_spec(
            args.lab, scope, args.endpoint, name=f"capture-{uuid.uuid4().hex[:8]}"
        )
        if args.end_with_stdin:
            threading.Thread(target=_end_at_stdin_eof, daemon=True).start()
        stream = capture_stream(
            spec,
            expression,
            bounds,
            summary,
            on_ready=lambda what: print(f"{READY} {what}", file=sys.stderr, flush=True),
        )
        output = open(args.write, "wb") if args.write else sys.stdout.buffer  # noqa: SIM115
        try:
            for item in stream:
                output.write(item)
                output.flush()
        finally:
            stream.close()
            if args.write:
                output.close()
    except CaptureError as error:
        print(f"ltb-capture: {error}", file=sys.stderr, flush=True)
        return 2
    except BrokenPipeError:
        summary.stopped_by = "reader closed the stream"
        # Python would complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    print(
        f"ltb-capture: {summary.packets} packets, {summary.bytes} bytes in "
        f"{time.monotonic() - started:.1f}s; stopped by {summary.stopped_by}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
