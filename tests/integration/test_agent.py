"""calico-agent against real kernels, with real packets, in namespaces made here.

Topology (every name starts with a per-run prefix; all removed in teardown):

    <p>-fab: bridge br0 ── <p>-n1 eth0 192.168.213.11 ── pods a1 (network1) 10.66.0.2
                       │                                  b1 (network2) 10.66.0.3
                       ├── <p>-n2 eth0 192.168.213.12 ── pods a2 (network1) 10.66.0.66
                       │                                  b2 (network2) 10.66.0.67
                       └── <p>-ext eth0 192.168.213.100 (an outside host; the nodes' default)

Pods are made as the CNI plugin makes them (veth cali<11 of container id>, /32, default via
169.254.1.1) with their WorkloadEndpoints, profiles, Nodes and IPAM blocks written to etcd
by hand. The agents run in the node namespaces (`ip netns exec`) and reach the test etcd
through a forwarder listening on each node's own 127.0.0.1:2379. The root namespace's
routes and firewall are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.dataplane import netns
from plugin.veth import host_ifname

pytestmark = [pytest.mark.root, pytest.mark.etcd]

AGENT = str(Path(sys.executable).with_name("calico-agent"))
API = "projectcalico.org/v3"
SUBNET = "192.168.213"
PORTS = (80, 8080)
OUTSIDE_PORT = 80
NODE_PORT = 9000


def sh(*args: str, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, input=input, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- etcd forwarder


class Forwarder:
    """127.0.0.1:<port> inside a namespace, piped to a TCP address in the root namespace."""

    def __init__(self, ns: str, upstream: tuple[str, int], port: int = 2379):
        self.upstream = upstream
        self.sock = netns.listen(ns, "127.0.0.1", port)
        self.conns: set[socket.socket] = set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=2)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            # Without TCP_NODELAY a relayed gRPC reply waits out Nagle against delayed ACKs
            # (~40 ms a page: a 10,000-endpoint listing took 600-700 ms here, 110 ms direct).
            for s in (down, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns |= {down, up}
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop_connections(self):
        for s in list(self.conns):
            with contextlib.suppress(OSError):
                s.close()
        self.conns.clear()

    def close(self):
        self.closed = True
        self.sock.close()
        self.drop_connections()


# ---------------------------------------------------------------- topology


def resource(kind: str, name: str, spec: dict, namespace: str | None = None, labels=None):
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


def seed_profile(net: str) -> dict:
    return resource(
        "Profile",
        net,
        {
            "ingress": [{"action": "Allow", "source": {"selector": f"has({net})"}}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {net: ""},
        },
    )


class Topology:
    """The namespaces, links, servers and agents of one test module."""

    def __init__(self, workdir: Path, prefix: str | None = None):
        self.p = prefix or "ag" + secrets.token_hex(2)
        self.workdir = workdir
        self.nodes = {f"{self.p}-n1": f"{SUBNET}.11", f"{self.p}-n2": f"{SUBNET}.12"}
        self.blocks = {f"{self.p}-n1": "10.66.0.0/26", f"{self.p}-n2": "10.66.0.64/26"}
        n1, n2 = self.nodes
        # pod -> (node, container id, ip, network)
        self.pods = {
            "a1": (n1, "a1" + secrets.token_hex(8), "10.66.0.2", "network1"),
            "b1": (n1, "b1" + secrets.token_hex(8), "10.66.0.3", "network2"),
            "a2": (n2, "a2" + secrets.token_hex(8), "10.66.0.66", "network1"),
            "b2": (n2, "b2" + secrets.token_hex(8), "10.66.0.67", "network2"),
        }
        self.namespaces: list[str] = []
        self.servers: list[socket.socket] = []
        self.forwarders: dict[str, Forwarder] = {}
        self.agents: dict[str, subprocess.Popen] = {}
        self.ext = f"{self.p}-ext"
        self.fab = f"{self.p}-fab"

    # -- names
    def ns(self, pod: str) -> str:
        return f"{self.p}-{pod}"

    def ip(self, pod: str) -> str:
        return self.pods[pod][2]

    def iface(self, pod: str) -> str:
        return host_ifname(self.pods[pod][1], "eth0")

    def node_of(self, pod: str) -> str:
        return self.pods[pod][0]

    def wep_name(self, pod: str) -> str:
        node, cid, _, _ = self.pods[pod]
        return f"{node}-cni-{cid}-eth0"

    # -- building
    def _netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        self._netns(self.fab)
        sh("ip", "-n", self.fab, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.fab, "link", "set", "br0", "up")
        hosts = {**self.nodes, self.ext: f"{SUBNET}.100"}
        for i, (host, addr) in enumerate(hosts.items()):
            self._netns(host)
            port = f"f{i}"
            sh("ip", "-n", self.fab, "link", "add", port, "type", "veth",
               "peer", "name", "eth0", "netns", host)  # fmt: skip
            sh("ip", "-n", self.fab, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", host, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh("ip", "-n", host, "link", "set", "eth0", "up")
        for node in self.nodes:
            # The default route also gives proxy ARP a route for 169.254.1.1.
            sh("ip", "-n", node, "route", "add", "default", "via", f"{SUBNET}.100")
        for node, block in self.blocks.items():
            sh("ip", "-n", self.ext, "route", "add", block, "via", self.nodes[node])
        for pod, (node, _, ip, _) in self.pods.items():
            ns = self.ns(pod)
            self._netns(ns)
            sh("ip", "-n", node, "link", "add", self.iface(pod), "type", "veth",
               "peer", "name", "eth0", "netns", ns)  # fmt: skip
            sh("ip", "-n", node, "link", "set", self.iface(pod), "address", "ee:ee:ee:ee:ee:ee")
            sh("ip", "-n", node, "link", "set", self.iface(pod), "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            sh("ip", "-n", ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
            for port in PORTS:
                self.serve(ns, ip, port)
        self.serve(self.ext, f"{SUBNET}.100", OUTSIDE_PORT)
        for node, addr in self.nodes.items():
            self.serve(node, addr, NODE_PORT)

    def serve(self, ns: str, ip: str, port: int) -> None:
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

    def forward_etcd(self, endpoints: str) -> None:
        host, port = endpoints.split(",")[0].rsplit("//", 1)[1].rsplit(":", 1)
        for node in self.nodes:
            if node in self.forwarders:
                self.forwarders[node].upstream = (host, int(port))
                self.forwarders[node].drop_connections()
            else:
                self.forwarders[node] = Forwarder(node, (host, int(port)))

    # -- datastore content
    def seed(self, ds) -> None:
        from calico.resources import Resource

        for net in ("network1", "network2"):
            ds.apply(Resource.from_dict(seed_profile(net)))
        pool = resource("IPPool", "pool1", {"cidr": "10.66.0.0/16", "blockSize": 26})
        ds.apply(Resource.from_dict(pool))
        for node, addr in self.nodes.items():
            ds.apply(
                Resource.from_dict(resource("Node", node, {"bgp": {"ipv4Address": f"{addr}/24"}}))
            )
            block = self.blocks[node]
            ds.kv_put(
                "/calico/ipam/v2/assignment/ipv4/block/" + block.replace("/", "-"),
                json.dumps({"cidr": block, "affinity": f"host:{node}", "allocations": []}),
            )
        for pod in self.pods:
            self.put_wep(ds, pod)

    def put_wep(self, ds, pod: str, profiles: list[str] | None = None) -> None:
        from calico.resources import Resource

        node, cid, ip, net = self.pods[pod]
        spec = {
            "orchestrator": "cni",
            "node": node,
            "containerID": cid,
            "endpoint": "eth0",
            "interfaceName": self.iface(pod),
            "mac": "ee:ee:ee:ee:ee:ee",
            "ipNetworks": [f"{ip}/32"],
            "profiles": profiles or [net],
        }
        ds.apply(
            Resource.from_dict(resource("WorkloadEndpoint", self.wep_name(pod), spec, "default"))
        )

    # -- agents
    def health_file(self, node: str) -> Path:
        return self.workdir / f"{node}.health.json"

    def start_agent(
        self, node: str, refresh: float = 1.0, status_interval: float = 0.5
    ) -> subprocess.Popen:
        log = open(self.workdir / f"{node}.agent.log", "ab")  # noqa: SIM115 - child's
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node, AGENT, "--nodename", node, "--backend", "direct",
             "--etcd-endpoints", "http://127.0.0.1:2379", "--refresh-interval", str(refresh),
             "--health-file", str(self.health_file(node)),
             "--status-interval", str(status_interval)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        self.agents[node] = proc
        return proc

    def stop_agent(self, node: str, sig: int = signal.SIGTERM) -> int | None:
        proc = self.agents.pop(node, None)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(sig)
        try:
            return proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(10)

    def health(self, node: str) -> dict:
        try:
            return json.loads(self.health_file(node).read_text())
        except (OSError, ValueError):
            return {}

    def agent_log(self, node: str) -> str:
        path = self.workdir / f"{node}.agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- kernel views
    def save(self, node: str) -> str:
        return sh("ip", "netns", "exec", node, "iptables-legacy-save", "-t", "filter")

    def ipsets(self, node: str) -> str:
        return sh("ip", "netns", "exec", node, "ipset", "save")

    def routes(self, node: str) -> list[dict]:
        return json.loads(sh("ip", "-n", node, "-j", "-4", "route", "show") or "[]")

    # -- teardown
    def destroy(self) -> None:
        for node in list(self.agents):
            with contextlib.suppress(Exception):
                self.stop_agent(node, signal.SIGKILL)
        for fw in self.forwarders.values():
            with contextlib.suppress(Exception):
                fw.close()
        for sock in self.servers:
            with contextlib.suppress(OSError):
                sock.close()
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def connects(
    topo: Topology, src_ns: str, dst_ip: str, port: int, timeout: float = 1.0, source=None
) -> bool:
    return netns.tcp_connect(src_ns, dst_ip, port, timeout=timeout, source=source)


def eventually_connects(topo, src, dst_ip, port, timeout=10.0):
    wait_until(
        lambda: connects(topo, src, dst_ip, port, timeout=0.5),
        timeout,
        f"{src} -> {dst_ip}:{port} to connect",
    )


def eventually_blocked(topo, src, dst_ip, port, timeout=10.0):
    wait_until(
        lambda: not connects(topo, src, dst_ip, port, timeout=0.5),
        timeout,
        f"{src} -> {dst_ip}:{port} to be blocked",
    )


# ---------------------------------------------------------------- convergence check


def desired_for(ds, node: str):
    """What the agent should have programmed, computed here from etcd (pure calc)."""
    from agent.calc.calculator import calculate
    from agent.sync import PREFIXES, ClusterCache
    from calico.datastore import Snapshot

    cache = ClusterCache()
    for prefix in PREFIXES:
        kvs, rev = ds.kv_list(prefix)
        cache.update(prefix, Snapshot({kv.key: kv for kv in kvs}, rev))
    return calculate(cache.inputs(node))


def kernel_matches(topo: Topology, ds, node: str) -> str | None:
    """None when the node's kernel holds exactly the desired agent state, else the difference."""
    from agent.dataplane import ipsets, iptables

    want = desired_for(ds, node)
    have = iptables.parse_save(topo.save(node))
    if set(have.chains) != set(want.chains):
        extra = set(have.chains) - set(want.chains)
        missing = set(want.chains) - set(have.chains)
        return f"chains: extra {sorted(extra)[:5]} missing {sorted(missing)[:5]}"
    for name, chain in want.chains.items():
        if have.chains[name] != chain.hashes:
            return f"chain {name} differs"
    for builtin, hook in want.hooks.items():
        ours = [h for h, _ in have.builtins.get(builtin, []) if h is not None]
        if ours != list(hook.hashes):
            return f"{builtin} jumps: {ours}"
    sets = ipsets.parse_save(topo.ipsets(node)).sets
    if {n: s.members for n, s in sets.items()} != {n: s.members for n, s in want.ipsets.items()}:
        return f"ipsets: {sorted(sets)} vs {sorted(want.ipsets)}"

    def norm(dst: str) -> str:
        return dst if "/" in dst else dst + "/32"

    kernel = topo.routes(node)
    ours = {norm(r["dst"]) for r in kernel if str(r.get("protocol")) == "80"}
    anyone = {norm(r["dst"]) for r in kernel if r.get("dst") != "default"}
    if not set(want.routes) <= ours or not ours <= set(want.routes) | set(want.endpoint_routes):
        return f"routes: ours {sorted(ours)}, wanted {sorted(want.routes)}"
    if not set(want.endpoint_routes) <= anyone:
        return f"endpoint routes missing: {sorted(set(want.endpoint_routes) - anyone)}"
    return None


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def topo(etcd_server, tmp_path_factory):
    from calico.datastore import Datastore

    if shutil.which("iptables-legacy-restore") is None or shutil.which("ipset") is None:
        pytest.skip("needs iptables (legacy) and ipset")
    t = Topology(tmp_path_factory.mktemp("agent"))
    ds = Datastore.connect(etcd_server.endpoints)
    try:
        ds.kv_delete_prefix("/calico/")
        t.build()
        t.forward_etcd(etcd_server.endpoints)
        t.seed(ds)
        t.ds = ds
        for node in t.nodes:
            t.start_agent(node)
        for node in t.nodes:
            wait_until(lambda n=node: t.health(n).get("healthy"), 30, f"{node} agent healthy")
        yield t
    finally:
        logs = {n: t.agent_log(n)[-3000:] for n in t.nodes}
        t.destroy()
        with contextlib.suppress(Exception):
            ds.kv_delete_prefix("/calico/")
        ds.close()
        if os.environ.get("AGENT_TEST_LOGS"):
            for n, text in logs.items():
                print(f"---- {n}\n{text}")


