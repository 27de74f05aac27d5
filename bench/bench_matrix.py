"""Benchmark: the console's isolation matrix, 20 pods by pod (400 probes), on a real lab.

    sudo .venv/bin/python bench/bench_matrix.py [--pods 20] [--runs 3]

Starts its own 2-node lab (`bm<hex>`, torn down at the end even on failure), writes
network1/network2 on both nodes and starts N busybox httpd pods: half per node, half of
those per network. Then, in the same run:

1. ours: the real console (`CalicoConsole` driven headless by Textual's pilot), `:matrix`,
   `m` for by-pod: N sources × N destinations, expected from policy, observed by probes sent
   as one `probes` batch per source node (the agent runs a batch concurrently). Timed from
   the key press until every cell has its answer; p50 of `--runs`.
2. reference A: the same kind of cells probed one at a time through the node API
   (`POST /v1/probes`, same 2 s timeout): a sample of 40 cells, half allowed and half
   denied as in the matrix, extrapolated to N × N.
3. reference B: what an operator types per cell without the console, the command `c`
   shows: `rkt run --net=<network> docker://busybox --exec=/bin/wget -- -T 2 ...` on the
   source's node: a sample of 4 cells (2 allowed, 2 denied), extrapolated to N × N.

Prints a markdown table; ratio = reference time / ours (above 1: the console is faster).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from calico.nodeapi import NodeClient  # noqa: E402
from calico.tutorial import network_conf  # noqa: E402

TIMEOUT = 2.0  # the console's probe timeout (console/screens/matrix.py PROBE_TIMEOUT)


def api(lab, node: str) -> NodeClient:
    return NodeClient(f"unix://{lab.state_dir / 'nodes' / node / 'agent.sock'}", timeout=30)


def start_pods(lab, count: int) -> list[dict]:
    """count httpd pods spread over nodes and networks; returns their API records."""
    nodes = lab.nodes[:2]
    for node in nodes:
        for net in ("network1", "network2"):
            lab.write_net_conf(node, f"10-calico-{net}.conf", network_conf(net))
    for k in range(count):
        node = nodes[k % 2]
        net = ("network1", "network2")[(k // 2) % 2]
        proc = lab.exec(node, ["rkt", "run", "--detach", f"--net={net}", "docker://busybox",
                               "--exec", "httpd", "--", "-f", "-h", "/"], timeout=60)  # fmt: skip
        if proc.returncode:
            raise RuntimeError(f"rkt run on {node}: {proc.stderr.strip()}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = []
        for node in nodes:
            with api(lab, node) as c:
                pods += [
                    {**p, "node": node}
                    for p in c.pods()
                    if p.get("app") not in ("node", "probe") and p.get("state") == "running"
                    and any(n.get("ip") for n in p.get("networks", []))
                ]  # fmt: skip
        if len(pods) >= count:
            return pods
        time.sleep(0.3)
    raise RuntimeError(f"only {len(pods)} of {count} pods running after 60 s")


def console_matrix(lab, pods: int, runs: int) -> tuple[list[float], str, int]:
    """Seconds per full by-pod matrix in the real console; its summary and cell count."""
    from console.app import CalicoConsole

    times: list[float] = []
    summary, cells = "", 0

    async def wait(pilot, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await pilot.pause(0.01)

    async def go():
        nonlocal summary, cells
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(200, 60)) as pilot:

            def ready():
                running = [
                    p for info in app.state.nodes.values() for p in info.pods
                    if p.get("app") not in ("node", "probe") and p.get("state") == "running"
                    and any(n.get("ip") for n in p.get("networks", []))
                ]  # fmt: skip
                weps = [k for k in app.state.resources if "/workloadendpoints/" in k]
                return len(running) >= pods and len(weps) >= pods

            await wait(pilot, ready, 60, "pods and endpoints in the console")
            app.switch_view("matrix")
            screen = app.screen
            await wait(pilot, lambda: screen.done, 60, "the by-network matrix")
            await pilot.press("m")  # by pod
            for run in range(runs):
                if run:
                    await pilot.press("r")
                t0 = time.perf_counter()
                await wait(pilot, lambda: screen.done and screen.mode == "pod", 60, "probes")
                times.append(time.perf_counter() - t0)
            summary, cells = screen.matrix.summary(), len(screen.matrix.cells)

    asyncio.run(go())
    return times, summary, cells


def sample_cells(pods: list[dict], allowed: int, denied: int) -> list[tuple[dict, dict, bool]]:
    """(source pod, destination pod, allowed?) pairs: same network allowed, else denied."""

    def net(p):
        return next(n for n in p["networks"] if n.get("ip"))

    out_a, out_d = [], []
    for s in pods:
        for d in pods:
            same = net(s)["name"] == net(d)["name"]
            (out_a if same else out_d).append((s, d, same))
    return out_a[:allowed] + out_d[:denied]


def sequential_probes(lab, cells) -> float:
    t0 = time.perf_counter()
    for src, dst, _ in cells:
        ip = next(n["ip"] for n in dst["networks"] if n.get("ip")).split("/")[0]
        with api(lab, src["node"]) as c:
            c.probe(ip, 80, pod=src["uuid"], timeout=TIMEOUT)
    return time.perf_counter() - t0


def rkt_wget(lab, cells) -> float:
    t0 = time.perf_counter()
    for src, dst, _ in cells:
        net = next(n["name"] for n in src["networks"] if n.get("ip"))
        ip = next(n["ip"] for n in dst["networks"] if n.get("ip")).split("/")[0]
        lab.exec(src["node"], ["rkt", "run", f"--net={net}", "docker://busybox",
                               "--exec=/bin/wget", "--", "-T", str(int(TIMEOUT)), "-O", "-",
                               f"http://{ip}/"], timeout=60)  # fmt: skip
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (the lab's namespaces)", file=sys.stderr)
        return 2
    from lab.cluster import Lab

    lab = Lab("bm" + secrets.token_hex(2))
    try:
        lab.up(nodes=2)
        pods = start_pods(lab, args.pods)[: args.pods]
        total = args.pods * args.pods
        times, summary, cells = console_matrix(lab, args.pods, args.runs)
        ours = statistics.median(times)
        seq_cells = sample_cells(pods, 20, 20)
        seq = sequential_probes(lab, seq_cells) * total / len(seq_cells)
        wget_cells = sample_cells(pods, 2, 2)
        wget = rkt_wget(lab, wget_cells) * total / len(wget_cells)
    finally:
        lab.down()

    print(f"\n{args.pods} pods on 2 nodes (half network1, half network2), by pod: {cells} cells;"
          f" matrix says: {summary}; probe timeout {TIMEOUT:.0f} s.\n")  # fmt: skip
    print("| measure | probes | seconds | ratio (reference / console) |")
    print("|---|---|---|---|")
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"| console `:matrix` by pod, one batch per node (p50 of {len(times)}: {runs}) "
          f"| {cells} | {ours:.2f} | 1.00 |")  # fmt: skip
    print(f"| reference A: one `POST /v1/probes` at a time ({len(seq_cells)} measured, "
          f"extrapolated) | {total} | {seq:.1f} | {seq / ours:.1f} |")  # fmt: skip
    print(f"| reference B: `rkt run ... wget -T {TIMEOUT:.0f}` per cell ({len(wget_cells)} "
          f"measured, extrapolated) | {total} | {wget:.1f} | {wget / ours:.1f} |")  # fmt: skip
    ok = ours <= 5.0 and summary.endswith(" 0 wrong")
    print(f"\ntarget: {total} probes in <= 5 s, all correct: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
