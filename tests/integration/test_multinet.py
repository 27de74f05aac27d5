"""Issue 12, part A: a pod on two calico networks, any container ID, and the plugin under
kill -9 and bad input. Real etcd, namespaces, veths, rules and TCP packets on node
calico-01 of the session lab, whose agent (the lab's `node` pod) enforces the policy.

The harness is test_cni.py's (`Cni`: the lab's launcher exec'd inside the node, either
in-process or through a CNIServer); every test removes what it made even when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from plugin.endpoint import endpoint_name
from plugin.veth import route_table
from tests.integration.test_cni import (
    NODE,
    PY,
    Cni,
    cni_server,  # noqa: F401 - a fixture, used through `request`
    harness,
    leftovers,
)
from tests.integration.test_tutorial import wait_for

pytestmark = [pytest.mark.root, pytest.mark.etcd]

WEP_DIR = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/"


@dataclass
class Nets(Cni):
    """The harness with a second network, `<network>b`, beside the first."""

    results: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def network_b(self) -> str:
        return f"{self.network}b"

    def conf_b(self, version: str = "1.0.0") -> dict[str, Any]:
        return {**self.conf(version), "name": self.network_b}

    def attach(self, cid: str, netns: str, conf: dict[str, Any], ifname: str) -> str:
        """ADD; the pod's address on that interface (the result kept for CHECK)."""
        reply = self.call("ADD", conf, cid, netns, ifname=ifname)
        assert reply.code == 0, f"ADD {ifname} failed: {reply.out} {reply.stderr}"
        self.results[(cid, ifname)] = reply.out
        return reply.out["ips"][0]["address"].split("/")[0]

    def check(self, cid: str, netns: str, conf: dict[str, Any], ifname: str) -> Any:
        prev = {**conf, "prevResult": self.results[(cid, ifname)]}
        return self.call("CHECK", prev, cid, netns, ifname=ifname)

    def cleanup(self) -> None:
        super().cleanup()
        from calico.datastore import Datastore

        store = Datastore.connect(self.lab.etcd_endpoints)
        try:
            store.kv_delete(f"/calico/resources/v3/projectcalico.org/profiles/{self.network_b}")
        finally:
            store.close()

    def wep(self, ds, cid: str, ifname: str) -> dict[str, Any] | None:
        kv = ds.kv_get(WEP_DIR + endpoint_name(NODE, cid, ifname))
        return kv.json() if kv else None


@pytest.fixture(scope="module")
def ds(lab):
    from calico.datastore import Datastore

    store = Datastore.connect(lab.etcd_endpoints)
    yield store
    store.close()


@pytest.fixture(params=["exec", "server"])
def nets(request, lab) -> Iterator[Nets]:
    sock = request.getfixturevalue("cni_server") if request.param == "server" else ""
    yield from harness(lab, sock, Nets)


@pytest.fixture
def nets_exec(request, lab) -> Iterator[Nets]:
    yield from harness(lab, "", Nets)


# ---- packets -----------------------------------------------------------------------------

SERVER = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64); print("ready", flush=True)
def serve(c):
    with c:
        c.sendall(c.getsockname()[0].encode())
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# argv: port, then a JSON list of [address, expected]. Expected allows are retried until
# they answer (the agent programs new endpoints within a second or two); the denies are
# tried after them, once each, so a deny is the policy's and not a not-yet-programmed
# endpoint's. Prints {address: "ok <served-by>" | "timeout" | "refused" | error}.
CLIENT = """
import json, socket, sys, time
port, wanted = int(sys.argv[1]), json.loads(sys.argv[2])
def once(addr, timeout):
    try:
        with socket.create_connection((addr, port), timeout=timeout) as c:
            return "ok " + c.recv(64).decode()
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return type(exc).__name__
out = {}
for addr, allow in wanted:
    if allow:
        deadline = time.monotonic() + 20
        while not (got := once(addr, 0.5)).startswith("ok") and time.monotonic() < deadline:
            time.sleep(0.05)
        out[addr] = got
for addr, allow in wanted:
    if not allow:
        out[addr] = once(addr, 1.5)
print(json.dumps(out))
"""