@pytest.fixture
def agents_running(topo):
    """Every test starts and ends with both agents up and healthy."""
    for node in topo.nodes:
        if node not in topo.agents or topo.agents[node].poll() is not None:
            topo.start_agent(node)
    for node in topo.nodes:
        wait_until(lambda n=node: topo.health(n).get("healthy"), 30, f"{node} healthy")
    yield topo
    for node, proc in topo.agents.items():  # none died on its own
        assert proc.poll() is None, topo.agent_log(node)[-2000:]


# ---------------------------------------------------------------- tests


def test_same_network_connects_other_network_does_not(agents_running):
    t = agents_running
    ns = t.ns
    # Same network, across nodes, both directions; and on one node.
    eventually_connects(t, ns("a1"), t.ip("a2"), 80)
    assert connects(t, ns("a2"), t.ip("a1"), 80)
    assert connects(t, ns("b1"), t.ip("b2"), 8080)
    assert connects(t, ns("b2"), t.ip("b1"), 80)
    # Other network: times out, both directions, same node and across.
    for src, dst in (("a1", "b1"), ("b1", "a1"), ("a1", "b2"), ("b2", "a1"), ("a2", "b1")):
        assert not connects(t, ns(src), t.ip(dst), 80, timeout=0.5), f"{src} -> {dst}"


