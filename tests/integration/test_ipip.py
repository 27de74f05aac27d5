"""IPIP with real packets: three hosts on two subnets behind a router that knows no pod
routes, each with tunl0 from `calico-tunl` (the TUN relay: this kernel has no ipip), and
each programmed by the agent's own calculation and dataplane code (run in the host's
namespace, from resources given here instead of etcd): tunl0's address and MTU, the
routes `<block> via <host> dev tunl0 onlink`, policy chains, the IPIP host guard.

    h1 192.168.61.10 ─┐ br61 (router 192.168.61.1)
    h2 192.168.61.11 ─┘          router ── 192.168.62.1 ── h3 192.168.62.10
    pods: a (network1) on h1 10.77.1.2, b (network1) on h2 10.77.2.2, c (network2) on h3 10.77.3.2

Every name starts with a per-run prefix; everything is removed at the end, on failure too.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.dataplane import netns
from agent.tunnel.packet import icmp_echo
from kernel.ns import run_in_netns
from plugin.veth import host_ifname

pytestmark = [pytest.mark.root]

TUNL = str(Path(sys.executable).with_name("calico-tunl"))
API = "projectcalico.org/v3"
HOSTS = {"h1": "192.168.61.10/24", "h2": "192.168.61.11/24", "h3": "192.168.62.10/24"}
GATEWAY = {"h1": "192.168.61.1", "h2": "192.168.61.1", "h3": "192.168.62.1"}
TUNNEL_ADDR = {"h1": "10.77.1.1", "h2": "10.77.2.1", "h3": "10.77.3.1"}
BLOCKS = {"h1": "10.77.1.0/26", "h2": "10.77.2.0/26", "h3": "10.77.3.0/26"}
PODS = {"a": ("h1", "10.77.1.2", "network1"), "b": ("h2", "10.77.2.2", "network1"),
        "c": ("h3", "10.77.3.2", "network2")}  # fmt: skip
PORT = 8080

APPLY = """
import json, sys
from agent.calc.calculator import calculate
from agent.calc.model import Inputs
from agent.dataplane.apply import Applier
from calico.resources import Resource
d = json.loads(sys.argv[1])
res = [Resource.from_dict(r) for r in d["resources"]]
by = lambda k: [r for r in res if r.KIND == k]
inputs = Inputs(d["node"], profiles={p.metadata.name: p for p in by("Profile")},
                endpoints=by("WorkloadEndpoint"), nodes={n.metadata.name: n for n in by("Node")},
                blocks=d["blocks"], pools=by("IPPool"))
