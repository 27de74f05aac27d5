"""Benchmark: how fast the flow collector ingests denies and allows, and how fast it is read.

    sudo python bench/bench_flows.py [--packets 50000] [--flows 20000]

Builds a namespace pair of its own ("node" 10.253.X.1 --veth-- "pod" 10.253.X.2; removed at
the end, even on failure; nothing outside those namespaces is touched). In the node
namespace an INPUT rule NFLOGs and drops TCP to port 81, as the agent's deny rules do. A raw
socket in the pod namespace sends a bounded flood of SYNs (distinct source ports) to port 81,
or of UDP datagrams to an open port for conntrack NEW events. Measured in the same run:

1. NFLOG, live: the flood while the reader runs. Reference: a bare NFLOG socket that only
   counts datagrams; ours: FlowCollector (parse, enrich, ring). Records/s from the first to
   the last record, and how many the kernel dropped for the reader (overruns).
2. NFLOG, backlog: the whole flood queued first (large receive buffer), then drained:
   the processing rate with the sender out of the picture. Same reference.
3. conntrack NEW, live: FlowCollector's allowed records against a bare ctnetlink socket
   counting datagrams, and against `conntrack -E -e NEW` (its own count, printed on SIGINT).
   Both of ours use the same 32 MB receive buffer; the tool is asked for the same.
4. Readers: records/s one subscription delivers from a full ring (as wire dicts, and as
   JSON lines like the API writes them) against the bare `FlowRing.read`; then a follower
   writing JSON while the collector ingests the flood: how many records it was told it
   dropped.

Prints a markdown table; ratio = reference rate / ours (above 1: ours is slower).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.flows.collector import FlowCollector  # noqa: E402
from agent.flows.conntrack import ConntrackEventSocket  # noqa: E402
from agent.flows.nflog import NetfilterReader, NflogSocket, parse_nflog_messages  # noqa: E402
from agent.flows.prefix import nflog_prefix  # noqa: E402
from agent.flows.records import ALLOWED, EndpointInfo, FlowRecord, FlowRing  # noqa: E402

PY = sys.executable
SELF = str(Path(__file__).resolve())
IDLE = 1.0  # seconds without a record after the first one: the flood is over


# ---------------------------------------------------------------- traffic (runs in "pod")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _packets(kind: str, src: str, dst: str, n: int) -> list[bytes]:
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    out = []
    for i in range(n):
        sport = 1024 + (i % 60000)
        if kind == "syn":
            seq = random.getrandbits(32)
            hdr = struct.pack("!HHIIBBHHH", sport, 81, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
            pseudo = s + d + struct.pack("!BBH", 0, 6, len(hdr))
            hdr = hdr[:16] + struct.pack("!H", _checksum(pseudo + hdr)) + hdr[18:]
        else:  # udp, checksum 0 (allowed for IPv4)
            hdr = struct.pack("!HHHH", sport, 5353, 8 + 4, 0) + b"flow"
        out.append(hdr)
    return out


def send_flood(kind: str, src: str, dst: str, n: int) -> None:
    """Raw socket flood; prints {"sent": n, "seconds": t}."""
    proto = socket.IPPROTO_TCP if kind == "syn" else socket.IPPROTO_UDP
    packets = _packets(kind, src, dst, n)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    addr = (dst, 0)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    sent = 0
    for p in packets:
        while True:
            try:
                sock.sendto(p, addr)
                sent += 1
                break
            except BlockingIOError:
                time.sleep(0.0005)
            except OSError:  # e.g. ENOBUFS on the veth queue: retry
                time.sleep(0.0005)
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - t0}), flush=True)


# ---------------------------------------------------------------- readers (run in "node")


def _drain_bare(sock: NetfilterReader, expect: int, timeout: float) -> dict:
    """Count datagrams (one per packet with threshold 1) until idle; no parsing."""
    buf = bytearray(1 << 16)
    s = sock.sock
    s.settimeout(IDLE)
    got = 0
    first = last = None
    deadline = time.monotonic() + timeout
    while got < expect and time.monotonic() < deadline:
        try:
            if s.recv_into(buf):
                got += 1
                last = time.perf_counter()
                if first is None:
                    first = last
        except TimeoutError:
            if first is not None:
                break
        except OSError:
            sock.lost_overruns += 1
    return {"got": got, "first": first, "last": last, "lost": sock.lost_overruns}


def reader_main(mode: str, expect: int, pod_ip: str) -> None:
    """One measurement inside the node namespace; prints one JSON line at the end."""
    lookup = {pod_ip: {"name": "node-cni-0123456789a-eth0", "network": "net1", "pod": "client"}}
    if mode == "ct-bare":
        ct = ConntrackEventSocket()
        print("ready", flush=True)
        r = _drain_bare(ct, expect, 60)
        ct.close()
    elif mode in ("nflog-bare", "nflog-bare-backlog"):
        backlog = mode.endswith("backlog")
        sock = NflogSocket(1, rcvbuf=512 << 20) if backlog else NflogSocket(1)
        print("ready", flush=True)
        if backlog:
            sys.stdin.readline()  # the flood is in the socket buffer now
        r = _drain_bare(sock, expect, 60)
        sock.close()
    elif mode == "nflog-collector-backlog":
        c = FlowCollector(lookup=lookup.get, nflog=False, conntrack=False)
        sock = NflogSocket(1, rcvbuf=512 << 20)
        print("ready", flush=True)
        sys.stdin.readline()
        sock.sock.settimeout(IDLE)
        got = 0
        first = last = None
        while got < expect:
            try:
                data = sock.recv_raw()
            except TimeoutError:
                break
            now = time.time()
            got += c.ingest_nflog(parse_nflog_messages(data), now)
            last = time.perf_counter()
            if first is None:
                first = last
        r = {"got": got, "first": first, "last": last, "lost": sock.lost_overruns}
        sock.close()
    elif mode in ("nflog-collector", "ct-collector", "nflog-collector-follow"):
        is_ct = mode == "ct-collector"
        c = FlowCollector(lookup=lookup.get, nflog=not is_ct, conntrack=is_ct)
        c.start()
        follower: dict = {}
        if mode.endswith("follow"):

            def follow() -> None:
                n = dropped = 0
                with open(os.devnull, "w") as out:
                    for item in c.subscribe(follow=True, heartbeat=None):
                        out.write(json.dumps(item, separators=(",", ":")) + "\n")
                        if item["type"] == "dropped":
                            dropped += item["count"]
                        else:
                            n += 1
                follower.update(read=n, dropped=dropped)

            ft = threading.Thread(target=follow)
            ft.start()
        print("ready", flush=True)
        first = last = None
        seen = 0
        deadline = time.monotonic() + 60
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            total = c.ring.total
            if total != seen:
                last = time.perf_counter()
                if first is None:
                    first = last
                seen = total
                idle_since = time.monotonic()
            elif (first is not None and time.monotonic() - idle_since > IDLE) or seen >= expect:
                break
            time.sleep(0.002)
        stats = c.stats()
        c.stop()
        if mode.endswith("follow"):
            ft.join(10)
        lost = stats["kernel_overruns"]["conntrack" if is_ct else "nflog"]
        r = {"got": c.ring.total, "first": first, "last": last, "lost": lost, **follower}
        if not is_ct:
            r["seq_lost"] = stats["nflog_lost"]
    else:
        raise SystemExit(f"unknown mode {mode}")
    span = (r["last"] - r["first"]) if r.get("first") and r.get("last") else None
    r.pop("first", None)
    r.pop("last", None)
    print(json.dumps({**r, "span": span}), flush=True)


# ---------------------------------------------------------------- orchestration (root ns)


def sh(*cmd: str, check: bool = True) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=check).stdout


class Pair:
    def __init__(self) -> None:
        self.tag = "flb" + secrets.token_hex(3)
        x = 1 + secrets.randbelow(250)
        self.node, self.pod = f"{self.tag}n", f"{self.tag}p"
        self.node_ip, self.pod_ip = f"10.253.{x}.1", f"10.253.{x}.2"
        self.procs: list[subprocess.Popen] = []

    def up(self) -> None:
        sh("ip", "netns", "add", self.node)
        sh("ip", "netns", "add", self.pod)
        a, b = f"{self.tag}a", f"{self.tag}b"
        sh("ip", "link", "add", a, "netns", self.node, "type", "veth", "peer", "name", b,
           "netns", self.pod)  # fmt: skip
        for ns, dev, ip in ((self.node, a, self.node_ip), (self.pod, b, self.pod_ip)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        ipt = ["ip", "netns", "exec", self.node, "iptables-legacy", "-A", "INPUT", "-p", "tcp"]
        sh(*ipt, "--dport", "81", "-m", "conntrack", "--ctstate", "NEW", "-j", "NFLOG",
           "--nflog-group", "1", "--nflog-prefix", nflog_prefix("I", "pol", "bench/deny-81", 0),
           "--nflog-threshold", "1")  # fmt: skip
        sh(*ipt, "--dport", "81", "-j", "DROP")

    def popen(self, ns: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.procs.append(p)
        return p

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for ns in (self.node, self.pod):
            sh("ip", "netns", "del", ns, check=False)


def _go(p: subprocess.Popen) -> None:
    assert p.stdin is not None
    p.stdin.write("\n")
    p.stdin.flush()


def _ready(p: subprocess.Popen) -> None:
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"helper did not start: {line!r}")


def _last_json(p: subprocess.Popen) -> dict:
    assert p.stdout is not None
    out, _ = p.communicate(timeout=120)
    return json.loads(out.strip().splitlines()[-1])


def flood_with_reader(pair: Pair, mode: str, kind: str, n: int, backlog: bool) -> dict:
    if kind == "udp":
        sh("ip", "netns", "exec", pair.node, "conntrack", "-F", check=False)
    reader = pair.popen(pair.node, PY, SELF, "--reader", mode, str(n), pair.pod_ip)
    _ready(reader)
    sender = pair.popen(pair.pod, PY, SELF, "--send", kind, pair.pod_ip, pair.node_ip, str(n))
    _ready(sender)
    _go(sender)
    sent = _last_json(sender)
    if backlog:
        time.sleep(0.3)
        _go(reader)
    result = _last_json(reader)
    return {**result, "sent": sent["sent"], "send_seconds": sent["seconds"]}


def conntrack_tool(pair: Pair, n: int) -> dict:
    sh("ip", "netns", "exec", pair.node, "conntrack", "-F", check=False)
    with tempfile.TemporaryFile(mode="w+") as err:
        tool = subprocess.Popen(
            ["ip", "netns", "exec", pair.node, "conntrack", "-E", "-e", "NEW", "-p", "udp",
             "-b", str(32 << 20)],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
        pair.procs.append(tool)
        got = 0
        first = last = None
        done = threading.Event()

        def count() -> None:
            nonlocal got, first, last
            assert tool.stdout is not None
            for _line in tool.stdout:
                got += 1
                last = time.perf_counter()
                if first is None:
                    first = last
                if got >= n:
                    break
            done.set()

        threading.Thread(target=count, daemon=True).start()
        time.sleep(0.5)  # conntrack -E subscribes at start; give it a moment
        sender = pair.popen(pair.pod, PY, SELF, "--send", "udp", pair.pod_ip, pair.node_ip, str(n))
        _ready(sender)
        _go(sender)
        _last_json(sender)
        give_up = time.perf_counter() + 10
        while not done.wait(0.1):
            now = time.perf_counter()
            if (last is not None and now - last > IDLE) or (last is None and now > give_up):
                break
        tool.send_signal(signal.SIGINT)  # it flushes and prints how many events it showed
        try:
            tool.wait(5)
        except subprocess.TimeoutExpired:
            tool.kill()
            tool.wait()
        err.seek(0)
        text = err.read()
        shown = re.search(r"(\d+) flow events have been shown", text)
        total = int(shown.group(1)) if shown else got
        span = (last - first) if first and last else None
        return {"got": total, "span": span, "lost": "ENOBUFS" if "ENOBUFS" in text else 0}


def reader_rates(n: int) -> list[tuple[str, float, float]]:
    """(measure, ours records/s, reference records/s) for reading a full ring."""
    ring_cap = 10_000
    c = FlowCollector(capacity=ring_cap)
    ep = EndpointInfo("node-cni-0123456789a-eth0", network="net1", networks=("net1",), pod="x")
    recs = [
        FlowRecord(time.time(), ALLOWED, "tcp", "10.0.0.2", "10.0.0.3", 40000 + i, 80, ep, None)
        for i in range(ring_cap)
    ]
    c.ring.push_many(recs)

    def timed(fn) -> float:
        t0 = time.perf_counter()
        count = fn()
        return count / (time.perf_counter() - t0)

    ref = timed(lambda: len(FlowRing.read(c.ring, 0)[1]))
    dicts = timed(lambda: sum(1 for _ in c.subscribe()))
    dumps = timed(lambda: sum(1 for i in c.subscribe() if json.dumps(i, separators=(",", ":"))))
    return [
        ("reader: subscribe() dicts from a full ring, vs bare FlowRing.read", dicts, ref),
        ("reader: subscribe() + json.dumps (API line), vs bare FlowRing.read", dumps, ref),
    ]


def _rate(r: dict) -> float | None:
    if not r.get("span") or r["got"] < 2:
        return None
    return (r["got"] - 1) / r["span"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=50_000)
    ap.add_argument("--flows", type=int, default=20_000)
    ap.add_argument("--reader", nargs=3, metavar=("MODE", "N", "POD_IP"))
    ap.add_argument("--send", nargs=4, metavar=("KIND", "SRC", "DST", "N"))
    args = ap.parse_args()
    if args.reader:
        reader_main(args.reader[0], int(args.reader[1]), args.reader[2])
        return 0
    if args.send:
        send_flood(args.send[0], args.send[1], args.send[2], int(args.send[3]))
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    for tool in ("ip", "iptables-legacy", "conntrack"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 2

    n, f = args.packets, args.flows
    pair = Pair()
    rows: list[tuple[str, dict, dict]] = []
    try:
        pair.up()
        live_ref = flood_with_reader(pair, "nflog-bare", "syn", n, backlog=False)
        live = flood_with_reader(pair, "nflog-collector", "syn", n, backlog=False)
        rows.append(("NFLOG denies, live flood: FlowCollector vs bare socket", live, live_ref))
        back_ref = flood_with_reader(pair, "nflog-bare-backlog", "syn", n, backlog=True)
        back = flood_with_reader(pair, "nflog-collector-backlog", "syn", n, backlog=True)
        rows.append(("NFLOG denies, queued then drained: parse+enrich+ring vs recv only", back, back_ref))  # fmt: skip
        ct_tool = conntrack_tool(pair, f)
        ct_ref = flood_with_reader(pair, "ct-bare", "udp", f, backlog=False)
        ct = flood_with_reader(pair, "ct-collector", "udp", f, backlog=False)
        rows.append(("conntrack NEW (allowed), live: FlowCollector vs bare socket", ct, ct_ref))
        rows.append(("conntrack NEW (allowed), live: FlowCollector vs `conntrack -E -b 32M`", ct, ct_tool))  # fmt: skip
        follow = flood_with_reader(pair, "nflog-collector-follow", "syn", n, backlog=False)
    finally:
        pair.down()
    left = sh("ip", "netns", "list")
    if pair.tag in left:
        print(f"warning: namespaces {pair.tag}* still present", file=sys.stderr)

    print(f"\n{n:,} SYN packets to a dropped port, {f:,} UDP flows to an open one; ring 10,000.\n")
    print(
        "| measure | ours: records/s (got of sent; overruns) "
        "| reference: rate (got of sent; overruns) | ratio |"
    )
    print("|---|---|---|---|")
    for name, ours, ref in rows:
        a, b = _rate(ours), _rate(ref)
        ratio = f"{b / a:.2f}" if a and b else "n/a"
        lost_o, lost_r = ours.get("lost", 0), ref.get("lost", 0)
        if "seq_lost" in ours:
            lost_o = f"{lost_o}, {ours['seq_lost']:,} lost by seq"
        sent_o = ours.get("sent", "?")
        sent_r = ref.get("sent", sent_o)
        fa = f"{a:,.0f}" if a else "n/a"
        fb = f"{b:,.0f}" if b else "n/a"
        print(
            f"| {name} | {fa} ({ours['got']:,} of {sent_o:,}; {lost_o}) "
            f"| {fb} ({ref['got']:,} of {sent_r:,}; {lost_r}) "
            f"| {ratio} |"
        )
    for name, ours_rate, ref_rate in reader_rates(n):
        print(f"| {name} | {ours_rate:,.0f} | {ref_rate:,.0f} | {ref_rate / ours_rate:.2f} |")
    fr = _rate(follow)
    print(
        f"| follower writing JSON during the live flood: read / told dropped "
        f"| {follow.get('read', 0):,} / {follow.get('dropped', 0):,} "
        f"(collector {fr and f'{fr:,.0f}'} records/s, {follow['got']:,} recorded) | n/a | n/a |"
    )
    sends = [live_ref, live, back_ref, back]
    rates = ", ".join(f"{s['sent'] / s['send_seconds']:,.0f}" for s in sends)
    print(f"\nsender (raw socket, pod namespace), per flood: {rates} packets/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