def test_egress_out_and_replies_back_but_not_in(agents_running):
    t = agents_running
    outside = f"{SUBNET}.100"
    eventually_connects(t, t.ns("a1"), outside, OUTSIDE_PORT)
    assert connects(t, t.ns("b2"), outside, OUTSIDE_PORT)
    # Nothing outside may open a connection to a pod: ingress only from has(network1).
    assert not connects(t, t.ext, t.ip("a1"), 80, timeout=0.5)


def test_workloads_cannot_reach_their_node(agents_running):
    t = agents_running
    n1 = next(iter(t.nodes))
    assert connects(t, t.ext, t.nodes[n1], NODE_PORT)  # the service is up...
    assert not connects(t, t.ns("a1"), t.nodes[n1], NODE_PORT, timeout=0.5)  # ...not for pods


def test_forged_source_reaches_nothing(agents_running):
    t = agents_running
    forged = "10.66.0.50"
    sh("ip", "-n", t.ns("a1"), "addr", "add", f"{forged}/32", "dev", "eth0")
    try:
        eventually_connects(t, t.ns("a1"), t.ip("a2"), 80)  # its own address works
        for dst, port in ((t.ip("a2"), 80), (f"{SUBNET}.100", OUTSIDE_PORT), (t.ip("b1"), 80)):
            assert not connects(t, t.ns("a1"), dst, port, timeout=0.5, source=forged)
        # Also with the kernel's reverse-path filter off: the agent's own rule still drops it.
        iface = t.iface("a1")
        node = t.node_of("a1")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", f"net.ipv4.conf.{iface}.rp_filter=0")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
        drops = _spoof_drops(t, node, iface)
        assert not connects(t, t.ns("a1"), t.ip("a2"), 80, timeout=0.5, source=forged)
        assert _spoof_drops(t, node, iface) > drops  # dropped by the agent's rule
    finally:
        sh("ip", "-n", t.ns("a1"), "addr", "del", f"{forged}/32", "dev", "eth0", check=False)
        node = t.node_of("a1")
        sh("ip", "netns", "exec", node, "sysctl", "-qw",
           f"net.ipv4.conf.{t.iface('a1')}.rp_filter=1", check=False)  # fmt: skip


