"""Packets per second that a capture delivers without loss: LTB's mirror path vs tcpdump on
the link itself.

    .venv/bin/python bench/mirror.py [--rates 5000 10000 20000 50000] [--seconds 3]

Deploys a two-node lab (bench-mirror), sends UDP from a to b with iperf3 at each rate (64-byte
payloads), and counts the packets that arrive in:
  * `ltb-capture` of the link (OVS mirror -> mirror port -> tcpdump -> pcap stream), and
  * plain `tcpdump` on the link's hypervisor-side veth (the bare tool, no mirror).
Prints, per rate, the packets sent, the share each capture holds and the CPU time and peak
memory of each capture's process tree while it runs (bench/measure.py, as in every bench; the
OVS daemons' mirroring work is not in the tree). The lab is removed at the end. Run it on a
quiet machine: the numbers depend on free CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from bench.measure import Usage, Watch  # noqa: E402

LAB = "bench-mirror"
TOPOLOGY = f"""
name: {LAB}
nodes:
  a: {{interfaces: {{eth1: {{ipv4: 10.204.0.1/24}}}}}}
  b: {{interfaces: {{eth1: {{ipv4: 10.204.0.2/24}}}}}}
links:
  - endpoints: [a:eth1, b:eth1]
"""


def playbook(name: str, lab_file: Path) -> None:
    env = dict(
        os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{BIN}:{os.environ['PATH']}"
    )
    subprocess.run(
        [BIN / "ansible-playbook", "-i", "inventory/", "-i", lab_file, f"playbooks/{name}"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def docker_exec(node: str, *argv: str, detach: bool = False) -> str:
    flags = ["-d"] if detach else []
    return subprocess.run(
        ["docker", "exec", *flags, f"ltb-{LAB}.{node}", *argv],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def count_udp(pcap: Path) -> int:
    out = subprocess.run(
        ["tcpdump", "-Z", "root", "-r", pcap, "-n", "udp and dst port 5201"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return len(out.splitlines())


def send(rate: int, seconds: float) -> int:
    """Send UDP from a to b at `rate` packets/s; return the datagrams iperf3 sent."""
    docker_exec("b", "iperf3", "-s", "-1", detach=True)
    time.sleep(0.5)
    bits = rate * 64 * 8
    report = json.loads(
        docker_exec(
            "a",
            "iperf3",
            "-c",
            "10.204.0.2",
            "-u",
            "-l",
            "64",
            "-b",
            str(bits),
            "-t",
            str(seconds),
            "-J",
        )
    )
    return report["end"]["sum"]["packets"]


def capture_share(
    capture: list[str], pcap: Path, rate: int, seconds: float
) -> tuple[int, int, Usage]:
    """Packets sent and captured, and what the capture's process tree took while it ran."""
    process = subprocess.Popen(capture, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watch = Watch([process.pid]).start()
    time.sleep(2)  # capture running (mirror made) before traffic starts
    sent = send(rate, seconds)
    time.sleep(1)
    usage = watch.stop()
    process.terminate()
    process.wait(timeout=30)
    return sent, count_udp(pcap), usage


def used(usage: Usage) -> dict[str, float]:
    return {"cpu_s": usage.cpu_s, "peak_mib": usage.peak_mib}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[5000, 10000, 20000, 50000])
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()

    from ltb.deployed import load_deployed_lab

    work = Path(tempfile.mkdtemp(prefix="ltb-bench-"))
    lab_file = work / f"{LAB}.lab.yml"
    lab_file.write_text(TOPOLOGY)
    playbook("deploy.yml", lab_file)
    link_port = load_deployed_lab(LAB).node("a").interface("eth1").host_name
    rows = []
    try:
        for rate in args.rates:
            mirror_pcap, link_pcap = work / f"mirror-{rate}.pcap", work / f"link-{rate}.pcap"
            ltb = [
                str(BIN / "python"),
                "-m",
                "ltb.capture",
                LAB,
                "a:eth1",
                "--filter",
                "udp",
                "--duration",
                str(args.seconds + 20),
                "--write",
                str(mirror_pcap),
            ]
            bare = [
                "tcpdump",
                "-i",
                link_port,
                "-w",
                str(link_pcap),
                "-U",
                "--immediate-mode",
                "udp",
            ]
            sent_m, got_m, use_m = capture_share(ltb, mirror_pcap, rate, args.seconds)
            sent_l, got_l, use_l = capture_share(bare, link_pcap, rate, args.seconds)
            rows.append(
                {
                    "rate_pps": rate,
                    "mirror": {"sent": sent_m, "captured": got_m, **used(use_m)},
                    "link_tcpdump": {"sent": sent_l, "captured": got_l, **used(use_l)},
                }
            )
            print(
                f"{rate:>7} pps  ltb-capture {got_m:>7}/{sent_m:<7} ({got_m / sent_m:6.1%}, "
                f"{use_m.cpu_s} CPU s, {use_m.peak_mib} MiB)   tcpdump on link "
                f"{got_l:>7}/{sent_l:<7} ({got_l / sent_l:6.1%}, {use_l.cpu_s} CPU s, "
                f"{use_l.peak_mib} MiB)",
                flush=True,
            )
    finally:
        playbook("remove.yml", lab_file)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    out = results / f"mirror-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(
        json.dumps({"seconds": args.seconds, "payload_bytes": 64, "rows": rows}, indent=2)
    )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
