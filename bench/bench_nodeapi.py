"""Benchmark: the node API's latency with 1,000 pods on a node, and the flow stream's
throughput before records are dropped.

    sudo .venv/bin/python bench/bench_nodeapi.py [--pods 1000] [--requests 200]
                                                  [--flood 30000] [--rates 5000,10000,20000,0]

Brings up its own 2-node lab (unique name, `down()` in a finally: every namespace, process
and file goes, even on failure). Traffic stays inside the lab's namespaces.

1. GET /v1/pods latency (p50/p99 over --requests calls on one keep-alive connection to the
   node's unix socket, JSON decoded, as NodeClient does), at the 2 real pods the lab starts
   with (the node service, the httpd) and at 1,000 pods. The 1,000 pods are *fabricated*:
   `pod.json` files written into the node's RKT_DIR/pods/<uuid>/ with the runtime's own
   writer (rkt.state.write_state), state `exited`, one network1 address each,
   rather than starting 1,000 processes. The API reads exactly these files, so listing cost
   is the same; what is not measured is 1,000 live endpoints in the agent's cache.
   References in the same run: `rkt list --format=json` at the same pods (a subprocess on
   the node, wall time: what the user would run instead), and GET /v1/health (the
   transport floor: same socket, trivial handler).
2. Flow stream: a pod on network2 floods SYNs (raw socket, distinct source ports, paced at
   each --rates value; 0 = as fast as Python sends) at an httpd on network1 on the same
   node. The agent denies each one (NFLOG, then DROP) and a follower reads
   GET /v1/flows?follow=1&from=<flooder> through NodeClient. Per rate: packets the kernel
   denied (the NFLOG rules' packet counters, from /v1/dataplane), records the collector made
   (the denied counter in /metrics), records the follower read, and how many it was told
   were dropped; records/s is the follower's rate from its first to its last record.
   The flood is larger than the ring (10,000) so a reader that falls behind does lose.

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import socket
import struct
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SELF = str(Path(__file__).resolve())
IDLE = 1.5  # seconds without a record after the flood ended: the stream has caught up
BUDGET_PODS_MS = 20.0  # GET /v1/pods p50 at 1,000 pods (issue 15)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# ---------------------------------------------------------------- the flooder (in the pod)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def flood(src: str, dst: str, dport: int, n: int, rate: float) -> None:
    """n SYNs from src (the pod's own address: anti-spoofing) to dst:dport, distinct source
    ports, paced at `rate` per second (0: unpaced). Prints {"sent", "seconds"}."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    packets = []
    for i in range(n):
        sport = 1024 + i
        hdr = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0, 5 << 4, 0x02,
                          64240, 0, 0)  # fmt: skip
        pseudo = s + d + struct.pack("!BBH", 0, 6, len(hdr))
        packets.append(hdr[:16] + struct.pack("!H", _checksum(pseudo + hdr)) + hdr[18:])
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    t0 = time.perf_counter()
    sent = 0
    for i, p in enumerate(packets):
        if rate and i % 100 == 0:
            ahead = t0 + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                sock.sendto(p, (dst, 0))
                sent += 1
                break
            except OSError:  # ENOBUFS on the veth queue: retry
                time.sleep(0.0002)
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - t0}), flush=True)


# ---------------------------------------------------------------- part 1: listing latency


def fabricate_pods(rkt_dir: Path, n: int) -> None:
    from rkt.state import AppState, NetworkState, PodState, new_uuid, write_state

    now = time.time()
    for i in range(n):
        uuid = new_uuid()
        pdir = rkt_dir / "pods" / uuid
        pdir.mkdir(parents=True)
        ip = f"10.250.{i // 250}.{i % 250 + 1}"
        pod = PodState(
            uuid=uuid,
            state="exited",
            app=AppState(
                name="busybox",
                image_name="registry-1.docker.io/library/busybox:latest",
                image_id="sha512-" + "ab" * 64,
                exec=["/bin/sleep", "600"],
                exit_code=0,
            ),
            created=now - n + i,
            started=now - n + i + 0.05,
            finished=now - 1,
            pid=None,
            net_mode="contained",
            netns=str(pdir / "netns"),
            networks=[
                NetworkState(
                    name="network1",
                    ifname="eth0",
                    conf={"name": "network1", "cniVersion": "0.1.0", "type": "calico",
                          "ipam": {"type": "calico-ipam"}},
                    conf_file="/etc/rkt/net.d/10-calico-network1.conf",
                    result={"ip4": {"ip": f"{ip}/32", "gateway": "169.254.1.1"}},
                    ip4=ip,
                    added=True,
                )
            ],
        )  # fmt: skip
        write_state(str(pdir), pod)