def _spoof_drops(t: Topology, node: str, iface: str) -> int:
    """Packets counted by the anti-spoofing rule (the first) of the endpoint's fw chain."""
    save = sh("ip", "netns", "exec", node, "iptables-legacy-save", "-c", "-t", "filter")
    for line in save.splitlines():
        if f"-A cali-fw-{iface} " in line and "! -s " in line:
            return int(line[1:].split(":", 1)[0])
    raise AssertionError("no anti-spoofing rule")


def test_global_policy_opens_one_port_and_closes_it_again(agents_running):
    from calico.resources import Resource

    t = agents_running
    ds = t.ds
    a1, a2, b1, b2 = (t.ns(p) for p in ("a1", "a2", "b1", "b2"))
    assert not connects(t, b1, t.ip("a1"), 80, timeout=0.5)
    gnp = resource(
        "GlobalNetworkPolicy",
        "net2-to-net1-http",
        {
            "order": 10,
            "selector": "has(network1)",
            "types": ["Ingress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "has(network2)"},
                    "destination": {"ports": [80]},
                },
                {"action": "Pass"},  # everything else: the network profiles decide
            ],
        },
    )
    ds.apply(Resource.from_dict(gnp))
    try:
        eventually_connects(t, b1, t.ip("a1"), 80)
        eventually_connects(t, b2, t.ip("a1"), 80)  # across nodes too
        assert connects(t, b1, t.ip("a2"), 80)
        assert not connects(t, b1, t.ip("a1"), 8080, timeout=0.5)  # only port 80
        assert not connects(t, a1, t.ip("b1"), 80, timeout=0.5)  # only that direction
        assert connects(t, a2, t.ip("a1"), 8080)  # Pass: network1 still reaches network1
    finally:
        ds.delete("GlobalNetworkPolicy", "net2-to-net1-http")
    eventually_blocked(t, b1, t.ip("a1"), 80)
    assert not connects(t, b2, t.ip("a1"), 80, timeout=0.5)
    for node in t.nodes:
        wait_until(lambda n=node: kernel_matches(t, ds, n) is None, 10, f"{node} converged")
        assert "net2-to-net1-http" not in t.save(node)