r = Applier().apply(calculate(inputs), full=True)
print(json.dumps({"errors": r.errors, "route_errors": r.route_errors}))
"""


def sh(*args: str, check: bool = True) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def res(kind: str, name: str, spec: dict, namespace: str | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


class Net:
    def __init__(self, tmp: Path):
        self.p = "ip" + secrets.token_hex(2)
        self.tmp = tmp
        self.namespaces: list[str] = []
        self.relays: dict[str, subprocess.Popen] = {}
        self.servers: list[socket.socket] = []
        self.cids = {pod: pod + secrets.token_hex(8) for pod in PODS}

    def ns(self, name: str) -> str:
        return f"{self.p}-{name}"

    def _netns(self, name: str) -> str:
        ns = self.ns(name)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def build(self) -> None:
        r = self._netns("router")
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", r, "link", "add", "br61", "type", "bridge")
        sh("ip", "-n", r, "addr", "add", "192.168.61.1/24", "dev", "br61")
        sh("ip", "-n", r, "link", "set", "br61", "up")
        for i, (host, addr) in enumerate(HOSTS.items()):
            h = self._netns(host)
            port = f"p{i}"
            sh("ip", "-n", r, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", h)  # fmt: skip
            if addr.startswith("192.168.61."):
                sh("ip", "-n", r, "link", "set", port, "master", "br61")
            else:
                sh("ip", "-n", r, "addr", "add", "192.168.62.1/24", "dev", port)
            sh("ip", "-n", r, "link", "set", port, "up")
            sh("ip", "-n", h, "addr", "add", addr, "dev", "eth0")
            sh("ip", "-n", h, "link", "set", "eth0", "up")
            sh("ip", "-n", h, "route", "add", "default", "via", GATEWAY[host])
        for pod, (host, ip, _) in PODS.items():
            ns, h = self._netns(pod), self.ns(host)
            veth = host_ifname(self.cids[pod], "eth0")
            sh("ip", "-n", h, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", ns)  # fmt: skip
            sh("ip", "-n", h, "link", "set", veth, "address", "ee:ee:ee:ee:ee:ee", "up")
            sh("ip", "-n", h, "route", "add", f"{ip}/32", "dev", veth, "scope", "link")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            sh("ip", "-n", ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
            self.serve(ns, ip, PORT)

    def serve(self, ns: str, ip: str, port: int) -> None:
        import threading

        sock = netns.listen(ns, ip, port)
        self.servers.append(sock)

        def loop():
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                with contextlib.suppress(OSError):
                    conn.sendall(b"ok")
                conn.close()

        threading.Thread(target=loop, daemon=True).start()

    def start_relays(self) -> None:
        for host in HOSTS:
            log = open(self.tmp / f"{host}.tunl.log", "ab")  # noqa: SIM115 - the child's
            self.relays[host] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(host), TUNL, "--status-file",
                 str(self.status_path(host)), "--status-interval", "0.2"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            log.close()

    def status_path(self, host: str) -> Path:
        return self.tmp / f"{host}.tunl.json"

    def status(self, host: str) -> dict:
        try:
            return json.loads(self.status_path(host).read_text())
        except (OSError, ValueError):
            return {}

    def resources(self, mode: str) -> list[dict]:
        out = [res("IPPool", "pool1", {"cidr": "10.77.0.0/16", "ipipMode": mode})]
        for net in ("network1", "network2"):
            out.append(res("Profile", net, {
                "ingress": [{"action": "Allow", "source": {"selector": f"has({net})"}}],
                "egress": [{"action": "Allow"}], "labelsToApply": {net: ""}}))  # fmt: skip
        for host, addr in HOSTS.items():
            bgp = {"ipv4Address": addr, "ipv4IPIPTunnelAddr": TUNNEL_ADDR[host]}
            out.append(res("Node", host, {"bgp": bgp}))
        for pod, (host, ip, net) in PODS.items():
            cid = self.cids[pod]
            out.append(res("WorkloadEndpoint", f"{host}-cni-{cid}-eth0", {
                "orchestrator": "cni", "node": host, "containerID": cid, "endpoint": "eth0",
                "interfaceName": host_ifname(cid, "eth0"), "ipNetworks": [f"{ip}/32"],
                "profiles": [net]}, "default"))  # fmt: skip
        return out

    def apply(self, host: str, mode: str = "Always") -> dict:
        data = {"node": host, "resources": self.resources(mode),
                "blocks": {BLOCKS[h]: h for h in HOSTS}}  # fmt: skip
        out = sh("ip", "netns", "exec", self.ns(host), sys.executable, "-c", APPLY,
                 json.dumps(data))  # fmt: skip
        return json.loads(out.strip().splitlines()[-1])

    def destroy(self) -> None:
        for proc in self.relays.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        for sock in self.servers:
            with contextlib.suppress(OSError):
                sock.close()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def wait_until(predicate, timeout: float, what: str):
    import time

    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    for tool in ("iptables-legacy-restore", "ipset", "busybox"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    if not Path("/dev/net/tun").exists():
        pytest.skip("needs /dev/net/tun")
    n = Net(tmp_path_factory.mktemp("ipip"))
    try:
        n.build()
        n.start_relays()
        for host in HOSTS:
            wait_until(lambda h=host: n.status(h).get("mode"), 10, f"{host} relay up")
        for host in HOSTS:
            result = n.apply(host)
            assert not result["errors"], result
        yield n
    finally:
        n.destroy()


def ping(n: Net, src: str, dst_ip: str) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", n.ns(src), "busybox", "ping", "-c", "1",
                           "-W", "2", dst_ip], capture_output=True, timeout=10)  # fmt: skip
    return proc.returncode == 0


def test_agent_configures_tunl0_and_routes_through_it(net):
    for host in HOSTS:
        link = json.loads(sh("ip", "-n", net.ns(host), "-j", "addr", "show", "dev", "tunl0"))[0]
        assert link["mtu"] == 1480 and "UP" in link["flags"]
        assert [(a["local"], a["prefixlen"]) for a in link["addr_info"]] == [
            (TUNNEL_ADDR[host], 32)
        ]
    routes = json.loads(sh("ip", "-n", net.ns("h1"), "-j", "route", "show", "proto", "80"))
    tunneled = {r["dst"]: (r.get("gateway"), r.get("dev"), r.get("flags")) for r in routes}
    assert tunneled["10.77.2.0/26"] == ("192.168.61.11", "tunl0", ["onlink"])
    assert tunneled["10.77.3.0/26"] == ("192.168.62.10", "tunl0", ["onlink"])
    # The router knows no pod address: without the tunnel nothing would get through.
    assert "10.77." not in sh("ip", "-n", net.ns("router"), "route", "show")


def test_ping_and_tcp_across_subnets_through_the_tunnel(net):
    before = net.status("h3")["in"]["received_packets"]
    wait_until(lambda: ping(net, "a", "10.77.2.2"), 10, "a -> b ping (same subnet)")
    assert netns.tcp_connect(net.ns("a"), "10.77.2.2", PORT, timeout=2)
    # Policy on encapsulated traffic: b (network1) -> c (network2) is denied by c's
    # profile after decapsulation on h3, c -> ... network1 denies c.
    assert not netns.tcp_connect(net.ns("b"), "10.77.3.2", PORT, timeout=1)
    assert not netns.tcp_connect(net.ns("c"), "10.77.1.2", PORT, timeout=1)
    # The denied packets did cross the tunnel: h3's relay received them.
    wait_until(lambda: net.status("h3")["in"]["received_packets"] > before, 5, "h3 rx")


def test_policy_allows_same_network_across_subnets(net):
    # Make c network1: h1's and h3's dataplanes both change (profile of c's endpoint).
    global PODS
    saved = PODS
    PODS = {**saved, "c": ("h3", "10.77.3.2", "network1")}
    try:
        for host in HOSTS:
            assert not net.apply(host)["errors"]
        wait_until(
            lambda: netns.tcp_connect(net.ns("a"), "10.77.3.2", PORT, timeout=1), 10, "a -> c"
        )
        assert ping(net, "c", "10.77.1.2")
        s1, s3 = net.status("h1"), net.status("h3")
        assert s1["out"]["sent_packets"] > 0 and s3["in"]["written_packets"] > 0
        stats = json.loads(sh("ip", "-n", net.ns("h3"), "-s", "-j", "link", "show", "tunl0"))
        assert stats[0]["stats64"]["rx"]["packets"] > 0
    finally:
        PODS = saved
        for host in HOSTS:
            net.apply(host)
    assert not netns.tcp_connect(net.ns("a"), "10.77.3.2", PORT, timeout=1)


def test_ipip_from_a_host_that_is_no_node_is_dropped_and_counted(net):
    def guard_count() -> int:
        out = sh("ip", "netns", "exec", net.ns("h2"), "iptables-legacy", "-t", "filter", "-L",
                 "cali-INPUT", "-v", "-x", "-n")  # fmt: skip
        rows = [line.split() for line in out.splitlines() if "cali40all-hosts-net" in line]
        assert rows, out
        return int(rows[0][0])

    before_guard = guard_count()
    before_rx = net.status("h2")["in"]["received_packets"]
    inner = icmp_echo("10.77.3.2", "10.77.2.2")  # claims to be pod c, on h3

    def forge():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
        try:
            for _ in range(3):
                s.sendto(inner, ("192.168.61.11", 0))
        finally:
            s.close()

    run_in_netns(net.ns("router"), forge)  # the router is no node
    wait_until(lambda: guard_count() >= before_guard + 3, 5, "the guard to count 3 drops")
    # The relay never saw them (raw sockets receive after INPUT).
    assert net.status("h2")["in"]["received_packets"] == before_rx
    # The same from a node passes the guard and reaches the relay.
    run_in_netns(net.ns("h1"), forge)
    wait_until(
        lambda: net.status("h2")["in"]["received_packets"] >= before_rx + 3, 5, "node's IPIP"
    )


def test_relay_exits_cleanly_on_sigterm_and_tunl0_goes(net):
    proc = net.relays["h3"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert subprocess.run(["ip", "-n", net.ns("h3"), "link", "show", "tunl0"],
                          capture_output=True).returncode != 0  # fmt: skip
    final = net.status("h3")
    assert final["mode"] == "tun" and final["in"]["received_packets"] > 0


def test_without_tunl0_an_ipip_pool_is_an_error_the_agent_reports(net):
    # After the previous test h3 has no tunl0: the apply says so (the agent's health
    # carries apply errors and turns unhealthy), instead of silently routing nowhere.
    result = net.apply("h3")
    assert any("needs tunl0" in e and "calico-tunl" in e for e in result["errors"]), result
    assert net.apply("h3", "Never")["errors"] == []