@contextlib.contextmanager
def tcp_server(cni: Cni, netns: str, port: int) -> Iterator[None]:
    name = os.path.basename(netns)
    proc = subprocess.Popen(
        cni.lab.exec_argv(NODE, ["ip", "netns", "exec", name, PY, "-c", SERVER, str(port)]),
        env=cni.node_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()


def probe(cni: Cni, netns: str, port: int, wanted: list[tuple[str, bool]]) -> dict[str, str]:
    name = os.path.basename(netns)
    argv = ["ip", "netns", "exec", name, PY, "-c", CLIENT, str(port), json.dumps(wanted)]
    proc = subprocess.run(
        cni.lab.exec_argv(NODE, argv),
        env=cni.node_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def pod_rules(cni: Cni, netns: str) -> str:
    return cni.sh(f"ip -n {os.path.basename(netns)} rule show")


# ---- 1. a pod on two networks ------------------------------------------------------------


def test_pod_on_two_networks_is_two_endpoints_with_their_own_policy(nets: Nets, ds) -> None:
    dual, a1, b1 = nets.pod(0), nets.pod(1), nets.pod(2)
    cid, cid_a, cid_b = nets.cid(0), nets.cid(1), nets.cid(2)
    ip_a = nets.attach(cid, dual, nets.conf(), "eth0")
    ip_b = nets.attach(cid, dual, nets.conf_b(), "eth1")
    peer_a = nets.attach(cid_a, a1, nets.conf(), "eth0")
    peer_b = nets.attach(cid_b, b1, nets.conf_b(), "eth0")

    # Two veths, each with its own /32; two endpoints, each with its network's profile.
    links = leftovers(nets, ds, [cid])["links"]
    assert len(links) == 2, links
    for ifname, ip, network in (("eth0", ip_a, nets.network), ("eth1", ip_b, nets.network_b)):
        wep = nets.wep(ds, cid, ifname)
        assert wep is not None, ifname
        spec = wep["spec"]
        assert spec["profiles"] == [network] and spec["ipNetworks"] == [f"{ip}/32"]
        assert spec["endpoint"] == ifname and spec["interfaceName"] in links
        assert f"{ip} dev {spec['interfaceName']} " in nets.sh(f"ip route show {ip}/32") + " "

    # The first network has the default route; the second routes by source.
    pod = os.path.basename(dual)
    table = route_table("eth1")
    assert "default via 169.254.1.1 dev eth0" in nets.sh(f"ip -n {pod} route")
    assert f"from {ip_b} lookup {table}" in pod_rules(nets, dual)
    own = nets.sh(f"ip -n {pod} route show table {table}")
    assert "default via 169.254.1.1 dev eth1" in own and "169.254.1.1 dev eth1 scope link" in own

    # CHECK passes for both interfaces, and sees a missing source rule.
    for ifname, conf in (("eth0", nets.conf()), ("eth1", nets.conf_b())):
        ok = nets.check(cid, dual, conf, ifname)
        assert ok.code == 0, (ifname, ok.out)
    nets.sh(f"ip -n {pod} rule del from {ip_b} lookup {table}")
    bad = nets.check(cid, dual, nets.conf_b(), "eth1")
    assert bad.error["code"] == 100 and ip_b in bad.error["details"], bad.error
    nets.sh(f"ip -n {pod} rule add from {ip_b} lookup {table} priority 100")

    port = 9000 + secrets.randbelow(500)
    with tcp_server(nets, dual, port):
        # Policy per interface: network1 reaches only the network1 address, network2 only
        # the network2 one; each answer comes from the address asked for (source routing).
        seen_a = probe(nets, a1, port, [(ip_a, True), (ip_b, False)])
        seen_b = probe(nets, b1, port, [(ip_b, True), (ip_a, False)])
        assert seen_a == {ip_a: f"ok {ip_a}", ip_b: "timeout"}, seen_a
        assert seen_b == {ip_b: f"ok {ip_b}", ip_a: "timeout"}, seen_b

        # DEL of eth1 leaves eth0 whole: its veth, endpoint, routes, traffic.
        gone = nets.call("DEL", nets.conf_b(), cid, dual, ifname="eth1")
        assert gone.code == 0, gone.out
        assert nets.wep(ds, cid, "eth1") is None and nets.wep(ds, cid, "eth0") is not None
        eth0 = nets.wep(ds, cid, "eth0")
        assert eth0 is not None
        assert leftovers(nets, ds, [cid])["links"] == [eth0["spec"]["interfaceName"]]
        assert f"lookup {table}" not in pod_rules(nets, dual)
        assert probe(nets, a1, port, [(ip_a, True)]) == {ip_a: f"ok {ip_a}"}
    for c, ns_path, conf in ((cid, dual, nets.conf()), (cid_a, a1, nets.conf())):
        assert nets.call("DEL", conf, c, ns_path).code == 0
    assert nets.call("DEL", nets.conf_b(), cid_b, b1).code == 0
    assert peer_a != peer_b
    assert_gone(nets, ds, [cid, cid_a, cid_b], [dual, a1, b1])


def assert_gone(nets: Nets, ds, cids: list[str], netns: list[str] = ()) -> None:
    """Nothing of `cids` left: handles, addresses (both networks), endpoints, veths, node
    routes to their addresses, and no source rule in the pods still there."""
    left = leftovers(nets, ds, cids)
    assert left["endpoints"] == [] and left["links"] == [], left
    from calico import ipam, keys

    mine = tuple(f"{net}.{c}" for net in (nets.network, nets.network_b) for c in cids)
    handles = [kv.key for kv in ds.kv_list(keys.HANDLE_PREFIX)[0] if kv.key.endswith(mine)]
    allocs = [
        str(ip)
        for kv in ds.kv_list(keys.BLOCK_PREFIX)[0]
        for ip, h in ipam.Block.from_json(kv.value).allocated().items()
        if h in mine
    ]
    assert handles == [] and allocs == [], (handles, allocs)
    for path in netns:
        if nets.sh(f"test -e {path} && echo yes", check=False).strip():
            rules = pod_rules(nets, path)
            assert "lookup main" in rules and not re.search(r"from (?!all)", rules), rules


# ---- 2. two IDs sharing their first 11 characters ----------------------------------------


def test_ids_sharing_a_prefix_keep_their_own_veths(nets: Nets, ds) -> None:
    # Regression (issue 12): both were `cali` + the same 11 characters, so the second ADD
    # deleted the first pod's veth and a DEL of one removed the other's interface.
    prefix = f"{nets.token}share"[:11]
    one, two = f"{prefix}-one", f"{prefix}-two"
    ns1, ns2 = nets.pod(0), nets.pod(1)
    ip1 = nets.attach(one, ns1, nets.conf(), "eth0")
    ip2 = nets.attach(two, ns2, nets.conf(), "eth0")
    assert len(leftovers(nets, ds, [one, two])["links"]) == 2
    assert nets.call("DEL", nets.conf(), two, ns2).code == 0
    assert nets.check(one, ns1, nets.conf(), "eth0").code == 0  # untouched
    port = 9500 + secrets.randbelow(400)
    ns3 = nets.pod(2)
    other = nets.attach(nets.cid(2), ns3, nets.conf(), "eth0")
    with tcp_server(nets, ns1, port):  # the survivor still has its traffic
        assert probe(nets, ns3, port, [(ip1, True)]) == {ip1: f"ok {ip1}"}
    assert len({ip1, ip2, other}) == 3
    assert nets.call("DEL", nets.conf(), one, ns1).code == 0
    assert nets.call("DEL", nets.conf(), nets.cid(2), ns3).code == 0
    assert_gone(nets, ds, [one, two, nets.cid(2)])


# ---- 3. any container ID the spec allows -------------------------------------------------


def test_upper_case_long_id_gets_a_valid_endpoint_and_traffic(nets_exec: Nets, ds) -> None:
    # Regression (issue 12): the endpoint's name was not a valid resource name, every
    # agent ignored it ("illegal name"), and the pod had an address but no traffic.
    nets = nets_exec
    odd = f"Pod_{nets.token.upper()}." + "AbC-" * 70  # 300 characters, upper case, `_ . -`
    peer = nets.cid(1)
    ns_odd, ns_peer = nets.pod(0), nets.pod(1)
    ip_odd = nets.attach(odd, ns_odd, nets.conf(), "eth0")
    ip_peer = nets.attach(peer, ns_peer, nets.conf(), "eth0")
    wep = nets.wep(ds, odd, "eth0")
    assert wep is not None and wep["spec"]["containerID"] == odd
    name = wep["metadata"]["name"]
    assert name == name.lower() and len(name) <= 253, name
    assert nets.check(odd, ns_odd, nets.conf(), "eth0").code == 0
    port = 9900 + secrets.randbelow(90)
    with tcp_server(nets, ns_odd, port):
        # Only an endpoint the agent accepted gets chains: before that, traffic is dropped.
        assert probe(nets, ns_peer, port, [(ip_odd, True)]) == {ip_odd: f"ok {ip_odd}"}
    with tcp_server(nets, ns_peer, port):
        assert probe(nets, ns_odd, port, [(ip_peer, True)]) == {ip_peer: f"ok {ip_peer}"}
    assert nets.call("DEL", nets.conf(), odd, ns_odd).code == 0
    assert nets.call("DEL", nets.conf(), peer, ns_peer).code == 0
    assert_gone(nets, ds, [odd, peer], [ns_odd, ns_peer])


@pytest.mark.parametrize("bad", ["-dash-first", "has space", "a/b", "ünïcode", "a:b", "_x"])
def test_id_the_spec_forbids_is_refused_at_add(nets_exec: Nets, ds, bad: str) -> None:
    netns = nets_exec.pod(0)
    reply = nets_exec.call("ADD", nets_exec.conf(), bad, netns)
    assert reply.error["code"] == 4 and "CNI_CONTAINERID" in reply.error["details"]
    assert_gone(nets_exec, ds, [bad], [netns])


# ---- kill -9 at random points of ADD -----------------------------------------------------


def _add_then_kill(
    nets: Nets, conf: dict[str, Any], cid: str, netns: str, ifname: str, delay: float
) -> float:
    """Start an in-process ADD (the launcher execs python in this very pid, no agent) and
    SIGKILL it `delay` seconds later, wherever it is. Returns how long it ran."""
    t0 = time.monotonic()
    proc = nets.spawn(conf, cid, netns, ifname, CALICO_CNI_SOCKET="")
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(delay)  # the random point: it may also have finished by then
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return time.monotonic() - t0


@pytest.mark.fault
def test_kill_9_at_random_points_of_add_leaks_nothing(nets_exec: Nets, ds) -> None:
    from calico import ipam_store

    nets = nets_exec
    seed = int(os.environ.get("CALICO_TEST_SEED") or secrets.randbits(32))
    print(f"seed {seed} (CALICO_TEST_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    base, base_ns = nets.cid(0), nets.pod(0)
    base_ip = nets.attach(base, base_ns, nets.conf(), "eth0")

    # How long a whole in-process ADD takes here: the kills land across all of it, and
    # mostly in its last part, where the address, veth, endpoint, routes and rule appear.
    probe_cid, probe_ns = nets.cid(99), nets.pod(99)
    full = _add_then_kill(nets, nets.conf(), probe_cid, probe_ns, "eth0", 30)
    assert nets.call("DEL", nets.conf(), probe_cid, probe_ns).code == 0
    rounds = 10
    for i in range(rounds):
        delay = full * rng.uniform(0.3, 1.05)
        secondary = i % 2 == 1
        if secondary:  # eth1 of the base pod, on network b: the source-rule path
            cid, netns, conf, ifname = base, base_ns, nets.conf_b(), "eth1"
        else:
            cid, netns, conf, ifname = nets.cid(i + 1), nets.pod(i + 1), nets.conf(), "eth0"
        ran = _add_then_kill(nets, conf, cid, netns, ifname, delay)
        held = [str(ip) for ip in ipam_store.handle_ips(ds, f"{conf['name']}.{cid}")]
        where = f"round {i} ({ifname}, killed after {ran * 1000:.0f} ms of {full * 1000:.0f})"
        made = leftovers(nets, ds, [cid], (ifname,))
        print(f"{where}: address {held}, endpoint {len(made['endpoints'])}, veth {made['links']}")
        if secondary or i % 4 == 0:
            reply = nets.call("DEL", conf, cid, netns, ifname=ifname)
            assert reply.code == 0, (where, reply.out)
        else:  # the pod is gone without a DEL: the runtime removes its netns, then GC
            nets.sh(f"ip netns del {os.path.basename(netns)}")
            gc = {
                **nets.conf("1.1.0"),
                "cni.dev/valid-attachments": [{"containerID": base, "ifname": "eth0"}],
            }
            reply = nets.call("GC", gc)
            assert reply.code == 0, (where, reply.out)
        if secondary:
            assert nets.wep(ds, base, "eth1") is None, where
            assert f"lookup {route_table('eth1')}" not in pod_rules(nets, base_ns), where
            assert nets.check(base, base_ns, nets.conf(), "eth0").code == 0, where
            left = leftovers(nets, ds, [base], ("eth1",))
            assert left["links"] == [], (where, left)
        else:
            assert_gone(nets, ds, [cid], [netns])
            assert os.path.basename(netns) not in nets.sh("ip netns list") or i % 4 == 0
        for ip in held:
            assert nets.sh(f"ip route show {ip}/32").strip() == "", (where, ip)
        assert not ipam_store.handle_ips(ds, f"{conf['name']}.{cid}"), where
    # The base pod was never disturbed.
    assert nets.check(base, base_ns, nets.conf(), "eth0").code == 0
    assert nets.call("DEL", nets.conf(), base, base_ns).code == 0
    assert base_ip and assert_gone(nets, ds, [base], [base_ns]) is None


# ---- malformed input: the spec's code, nothing left behind -------------------------------

# (stdin: a conf override dict, or raw text; env overrides; env to drop; expected code)
BAD_INPUTS: dict[str, tuple[Any, dict[str, str], tuple[str, ...], int]] = {
    "truncated JSON": ('{"cniVersion": "1.0.0", "name": ', {}, (), 6),
    "empty stdin": ("", {}, (), 6),
    "a JSON list": ("[1, 2]", {}, (), 6),
    "a JSON string": ('"calico"', {}, (), 6),
    "a JSON number": ("42", {}, (), 6),
    "cniVersion a number": ({"cniVersion": 1}, {}, (), 6),
    "unknown cniVersion": ({"cniVersion": "0.9.9"}, {}, (), 1),
    "cniVersion 2.0.0": ({"cniVersion": "2.0.0"}, {}, (), 1),
    "CHECK before 0.4.0": ({"cniVersion": "0.3.1"}, {"CNI_COMMAND": "CHECK"}, (), 1),
    "GC before 1.1.0": ({"cniVersion": "1.0.0"}, {"CNI_COMMAND": "GC"}, (), 1),
    "no CNI_COMMAND": ({}, {}, ("CNI_COMMAND",), 4),
    "unknown CNI_COMMAND": ({}, {"CNI_COMMAND": "FROB"}, (), 4),
    "no CNI_CONTAINERID": ({}, {}, ("CNI_CONTAINERID",), 4),
    "no CNI_NETNS": ({}, {}, ("CNI_NETNS",), 4),
    "no CNI_IFNAME": ({}, {}, ("CNI_IFNAME",), 4),
    "no CNI_PATH": ({}, {}, ("CNI_PATH",), 4),
    "ifname too long": ({}, {"CNI_IFNAME": "a-very-long-ifname0"}, (), 4),
    "ifname with a slash": ({}, {"CNI_IFNAME": "eth/0"}, (), 4),
    "ifname ..": ({}, {"CNI_IFNAME": ".."}, (), 4),
    "CNI_ARGS unknown key": ({}, {"CNI_ARGS": "FOO=bar"}, (), 4),
    "CNI_ARGS without =": ({}, {"CNI_ARGS": "IP"}, (), 4),
    "CNI_ARGS bad IP": ({}, {"CNI_ARGS": "IP=not-an-ip"}, (), 4),
    "empty name": ({"name": ""}, {}, (), 7),
    "name not a string": ({"name": 5}, {}, (), 7),
    "name with a slash": ({"name": "bad/name"}, {}, (), 7),
    "mtu a string": ({"mtu": "1500"}, {}, (), 7),
    "mtu too small": ({"mtu": 20}, {}, (), 7),
    "no ipam": ({"ipam": None}, {}, (), 7),
    "ipam without type": ({"ipam": {"ipv4_pools": []}}, {}, (), 7),
    "ipam a string": ({"ipam": "calico-ipam"}, {}, (), 7),
    "unknown ipam type": ({"ipam": {"type": "no-such-ipam"}}, {}, (), 7),
    "ipv4_pools a string": ({"ipam": {"type": "calico-ipam", "ipv4_pools": "10/8"}}, {}, (), 7),
    "etcd_endpoints a list": ({"etcd_endpoints": ["http://a:2379"]}, {}, (), 7),
    "args ips not a list": ({"args": {"cni": {"ips": "10.0.0.1"}}}, {}, (), 7),
    "args ips bad address": ({"args": {"cni": {"ips": ["10.0.0.300"]}}}, {}, (), 7),
    "runtimeConfig ips numbers": ({"runtimeConfig": {"ips": [1]}}, {}, (), 7),
    "dns nameservers a string": ({"dns": {"nameservers": "8.8.8.8"}}, {}, (), 7),
    "IP outside every pool": ({}, {"CNI_ARGS": "IP=10.250.3.4"}, (), 101),
    "netns does not exist": ({}, {"CNI_NETNS": "/run/netns/ct-no-such-netns"}, (), 100),
    "ID with a space": ({}, {"CNI_CONTAINERID": "Bad ID"}, (), 4),
}


@pytest.mark.fault
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_malformed_input_gets_the_spec_code_and_leaves_nothing(
    nets_exec: Nets, ds, case: str
) -> None:
    nets = nets_exec
    stdin, env, drop, code = BAD_INPUTS[case]
    netns = nets.pod(0)
    if isinstance(stdin, dict):
        stdin = json.dumps({k: v for k, v in {**nets.conf(), **stdin}.items() if v is not None})
    env = {"CALICO_CNI_SOCKET": "", **env}
    reply = nets.call(env.pop("CNI_COMMAND", "ADD"), stdin, nets.cid(0), netns, env=env, drop=drop)
    err = reply.error
    assert err["code"] == code, (case, err)
    assert err["msg"] and set(err) >= {"code", "msg"}, err
    assert_gone(nets, ds, [nets.cid(0), "Bad ID"], [netns])


# ---- 4. rkt shows what is plumbed --------------------------------------------------------


def test_rkt_run_on_two_networks_lists_both_and_both_carry_traffic(lab, ds) -> None:
    token = secrets.token_hex(2)
    net_a, net_b = f"ct{token}a", f"ct{token}b"
    files = [f"90-{net_a}.conf", f"90-{net_b}.conf"]
    for name, filename in zip((net_a, net_b), files, strict=True):
        conf = {"name": name, "cniVersion": "0.1.0", "type": "calico"}
        lab.write_net_conf(NODE, filename, {**conf, "ipam": {"type": "calico-ipam"}})
    uuid_file = f"/tmp/{net_a}.uuid"
    uuids: list[str] = []
    try:
        run = lab.exec(NODE, ["sh", "-c", (
            f"rkt run --net={net_a},{net_b} --uuid-file-save={uuid_file} docker://busybox "
            "--exec httpd -- -f -h / >/dev/null 2>&1 &")])  # fmt: skip
        assert run.returncode == 0, run.stderr

        def listed() -> dict[str, Any] | None:
            out = lab.exec(NODE, ["rkt", "list", "--format=json"]).stdout or "[]"
            for pod in json.loads(out):
                names = {n["netName"] for n in pod.get("networks", [])}
                if pod["state"] == "running" and {net_a, net_b} <= names:
                    return pod
            return None

        pod = wait_for(listed, 30, "rkt list to show the pod running on both networks")
        uuids.append(pod["name"])
        nets_of = {n["netName"]: n for n in pod["networks"]}
        ip_a, ip_b = nets_of[net_a]["ip"], nets_of[net_b]["ip"]
        assert (nets_of[net_a]["ifName"], nets_of[net_b]["ifName"]) == ("eth0", "eth1")
        # What rkt shows is what is plumbed: each address is its interface's endpoint's.
        for net, ifname, ip in ((net_a, "eth0", ip_a), (net_b, "eth1", ip_b)):
            kv = ds.kv_get(WEP_DIR + endpoint_name(NODE, pod["name"], ifname))
            assert kv is not None, ifname
            spec = kv.json()["spec"]
            assert spec["ipNetworks"] == [f"{ip}/32"] and spec["profiles"] == [net]
        text = lab.exec(NODE, ["rkt", "list", "--no-legend"]).stdout
        assert f"{net_a}:ip4={ip_a}" in text and f"{net_b}:ip4={ip_b}" in text, text
        status = lab.exec(NODE, ["rkt", "status", pod["name"]]).stdout
        assert f"{net_a}:ip4={ip_a}, {net_b}:ip4={ip_b}" in status, status

        # Both interfaces answer their own network, and only it.
        def wget(net: str, ip: str) -> bool:
            argv = ["rkt", "run", f"--net={net}", "docker://busybox", "--exec=/bin/wget",
                    "--", "-q", "-O", "-", "-T", "2", f"http://{ip}/etc/passwd"]  # fmt: skip
            return lab.exec(NODE, argv, timeout=60).returncode == 0

        assert wait_for(lambda: wget(net_b, ip_b), 20, "network b to reach the pod's eth1")
        assert wait_for(lambda: wget(net_a, ip_a), 20, "network a to reach the pod's eth0")
        assert not wget(net_a, ip_b), "network a reached the pod's network b address"
    finally:
        listing = json.loads(lab.exec(NODE, ["rkt", "list", "--format=json"]).stdout or "[]")
        for p in listing:
            if {n["netName"] for n in p.get("networks", [])} & {net_a, net_b} or p["name"] in uuids:
                lab.exec(NODE, ["rkt", "stop", "--force", p["name"]], timeout=60)
                lab.exec(NODE, ["rkt", "rm", p["name"]], timeout=60)
        lab.exec(NODE, ["rm", "-f", uuid_file, *(f"/etc/rkt/net.d/{f}" for f in files)])
        for net in (net_a, net_b):
            ds.kv_delete(f"/calico/resources/v3/projectcalico.org/profiles/{net}")
    for uuid in uuids:
        for ifname in ("eth0", "eth1"):
            assert ds.kv_get(WEP_DIR + endpoint_name(NODE, uuid, ifname)) is None