def test_status_in_etcd(agents_running):
    from calico.keys import endpoint_status_key, host_status_key

    t = agents_running
    ds = t.ds
    for node in t.nodes:
        kv = wait_until(lambda n=node: ds.kv_get(host_status_key(n)), 10, "host status")
        status = kv.json()
        assert status["in_sync"] and status["healthy"] and status["endpoints"] == 2
        assert status["last_apply_ms"] is not None and status["uptime"] >= 0
    for pod in t.pods:
        key = endpoint_status_key(t.node_of(pod), "cni", t.wep_name(pod), "eth0")
        kv = wait_until(lambda k=key: ds.kv_get(k), 10, f"status of {pod}")
        assert kv.json()["status"] == "up" and kv.json()["interface"] == t.iface(pod)


def test_a_restarted_agent_removes_its_predecessors_stale_statuses_and_keeps_up(agents_running):
    """Status keys an earlier agent left for endpoints that are gone are deleted with the
    new agent's first report, in transactions, while its main loop goes on applying."""
    from calico.keys import endpoint_status_key, host_prefix
    from calico.resources import Resource

    t = agents_running
    ds = t.ds
    node = t.node_of("b1")
    t.stop_agent(node, signal.SIGKILL)
    stale = [
        endpoint_status_key(node, "cni", f"{node}-cni-gone{i:04d}-eth0", "eth0") for i in range(600)
    ]
    for i in range(0, len(stale), 100):
        ds.kv_txn([], [ds.ops.put(k, '{"status": "up"}') for k in stale[i : i + 100]])
    prof = seed_profile("network2")
    prof["spec"]["ingress"].append({"action": "Allow", "source": {"selector": "has(network1)"}})
    try:
        t.start_agent(node)
        wait_until(lambda: t.health(node).get("ready"), 15, f"{node} programmed")
        ds.apply(Resource.from_dict(prof))  # a change right after the start goes through
        eventually_connects(t, t.ns("a2"), t.ip("b1"), 80)
        prefix = host_prefix(node) + "workload/"
        wait_until(
            lambda: not any("-cni-gone" in kv.key for kv in ds.kv_list(prefix)[0]),
            15,
            "the predecessor's stale statuses gone",
        )
        live = endpoint_status_key(node, "cni", t.wep_name("b1"), "eth0")
        assert wait_until(lambda: ds.kv_get(live), 10, "b1's own status").json()["status"] == "up"
    finally:
        ds.apply(Resource.from_dict(seed_profile("network2")))
        for i in range(0, len(stale), 100):
            ds.kv_txn([], [ds.ops.delete(k) for k in stale[i : i + 100]])
    eventually_blocked(t, t.ns("a2"), t.ip("b1"), 80)


