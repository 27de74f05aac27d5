"""IPIP benchmark: pod-to-pod throughput and latency across subnets, through tunl0 vs not.

    sudo .venv/bin/python bench/bench_ipip.py [--rounds 3] [--seconds 5] [--pings 40]

The topology of tests/integration/test_ipip.py (three hosts on two subnets behind a
router, pods a on h1 and c on h3, each host programmed by the agent's own calculation and
dataplane code, policy in force), all in throwaway namespaces. Each host runs `calico-tunl`
(this kernel has no ipip, so tunl0 is the TUN relay). Two modes, interleaved round by
round on the same hosts:

- IPIP: pool ipipMode Always; a -> c goes `via h3 dev tunl0 onlink`, encapsulated by h1's
  relay, decapsulated by h3's.
- plain: pool ipipMode Never and the router holding routes to the pod blocks (as a ToR
  that learned them would); a -> c is routed natively (the reference).

Measured: iperf3 TCP a -> c (`--seconds` each round, the mean over rounds), and ping RTT
p50 over `--pings` echoes per round. Prints `| measure | IPIP | plain | ratio |`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tests.integration.test_ipip as topo  # noqa: E402
from tests.integration.test_ipip import BLOCKS, HOSTS, Net, sh, wait_until  # noqa: E402

SERVER, CLIENT = "c", "a"


def set_mode(net: Net, mode: str) -> None:
    for host in HOSTS:
        net.apply(host, mode)  # plain mode: the agent's cross-subnet routes fail, as expected


def iperf(net: Net, seconds: int, attempts: int = 3) -> float:
    """Receiver bits/s of one iperf3 run a -> c (a fresh one-shot server per attempt)."""
    ip = topo.PODS[SERVER][1]
    why = ""
    for _ in range(attempts):
        server = subprocess.Popen(
            ["ip", "netns", "exec", net.ns(SERVER), "iperf3", "-s", "-1", "-B", ip, "-p", "5201"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                proc = subprocess.run(
                    ["ip", "netns", "exec", net.ns(CLIENT), "iperf3", "-c", ip, "-p", "5201",
                     "-t", str(seconds), "-J"], capture_output=True, text=True,
                    timeout=seconds + 30,
                )  # fmt: skip
                try:
                    data = json.loads(proc.stdout)
                except ValueError:
                    data = {}
                end = data.get("end") or {}
                got = end.get("sum_received") or (end.get("streams") or [{}])[0].get("receiver")
                if got:
                    return got["bits_per_second"]
                why = data.get("error") or proc.stderr.strip()
                if "connect" not in why:  # anything but a server not listening yet
                    break
                time.sleep(0.1)
        finally:
            if server.poll() is None:
                server.terminate()
            server.wait(timeout=30)
    raise RuntimeError(f"iperf3 failed: {why[-300:]}")


def rtts(net: Net, count: int) -> list[float]:
    proc = subprocess.run(
        ["ip", "netns", "exec", net.ns(CLIENT), "busybox", "ping", "-c", str(count), "-i",
         "0.05", topo.PODS[SERVER][1]], capture_output=True, text=True, timeout=count + 30,
    )  # fmt: skip
    return [float(m) for m in re.findall(r"time=([0-9.]+) ms", proc.stdout)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--pings", type=int, default=40)
    args = p.parse_args()
    for tool in ("iperf3", "busybox", "iptables-legacy-restore", "ipset"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_ipip: needs {tool}")
    # c joins network1, so policy allows a -> c.
    topo.PODS = {**topo.PODS, SERVER: (topo.PODS[SERVER][0], topo.PODS[SERVER][1], "network1")}
    net = Net(Path(tempfile.mkdtemp(prefix="bench-ipip-")))
    results: dict[str, dict[str, list[float]]] = {
        m: {"bps": [], "rtt": []} for m in ("Always", "Never")
    }
    try:
        net.build()
        net.start_relays()
        for host in HOSTS:
            wait_until(lambda h=host: net.status(h).get("mode"), 10, f"{host} relay")
        for host, block in BLOCKS.items():  # the reference path's "ToR" routes
            addr = HOSTS[host].split("/")[0]
            sh("ip", "-n", net.ns("router"), "route", "add", block, "via", addr)
        for _ in range(args.rounds):
            for mode in ("Always", "Never"):
                set_mode(net, mode)
                wait_until(lambda: rtts(net, 1), 10, f"a -> c in mode {mode}")
                before = net.status("h1").get("out", {}).get("sent_packets", 0)
                results[mode]["bps"].append(iperf(net, args.seconds))
                results[mode]["rtt"] += rtts(net, args.pings)
                sent = net.status("h1").get("out", {}).get("sent_packets", 0) - before
                if (mode == "Always") != (sent > 0):
                    raise RuntimeError(f"mode {mode}: the relay sent {sent} packets")
    finally:
        net.destroy()
        shutil.rmtree(net.tmp, ignore_errors=True)  # the relays' status files and logs
    ipip, plain = results["Always"], results["Never"]
    bps_i, bps_p = statistics.mean(ipip["bps"]), statistics.mean(plain["bps"])
    rtt_i, rtt_p = statistics.median(ipip["rtt"]), statistics.median(plain["rtt"])
    print(f"\n{args.rounds} rounds, interleaved; iperf3 {args.seconds} s each; "
          f"{len(ipip['rtt'])} pings per mode\n")  # fmt: skip
    print("| measure | IPIP (calico-tunl) | plain routed | ratio |")
    print("|---|---|---|---|")
    print(f"| pod-to-pod TCP across subnets (iperf3), mean | {bps_i / 1e6:,.0f} Mbit/s | "
          f"{bps_p / 1e6:,.0f} Mbit/s | {bps_i / bps_p:.3f} |")  # fmt: skip
    print(f"| ping RTT p50 | {rtt_i:.3f} ms | {rtt_p:.3f} ms | {rtt_i / rtt_p:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
