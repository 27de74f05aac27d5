"""The flow collector on a real kernel, in a namespace pair of its own.

"node" namespace (10.252.X.1) --veth-- "pod" namespace (10.252.X.2). In the node namespace
an INPUT rule NFLOGs (prefix from `nflog_prefix`) and drops TCP to port 81; a listener
answers on port 80. The collector runs inside the node namespace (`ip netns exec`) and
streams its subscription as JSON lines; the test reads them.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from agent.flows.prefix import nflog_prefix

pytestmark = pytest.mark.root

PREFIX = nflog_prefix("I", "pol", "default/deny-81", 2)

COLLECTOR = r"""
import json, sys
from agent.flows.collector import FlowCollector
pod = sys.argv[1]
endpoints = {pod: {"name": "node-cni-0123456789a-eth0", "network": "net1",
                   "profiles": ["net1"], "pod": "client"}}
c = FlowCollector(lookup=endpoints.get,
                  allow_resolver=lambda r: {"kind": "profile", "name": "net1",
                                            "direction": "ingress", "rule_index": 0})
c.start()
print(json.dumps({"type": "ready"}), flush=True)
for item in c.subscribe(follow=True, heartbeat=0.5):
    print(json.dumps(item), flush=True)
"""

LISTENER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 80)); s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"hi"); c.close()
"""

SYN_81 = r"""
import socket, sys
s = socket.socket(); s.settimeout(0.3)
try:
    s.connect((sys.argv[1], 81))
except OSError:
    pass
"""

CONNECT_80 = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=3)
print(s.recv(2).decode())
"""


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


@dataclass
class Pair:
    node: str
    pod: str
    node_ip: str
    pod_ip: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def popen(self, ns: str, *cmd: str) -> subprocess.Popen:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.getcwd(),
        )
        self.procs.append(p)
        return p


def _make_pair(tag: str, third_octet: int) -> Pair:
    pair = Pair(f"{tag}n", f"{tag}p", f"10.252.{third_octet}.1", f"10.252.{third_octet}.2")
    run("ip", "netns", "add", pair.node)
    run("ip", "netns", "add", pair.pod)
    run("ip", "link", "add", f"{tag}a", "netns", pair.node, "type", "veth", "peer", "name",
        f"{tag}b", "netns", pair.pod)  # fmt: skip
    for ns, dev, ip in ((pair.node, f"{tag}a", pair.node_ip), (pair.pod, f"{tag}b", pair.pod_ip)):
        run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
    ipt = ["ip", "netns", "exec", pair.node, "iptables-legacy", "-A", "INPUT", "-p", "tcp"]
    run(*ipt, "--dport", "81", "-m", "conntrack", "--ctstate", "NEW", "-j", "NFLOG",
        "--nflog-group", "1", "--nflog-prefix", PREFIX, "--nflog-threshold", "1")  # fmt: skip
    run(*ipt, "--dport", "81", "-j", "DROP")
    return pair


def _remove_pair(pair: Pair) -> None:
    for p in pair.procs:
        if p.poll() is None:
            p.kill()
        try:
            p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    for ns in (pair.node, pair.pod):
        run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def pair() -> Iterator[Pair]:
    for tool in ("ip", "iptables-legacy"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    tag = "flt" + secrets.token_hex(3)
    p: Pair | None = None
    try:
        p = _make_pair(tag, 1 + secrets.randbelow(250))
        yield p
    finally:
        if p is not None:
            _remove_pair(p)
        else:  # failed half-way: remove whatever exists
            for ns in (f"{tag}n", f"{tag}p"):
                run("ip", "netns", "del", ns, check=False)
    left = run("ip", "netns", "list").stdout
    assert tag not in left


def _lines(proc: subprocess.Popen) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for(q: queue.Queue, proc: subprocess.Popen, pred, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching flow in time")
        try:
            line = q.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"collector exited: {err}")
        item = json.loads(line)
        if pred(item):
            return item


def test_denied_and_allowed_flows_are_reported(pair: Pair):
    py = sys.executable
    listener = pair.popen(pair.node, py, "-c", LISTENER, pair.node_ip)
    assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
    collector = pair.popen(pair.node, py, "-c", COLLECTOR, pair.pod_ip)
    lines = _lines(collector)
    assert _wait_for(lines, collector, lambda i: i["type"] == "ready", 10)

    # Denied: one SYN to :81 (the client gives up after 0.3 s, so no retransmit matters).
    sent = time.monotonic()
    run("ip", "netns", "exec", pair.pod, py, "-c", SYN_81, pair.node_ip)
    denied = _wait_for(
        lines, collector, lambda i: i["type"] == "flow" and i["verdict"] == "denied", 5
    )
    # The record is pushed when the SYN is dropped, long before the client timed out.
    assert time.monotonic() - sent < 1.0 + 0.3 + 0.5  # interpreter start of the client, too
    assert (denied["src"], denied["dst"], denied["dport"]) == (pair.pod_ip, pair.node_ip, 81)
    assert denied["protocol"] == "tcp" and denied["tcp_flags"] == ["SYN"]
    assert denied["rule"]["kind"] == "policy"
    assert denied["rule"]["name"] == "default/deny-81"
    assert denied["rule"]["rule_index"] == 2
    assert denied["rule"]["direction"] == "ingress"
    assert denied["src_endpoint"]["pod"] == "client"
    assert denied["in_iface"] and denied["in_iface"].startswith("flt")
    assert abs(denied["time"] - time.time()) < 5

    # Allowed: a full connection to :80.
    out = run("ip", "netns", "exec", pair.pod, py, "-c", CONNECT_80, pair.node_ip).stdout
    assert out.strip() == "hi"
    allowed = _wait_for(
        lines, collector, lambda i: i["type"] == "flow" and i["verdict"] == "allowed", 5
    )
    assert (allowed["src"], allowed["dst"], allowed["dport"]) == (pair.pod_ip, pair.node_ip, 80)
    assert allowed["src_endpoint"]["name"] == "node-cni-0123456789a-eth0"
    assert allowed["rule"]["kind"] == "profile" and allowed["direction"] == "egress"


def test_denied_record_arrives_within_one_second(pair: Pair):
    """Measured from inside one process: SYN sent -> record read from the subscription."""
    script = r"""
import json, socket, subprocess, sys, time
from agent.flows.collector import FlowCollector
from calico.flowfilter import FlowFilter
node_ip, pod_ns = sys.argv[1], sys.argv[2]
c = FlowCollector(); c.start()
sub = c.subscribe(FlowFilter(verdict=("denied",)), follow=True, heartbeat=0.2)
client = subprocess.Popen(["ip", "netns", "exec", pod_ns, sys.executable, "-c",
    "import socket,sys; s=socket.socket(); s.settimeout(0.5); print('go', flush=True)\n"
    "try: s.connect((sys.argv[1], 81))\nexcept OSError: pass", node_ip],
    stdout=subprocess.PIPE, text=True)
client.stdout.readline(); t0 = time.time()
for item in sub:
    if item["type"] == "flow":
        print(json.dumps({"latency": time.time() - t0, "flow": item})); break
    if time.time() - t0 > 5: print(json.dumps({"latency": None})); break
client.wait(); c.stop()
"""
    out = run("ip", "netns", "exec", pair.node, sys.executable, "-c", script, pair.node_ip,
              pair.pod).stdout  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    assert result["latency"] is not None and result["latency"] < 1.0
    assert result["flow"]["rule"]["name"] == "default/deny-81"