def test_hand_deleted_rule_comes_back_within_refresh(agents_running):
    t = agents_running
    node = t.node_of("a1")
    before = t.save(node)
    assert "-A cali-pri-network1 " in before
    sh("ip", "netns", "exec", node, "iptables-legacy", "-D", "cali-pri-network1", "1")
    sh("ip", "netns", "exec", node, "iptables-legacy", "-D", "FORWARD", "1")  # our hook
    sh("ip", "netns", "exec", node, "ipset", "flush", _set_in(before, "cali-pri-network1"))
    started = time.monotonic()
    wait_until(lambda: kernel_matches(t, t.ds, node) is None, 5, "drift repaired")
    assert time.monotonic() - started < 3  # refresh interval is 1 s here
    eventually_connects(t, t.ns("a2"), t.ip("a1"), 80)


def _set_in(save: str, chain: str) -> str:
    for line in save.splitlines():
        if line.startswith(f"-A {chain} ") and "--match-set" in line:
            return line.split("--match-set ", 1)[1].split()[0]
    raise AssertionError(f"no set in {chain}")


def test_kill_9_change_restart_converges(agents_running):
    from calico.resources import Resource

    t = agents_running
    ds = t.ds
    node = t.node_of("a1")
    t.stop_agent(node, signal.SIGKILL)
    # Leftovers a crashed agent could leave, and a change it did not see.
    ns_exec = ("ip", "netns", "exec", node)
    sh(*ns_exec, "iptables-legacy", "-N", "cali-pi-bogus")
    sh(*ns_exec, "iptables-legacy", "-A", "cali-pi-bogus", "-j", "DROP")
    sh(*ns_exec, "ipset", "create", "cali40s:bogusbogusbogusbogusbog", "hash:net")
    sh(*ns_exec, "ipset", "create", "cali4ts:leftoverleftoverleftove", "hash:net")
    sh("ip", "-n", node, "route", "add", "blackhole", "10.77.0.0/26", "proto", "80")
    sh("ip", "-n", node, "route", "add", "blackhole", "10.78.0.0/26")  # not ours: stays
    sh(*ns_exec, "iptables-legacy", "-N", "OTHER-chain")  # not ours: stays
    prof = seed_profile("network2")
    prof["spec"]["ingress"].append({"action": "Allow", "source": {"selector": "has(network1)"}})
    ds.apply(Resource.from_dict(prof))  # network2 now also admits network1
    try:
        assert not connects(t, t.ns("a2"), t.ip("b1"), 80, timeout=0.5)  # nobody applied it
        t.start_agent(node)
        wait_until(lambda: kernel_matches(t, ds, node) is None, 15, "converged after restart")
        eventually_connects(t, t.ns("a2"), t.ip("b1"), 80)
        save = t.save(node)
        assert "cali-pi-bogus" not in save and ":OTHER-chain" in save
        sets = t.ipsets(node)
        assert "bogus" not in sets and "leftover" not in sets
        assert sum(line.startswith(":cali-FORWARD") for line in save.splitlines()) == 1
        assert save.count("-j cali-FORWARD") == 1
        dsts = {r["dst"] for r in t.routes(node)}
        assert "10.77.0.0/26" not in dsts and "10.78.0.0/26" in dsts
    finally:
        ds.apply(Resource.from_dict(seed_profile("network2")))
        sh("ip", "-n", node, "route", "del", "blackhole", "10.78.0.0/26", check=False)
        sh(*ns_exec, "iptables-legacy", "-X", "OTHER-chain", check=False)
    eventually_blocked(t, t.ns("a2"), t.ip("b1"), 80)


