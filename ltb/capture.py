"""Remote packet capture: a bounded pcap stream of a running lab's link or interface.

    ltb-capture LAB NODE:INTERFACE [--interface-only] [--filter BPF]
                [--duration SECONDS] [--packets N] [--bytes N] [--write FILE]

Run on the hypervisor, it mirrors the link (or the interface alone) to a mirror port of its
own, runs tcpdump there and writes pcap to stdout, so that from a laptop

    ssh root@HYPERVISOR ltb-capture LAB r1:eth1 | wireshark -k -i -

shows the link live. Every capture is bounded (duration, packets, bytes) and removes its
mirror when it ends, however it ends. `capture_stream` is the one implementation: the CLI
writes it to stdout or a file, and the portal can send the same stream over HTTPS.
"""

from __future__ import annotations

import argparse
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ltb.deployed import DEFAULT_STATE_DIR, LabNotDeployed, load_deployed_lab
from ltb.mirror import (
    MirrorError,
    ensure_mirror,
    mirror_spec,
    remove_abandoned_mirrors,
    remove_mirror,
)

MAX_FILTER_LENGTH = 1024
PCAP_HEADER = 24
RECORD_HEADER = 16


class CaptureError(ValueError):
    pass


@dataclass(frozen=True)
class CaptureBounds:
    """Limits that end a capture; a forgotten capture cannot run or grow without end."""

    seconds: float = 600
    packets: int = 1_000_000
    bytes: int = 512 * 1024**2

    MAX_SECONDS = 3600
    MAX_PACKETS = 10_000_000
    MAX_BYTES = 2 * 1024**3

    def __post_init__(self) -> None:
        for name, value, most in (
            ("duration", self.seconds, self.MAX_SECONDS),
            ("packets", self.packets, self.MAX_PACKETS),
            ("bytes", self.bytes, self.MAX_BYTES),
        ):
            if not 0 < value <= most:
                raise CaptureError(f"{name} must be more than 0 and at most {most}, not {value}")


@dataclass
class CaptureSummary:
    packets: int = 0
    bytes: int = 0
    stopped_by: str = "end of traffic"


def check_filter(expression: str) -> str:
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


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def _pcap_records(stream: BinaryIO) -> Iterator[bytes]:
    """Split tcpdump's pcap output into the global header and then one item per packet."""
    header = _read_exact(stream, PCAP_HEADER)
    if not header:
        return
    yield header
    order = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    while True:
        record = _read_exact(stream, RECORD_HEADER)
        if not record:
            return
        (length,) = struct.unpack(order + "I", record[8:12])
        data = _read_exact(stream, length)
        if len(data) < length:
            return
        yield record + data


def capture_stream(
    lab: str,
    endpoint: str,
    *,
    scope: str = "link",
    expression: str = "",
    bounds: CaptureBounds | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
    summary: CaptureSummary | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> Iterator[bytes]:
    """Yield a pcap stream (header, then packets) of a lab link or interface, within bounds.

    Everything is checked before the mirror is made; the mirror is removed when the
    generator ends or is closed (e.g. the reader went away).
    """
    bounds = bounds or CaptureBounds()
    summary = summary if summary is not None else CaptureSummary()
    expression = check_filter(expression)
    try:
        model = load_deployed_lab(lab, state_dir)
        spec = mirror_spec(model, scope, endpoint, name=f"capture-{uuid.uuid4().hex[:8]}")
    except (LabNotDeployed, MirrorError) as error:
        raise CaptureError(str(error)) from None

    remove_abandoned_mirrors(model)
    ensure_mirror(spec, owner_pid=os.getpid())
    argv = [
        "tcpdump",
        "-i",
        spec.capture_interface,
        "-U",
        "-w",
        "-",
        "--immediate-mode",
        "-c",
        str(bounds.packets),
    ]
    process = subprocess.Popen(
        [*argv, expression] if expression else argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = threading.Timer(bounds.seconds, _stop, args=(process, summary, "duration"))
    deadline.start()
    try:
        assert process.stdout is not None and process.stderr is not None
        _wait_until_listening(process.stderr)
        if on_ready is not None:
            on_ready(f"capturing {spec.description} (mirror port {spec.capture_interface})")
        for index, item in enumerate(_pcap_records(process.stdout)):
            if summary.bytes + len(item) > bounds.bytes:
                summary.stopped_by = "bytes"
                break
            summary.bytes += len(item)
            summary.packets += index > 0  # the first item is the pcap header
            yield item
        else:
            if summary.packets >= bounds.packets:
                summary.stopped_by = "packets"
    finally:
        deadline.cancel()
        _stop(process, summary, None)
        remove_mirror(spec)


def _wait_until_listening(stderr: BinaryIO) -> None:
    """Return once tcpdump captures (it says 'listening on'); then keep draining its stderr."""
    said = []
    for line in iter(stderr.readline, b""):
        said.append(line.decode(errors="replace").strip())
        if b"listening on" in line:
            threading.Thread(target=stderr.read, daemon=True).start()
            return
    raise CaptureError(f"tcpdump did not start: {' '.join(said) or 'no output'}")


def _stop(process: subprocess.Popen, summary: CaptureSummary, reason: str | None) -> None:
    if process.poll() is None:
        if reason:
            summary.stopped_by = reason
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ltb-capture", description="Stream a pcap of a lab link or interface."
    )
    parser.add_argument("lab", help="name of the running lab")
    parser.add_argument("endpoint", help="NODE:INTERFACE on the link to capture, e.g. r1:eth1")
    parser.add_argument(
        "--interface-only",
        action="store_true",
        help="capture the interface alone, not its whole link",
    )
    parser.add_argument("--filter", default="", help="BPF capture filter, e.g. 'icmp or arp'")
    parser.add_argument(
        "--duration",
        type=float,
        default=CaptureBounds.seconds,
        help="seconds before the capture stops (default %(default)s)",
    )
    parser.add_argument(
        "--packets",
        type=int,
        default=CaptureBounds.packets,
        help="packets before the capture stops (default %(default)s)",
    )
    parser.add_argument(
        "--bytes",
        type=int,
        default=CaptureBounds.bytes,
        help="pcap bytes before the capture stops (default %(default)s)",
    )
    parser.add_argument("--write", metavar="FILE", help="write a .pcap file instead of stdout")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    # ssh closing the session, Ctrl-C or a kill must still remove the mirror.
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _raise_exit)
    summary = CaptureSummary()
    started = time.monotonic()
    try:
        stream = capture_stream(
            args.lab,
            args.endpoint,
            scope="interface" if args.interface_only else "link",
            expression=args.filter,
            bounds=CaptureBounds(args.duration, args.packets, args.bytes),
            state_dir=args.state_dir,
            summary=summary,
            on_ready=lambda what: print(f"ltb-capture: {what}", file=sys.stderr, flush=True),
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
        print(f"ltb-capture: {error}", file=sys.stderr)
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
