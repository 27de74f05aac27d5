"""Benchmark: from a block being claimed on node A until node B routes to it, through BIRD,
beside the direct-route mode measured in the same run.

    sudo .venv/bin/python bench/bench_bgp_convergence.py [--blocks 12] [--nodes 2]

For each mode a lab of its own (`calico-lab up --backend bird`, the default: each node's
BIRD in a node-to-node mesh; then `--backend direct`: the agent writes a route to each
remote block via its node) is brought up the way the tests do, and then, one block at a
time, the bench claims a new /26 for calico-01 through IPAM (`assign_ip` of the block's
first address, the transaction a pod's CNI ADD makes; the claim time is taken when the
transaction has returned) and waits for calico-02's kernel to announce the route to that
block (an rtnetlink RTM_NEWROUTE seen by a listener inside calico-02's namespace, stamped
with the same wall clock). The path with BIRD: calico-01's agent sees the block (etcd
watch), renders bird.conf and runs `birdc configure`; BIRD exports the new static route to
its peers; calico-02's BIRD imports it and installs it in the kernel. Direct: calico-02's
agent sees the block and writes the route.

Printed: p50, p90 and max per mode and the ratio BIRD / direct. The issue's budget is a
BIRD p50 of at most 1 s; nothing here asserts it. Everything is removed at the end (each
lab's `down`).
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calico.datastore import Datastore  # noqa: E402
from calico.ipam_store import assign_ip, release_by_handle  # noqa: E402
from lab.cluster import Lab  # noqa: E402

# Runs inside calico-02's netns: prints "<dst>/<len> <unix time>" for each new IPv4 route
# (RTMGRP_IPV4_ROUTE multicast; nlmsghdr 16 bytes, rtmsg 12, then rtattrs; RTA_DST = 1).
LISTENER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind((0, 0x40))
print("ready", flush=True)
while True:
    data = s.recv(1 << 16)
    now = time.time()
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind == 24:  # RTM_NEWROUTE
            dst_len = data[off + 17]
            a = off + 28
            while a + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype == 1 and alen >= 8:
                    print(f"{socket.inet_ntoa(data[a + 4:a + 8])}/{dst_len} {now:.6f}", flush=True)
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
"""


class RouteListener:
    def __init__(self, lab: Lab, node: str):
        self.proc = subprocess.Popen(
            lab.exec_argv(node, [sys.executable, "-u", "-c", LISTENER]),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("route listener did not start")

    def wait_for(self, prefix: str, timeout: float) -> float:
        """The wall-clock time the route to `prefix` was announced."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no route to {prefix} within {timeout:g} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("route listener exited")
            dst, stamp = line.split()
            if dst == prefix:
                return float(stamp)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def measure(mode: str, blocks: int, nodes: int, base: Path) -> list[float]:
    """Seconds from each block's claim (on calico-01) to calico-02's route to it."""
    name = "bb" + secrets.token_hex(2)
    lab = Lab(name, state_dir=base / name)
    out: list[float] = []
    try:
        lab.up(nodes=nodes, backend=mode)
        ds = Datastore.connect(lab.etcd_settings())
        listener = RouteListener(lab, "calico-02")
        try:
            for i in range(blocks):
                block = ipaddress.IPv4Network(f"192.168.{40 + i}.0/26")
                handle = f"bench-bgp-{i}"
                assign_ip(ds, "calico-01", handle, block.network_address + 1)
                claimed = time.time()
                routed = listener.wait_for(str(block), timeout=30)
                out.append(max(0.0, routed - claimed))
                release_by_handle(ds, handle)
        finally:
            listener.close()
            ds.close()
    finally:
        lab.down()
    return out


def row(label: str, xs: list[float], ref: float) -> str:
    p50 = statistics.median(xs)
    p90 = sorted(xs)[max(0, int(len(xs) * 0.9 + 0.5) - 1)]
    return (
        f"| {label} | {p50 * 1000:.0f} | {p90 * 1000:.0f} | {max(xs) * 1000:.0f} |"
        f" {p50 / ref:.2f}x |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=12, help="blocks claimed per mode (12)")
    ap.add_argument("--nodes", type=int, default=2, help="nodes per lab (2)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bgp-") as tmp:
        base = Path(tmp)
        bird = measure("bird", args.blocks, args.nodes, base)
        direct = measure("direct", args.blocks, args.nodes, base)
    ref = statistics.median(direct)
    print(f"block claimed on calico-01 -> route on calico-02, {args.blocks} blocks, "
          f"{args.nodes}-node flat lab")  # fmt: skip
    print("| mode | p50 ms | p90 ms | max ms | p50 vs direct |")
    print("|---|---|---|---|---|")
    print(row("BIRD (node-to-node mesh)", bird, ref))
    print(row("direct (the agent writes the route)", direct, ref))
    p50 = statistics.median(bird)
    print(f"budget: BIRD p50 <= 1000 ms: {p50 * 1000:.0f} ms ({'within' if p50 <= 1 else 'OVER'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