def test_endpoint_removed_then_back(agents_running):
    t = agents_running
    ds = t.ds
    node = t.node_of("b1")
    iface = t.iface("b1")
    ds.delete("WorkloadEndpoint", t.wep_name("b1"), "default")
    try:
        wait_until(lambda: f"cali-tw-{iface}" not in t.save(node), 10, "b1 chains removed")
        # Unknown cali interface: nothing in or out.
        assert not connects(t, t.ns("b2"), t.ip("b1"), 80, timeout=0.5)
        assert not connects(t, t.ns("b1"), f"{SUBNET}.100", OUTSIDE_PORT, timeout=0.5)
        wait_until(lambda: kernel_matches(t, ds, node) is None, 10, "converged")
    finally:
        t.put_wep(ds, "b1")
    eventually_connects(t, t.ns("b2"), t.ip("b1"), 80)


def test_sigterm_exits_cleanly_and_keeps_isolation(agents_running):
    t = agents_running
    node = t.node_of("a1")
    assert t.stop_agent(node, signal.SIGTERM) == 0
    assert "stopped" in t.agent_log(node)
    # Rules stay while the agent is away.
    assert not connects(t, t.ns("b1"), t.ip("a1"), 80, timeout=0.5)
    assert connects(t, t.ns("a2"), t.ip("a1"), 80)