def time_calls(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def listing(lab, client, node: str, requests: int, runs: int) -> dict[str, list[float]]:
    rkt = [str(Path(sys.executable).with_name("rkt")), "list", "--format=json"]
    client.pods()  # warm: first request, imports
    return {
        "pods": time_calls(client.pods, requests),
        "health": time_calls(client.health, requests),
        "rkt": time_calls(lambda: lab.exec(node, rkt, timeout=60, check=True), runs),
        "count": [len(client.pods())],
    }


# ---------------------------------------------------------------- part 2: flow stream


def nflog_denied(client) -> int:
    """Packets the node's NFLOG-then-drop rules have counted (denied, NEW)."""
    chains = client.dataplane()["chains"]
    return sum(r["packets"] for rules in chains.values() for r in rules if "NFLOG" in r["rule"])


def collector_denied(client) -> int:
    for line in client.metrics().splitlines():
        if line.startswith("calico_agent_denied_packets_total "):
            return int(float(line.split()[1]))
    return 0


class Follower:
    def __init__(self, url: str, src: str):
        from calico.nodeapi import NodeAPIError, NodeClient

        self.client = NodeClient(url)
        self.got = 0
        self.dropped = 0
        self.first = self.last = 0.0
        self.ports: set[int] = set()
        self.since = 0.0
        self.ready = threading.Event()

        def run() -> None:
            try:
                for item in self.client.flows(follow=True, **{"from": src, "verdict": "denied"}):
                    self.ready.set()
                    kind = item.get("type")
                    if kind == "dropped":
                        self.dropped += int(item.get("count", 0))
                    elif kind == "flow" and item["time"] >= self.since:
                        now = time.monotonic()
                        if not self.got:
                            self.first = now
                        self.last = now
                        self.got += 1
            except NodeAPIError:
                pass

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.client.close()
        self.thread.join(timeout=5)


def flood_once(lab, client, node, src_netns, src_ip, dst_ip, dport, n, rate) -> dict:
    # forget earlier floods' conntrack entries, so that every SYN is NEW again
    lab.exec(node, ["conntrack", "-D", "-s", src_ip], timeout=30)
    k0, c0 = nflog_denied(client), collector_denied(client)
    follower = Follower(client.url, src_ip)
    follower.since = time.time()
    try:
        proc = lab.exec(
            node,
            ["nsenter", f"--net={src_netns}", sys.executable, SELF, "--flood-worker", src_ip, dst_ip,
             str(dport), str(n), str(rate)],
            timeout=600,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"flooder failed: {proc.stderr.strip()}")
        sent = json.loads(proc.stdout.strip().splitlines()[-1])
        # the stream has caught up when nothing new arrived for IDLE seconds
        deadline = time.monotonic() + 120
        seen = -1
        while time.monotonic() < deadline:
            if follower.got == seen and follower.got:
                break
            seen = follower.got
            time.sleep(IDLE)
    finally:
        follower.close()
    span = follower.last - follower.first
    return {
        "rate": rate,
        "sent": sent["sent"],
        "send_rate": sent["sent"] / sent["seconds"],
        "kernel": nflog_denied(client) - k0,
        "collector": collector_denied(client) - c0,
        "streamed": follower.got,
        "dropped": follower.dropped,
        "per_s": follower.got / span if span > 0 else 0.0,
    }


def ring_read(sock_path: str) -> dict[str, tuple[int, float]]:
    """The whole ring (no follow), twice: through NodeClient (httpx lines + json.loads per
    record, what a follower pays) and as raw bytes off the socket (counting newlines): the
    difference is the client's share of the stream's cost."""
    from calico.nodeapi import NodeClient

    out = {}
    with NodeClient(f"unix://{sock_path}") as client:
        t0 = time.perf_counter()
        n = sum(1 for item in client.flows() if item.get("type") == "flow")
        out["client"] = (n, time.perf_counter() - t0)
    with socket.socket(socket.AF_UNIX) as s:
        t0 = time.perf_counter()
        s.connect(sock_path)
        s.sendall(b"GET /v1/flows HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
        lines = 0
        while chunk := s.recv(1 << 20):
            lines += chunk.count(b"\n")
        out["raw"] = (lines, time.perf_counter() - t0)  # includes chunk-size lines
    return out


# ---------------------------------------------------------------- main


def main() -> int:
    if sys.argv[1:2] == ["--flood-worker"]:  # the flooder, inside the source pod's netns
        src, dst, dport, n, rate = sys.argv[2:7]
        flood(src, dst, int(dport), int(n), float(rate))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rkt-runs", type=int, default=20)
    ap.add_argument("--flood", type=int, default=30_000)
    ap.add_argument("--rates", default="5000,10000,20000,0")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (the lab makes network namespaces)", file=sys.stderr)
        return 2

    from calico.nodeapi import NodeClient
    from calico.tutorial import network_conf
    from lab.cluster import Lab

    lab = Lab("bn" + secrets.token_hex(3))
    node = "calico-01"
    rows_list: list[tuple[str, dict]] = []
    floods: list[dict] = []
    try:
        lab.up(nodes=2)
        for n in lab.nodes:
            for net in ("network1", "network2"):
                lab.write_net_conf(n, f"10-calico-{net}.conf", network_conf(net))
        client = NodeClient(f"unix://{lab.node_dir(node) / 'agent.sock'}", timeout=60)
        httpd = client.run_pod(networks=["network1"], exec_="httpd", args=["-f", "-h", "/"])
        source = client.run_pod(networks=["network2"], exec_="/bin/sleep", args=["3600"])
        pods = {p["uuid"]: p for p in client.pods()}
        dst_ip = next(n["ip"] for n in pods[httpd["uuid"]]["networks"] if n["name"] == "network1")
        src_ip = next(n["ip"] for n in pods[source["uuid"]]["networks"] if n["name"] == "network2")
        src_netns = str(lab.node_dir(node) / "rkt" / "pods" / source["uuid"] / "netns")

        rows_list.append(("3 pods", listing(lab, client, node, args.requests, args.rkt_runs)))
        fabricate_pods(lab.node_dir(node) / "rkt", args.pods)
        rows_list.append(
            (f"{args.pods + 3:,} pods", listing(lab, client, node, args.requests, args.rkt_runs))
        )

        for i, rate in enumerate(float(r) for r in args.rates.split(",")):
            floods.append(
                flood_once(lab, client, node, src_netns, src_ip, dst_ip, 81 + i, args.flood, rate)
            )
        ring = ring_read(str(lab.node_dir(node) / "agent.sock"))
        client.close()
    finally:
        lab.down()

    print(
        f"\n## GET /v1/pods on one node ({args.requests} requests; rkt list {args.rkt_runs} runs)\n"
    )
    print("| pods listed | GET /v1/pods p50 / p99 | `rkt list --format=json` p50 / p99 "
          "| ratio p50 (rkt / API) | GET /v1/health p50 / p99 |")  # fmt: skip
    print("|---|---|---|---|---|")
    for label, r in rows_list:
        ms = {k: (pct(v, 50) * 1e3, pct(v, 99) * 1e3) for k, v in r.items() if k != "count"}
        print(
            f"| {label} ({r['count'][0]:,} in the answer) "
            f"| {ms['pods'][0]:.1f} / {ms['pods'][1]:.1f} ms "
            f"| {ms['rkt'][0]:.1f} / {ms['rkt'][1]:.1f} ms "
            f"| {ms['rkt'][0] / ms['pods'][0]:.2f} "
            f"| {ms['health'][0]:.2f} / {ms['health'][1]:.2f} ms |"
        )
    big = rows_list[-1][1]
    p50 = pct(big["pods"], 50) * 1e3
    print(f"\nGET /v1/pods at {rows_list[-1][0]}: p50 {p50:.1f} ms, "
          f"{pct(big['rkt'], 50) * 1e3 / p50:.1f}x faster than `rkt list --format=json`; "
          f"budget p50 <= {BUDGET_PODS_MS:.0f} ms (issue 15): "
          f"**{'met' if p50 <= BUDGET_PODS_MS else 'MISSED'}**")  # fmt: skip
    print(f"\n## Flow stream: {args.flood:,} denied SYNs per run, one follower (ring 10,000)\n")
    print("| offered SYN/s | sent at | denied by kernel (NFLOG) | recorded by collector "
          "| read by follower | told dropped | follower records/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for f in floods:
        offered = f"{f['rate']:,.0f}" if f["rate"] else "unpaced"
        print(
            f"| {offered} | {f['send_rate']:,.0f}/s | {f['kernel']:,} | {f['collector']:,} "
            f"| {f['streamed']:,} | {f['dropped']:,} | {f['per_s']:,.0f} |"
        )
    n, t = ring["client"]
    _, traw = ring["raw"]
    print(
        f"\nReading the full ring without follow ({n:,} records): NodeClient "
        f"{n / t:,.0f} records/s, raw socket bytes {n / traw:,.0f} records/s "
        f"(ratio {t / traw:.2f})."
    )
    clean = [f for f in floods if f["dropped"] == 0 and f["streamed"] >= f["kernel"]]
    if clean:
        best = max(clean, key=lambda f: f["send_rate"])
        print(
            f"\nHighest offered rate with nothing lost over a {args.flood:,}-SYN flood: "
            f"{best['send_rate']:,.0f} SYN/s "
            f"(follower read {best['per_s']:,.0f} records/s)."
        )
    else:
        print("\nEvery rate lost records somewhere (see the columns for where).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