def test_etcd_outage_keeps_isolation_reports_unhealthy_and_resyncs(topo, tmp_path):
    """Own etcd for this one (the shared server must stay up for everyone else)."""
    from calico.datastore import Datastore
    from calico.resources import Resource
    from lab.etcd import local_etcd

    t = topo
    for node in list(t.agents):
        t.stop_agent(node)
    etcd = local_etcd(tmp_path, name="outage")
    etcd.start()
    ds = Datastore.connect(etcd.endpoints)
    try:
        t.seed(ds)
        t.forward_etcd(etcd.endpoints)
        for node in t.nodes:
            t.start_agent(node)
        for node in t.nodes:
            wait_until(lambda n=node: t.health(n).get("healthy"), 30, f"{node} healthy")
        eventually_connects(t, t.ns("a1"), t.ip("a2"), 80)

        etcd.kill()
        for node in t.nodes:
            wait_until(lambda n=node: t.health(n).get("healthy") is False, 15, f"{node} unhealthy")
        assert not connects(t, t.ns("b1"), t.ip("a1"), 80, timeout=0.5)  # still isolated
        assert connects(t, t.ns("a1"), t.ip("a2"), 80)  # and still connected
        for node in t.nodes:
            assert t.agents[node].poll() is None, t.agent_log(node)[-2000:]

        etcd.start()  # same data dir and ports
        gnp = resource(
            "GlobalNetworkPolicy",
            "after-outage",
            {
                "order": 1,
                "selector": "has(network1)",
                "ingress": [
                    {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}},
                    {"action": "Pass"},
                ],
            },
        )
        wait_until(lambda: _try(lambda: ds.apply(Resource.from_dict(gnp))), 15, "etcd back")
        for node in t.nodes:
            wait_until(lambda n=node: t.health(n).get("healthy"), 30, f"{node} healthy again")
        eventually_connects(t, t.ns("b1"), t.ip("a1"), 8080)  # the change made during resync
        assert not connects(t, t.ns("b1"), t.ip("a1"), 80, timeout=0.5)
        for node in t.nodes:
            wait_until(lambda n=node: kernel_matches(t, ds, n) is None, 10, f"{node} converged")
    finally:
        for node in list(t.agents):
            t.stop_agent(node)
        with contextlib.suppress(Exception):
            ds.close()
        etcd.stop()
        t.forward_etcd(t.ds.endpoints)  # back to the shared etcd for whatever runs next


def _try(fn) -> bool:
    try:
        fn()
        return True
    except Exception:
        return False


def test_once_programs_everything_and_exits_zero(agents_running):
    """`--once` from an empty dataplane: sync, apply, status, exit 0."""
    from calico.keys import host_status_key

    t = agents_running
    node = t.node_of("a1")
    t.stop_agent(node)
    save = t.save(node)
    lines = ["*filter"]
    for builtin in ("INPUT", "FORWARD", "OUTPUT"):
        lines += [f"-D {builtin} {ln.split(' ', 2)[2]}" for ln in save.splitlines()
                  if ln.startswith(f"-A {builtin} ") and "cali:" in ln]  # fmt: skip
    chains = [ln[1:].split()[0] for ln in save.splitlines() if ln.startswith(":cali-")]
    lines += [f":{c} - [0:0]" for c in chains] + [f"-X {c}" for c in chains] + ["COMMIT"]
    sh(
        "ip",
        "netns",
        "exec",
        node,
        "iptables-legacy-restore",
        "--noflush",
        input="\n".join(lines) + "\n",
    )
    assert "cali-" not in t.save(node)
    t.ds.kv_delete(host_status_key(node))
    env = {**os.environ, "CALICO_NODENAME": node, "ETCD_ENDPOINTS": "http://127.0.0.1:2379"}
    proc = subprocess.run(
        ["ip", "netns", "exec", node, AGENT, "--once", "--backend", "direct"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "apply (full)" in proc.stderr  # one line per apply, with its timing
    assert kernel_matches(t, t.ds, node) is None
    status = t.ds.kv_get(host_status_key(node)).json()
    assert status["ready"] and status["endpoints"] == 2
