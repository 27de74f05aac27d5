"""The `calico` CNI plugin end to end: real etcd, real namespaces, real packets.

Everything runs on node calico-01 of the session lab (its own network, mount and UTS
namespaces; etcd over the fabric), exec'ing the lab's fast launcher exactly as a runtime
would, in two modes:
  exec    CALICO_CNI_SOCKET="" - no agent: the launcher runs the plugin in-process;
  server  a CNIServer (`python -m agent.cni_server`) running inside the node.
Pod namespaces are made with `ip netns add` inside the node (its private /run/netns), and
every test removes its pods, keys and links even when it fails. Names carry a per-test
token so nothing collides with other tests sharing the lab.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from plugin.endpoint import endpoint_name
from plugin.result import parse_result
from plugin.veth import host_ifname

pytestmark = [pytest.mark.root, pytest.mark.etcd]

NODE = "calico-01"
PY = sys.executable
VERSIONS = ("0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


@dataclass
class Reply:
    code: int
    out: Any  # decoded stdout JSON, or None
    stderr: str
    seconds: float

    @property
    def error(self) -> dict[str, Any]:
        assert self.code != 0, f"expected a failure, got {self.out}"
        assert isinstance(self.out, dict), f"error is not JSON: {self.out!r} {self.stderr}"
        return self.out


@dataclass
class Cni:
    """Runs the plugin on the node and tracks what a test made, to remove it after."""

    lab: Any
    socket: str  # "" = in-process fallback
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    netns: list[str] = field(default_factory=list)
    attachments: list[tuple[dict[str, Any], str, str]] = field(default_factory=list)

    @property
    def network(self) -> str:
        return f"t{self.token}"

    def conf(self, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        return {
            "cniVersion": version,
            "name": self.network,
            "type": "calico",
            "ipam": {"type": "calico-ipam"},
            **extra,
        }

    def cid(self, i: int) -> str:
        return f"{self.token}c{i:04d}x"

    def node_env(self) -> dict[str, str]:
        return {**os.environ, **self.lab.node_env(NODE), "CALICO_CNI_SOCKET": self.socket}

    def sh(self, script: str, check: bool = True) -> str:
        proc = subprocess.run(
            self.lab.exec_argv(NODE, ["sh", "-c", script]),
            env=self.node_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert proc.returncode == 0, f"{script}: {proc.stderr}"
        return proc.stdout

    def pod(self, i: int) -> str:
        name = f"{self.token}p{i}"
        self.netns.append(name)
        self.sh(f"ip netns add {name} && ip -n {name} link set lo up")
        return f"/run/netns/{name}"

    def call(
        self,
        command: str,
        stdin: str | dict[str, Any],
        cid: str = "",
        netns: str = "",
        ifname: str = "eth0",
        args: str = "",
        env: dict[str, str] | None = None,
        plugin: str = "calico",
        drop: tuple[str, ...] = (),
    ) -> Reply:
        cni_env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": args,
            "CNI_PATH": self.lab.node_env(NODE)["CNI_PATH"],
            **(env or {}),
        }
        full = {**self.node_env(), **cni_env}
        for name in drop:
            full.pop(name, None)
        text = stdin if isinstance(stdin, str) else json.dumps(stdin)
        if isinstance(stdin, dict) and command == "ADD":
            self.attachments.append((stdin, cid, ifname))
        t0 = time.monotonic()
        proc = subprocess.run(
            self.lab.exec_argv(NODE, [str(self.lab.cni_bin_dir / plugin)]),
            input=text,
            env=full,
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.monotonic() - t0
        out = None
        if proc.stdout.strip():
            try:
                out = json.loads(proc.stdout)
            except ValueError:
                out = proc.stdout
        return Reply(proc.returncode, out, proc.stderr, elapsed)

    def spawn(
        self, conf: dict[str, Any], cid: str, netns: str, ifname: str = "eth0", **env: str
    ) -> subprocess.Popen:
        """Start an ADD without waiting for it (a test kills it half-way), conf on stdin."""
        full = {
            **self.node_env(),
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": self.lab.node_env(NODE)["CNI_PATH"],
            **env,
        }
        self.attachments.append((conf, cid, ifname))  # cleaned up even if the test fails
        proc = subprocess.Popen(
            self.lab.exec_argv(NODE, [str(self.lab.cni_bin_dir / "calico")]),
            env=full,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        return proc

    def add(self, i: int, version: str = "1.0.0", cni_args: str = "", **conf: Any) -> Reply:
        netns = self.pod(i)
        reply = self.call("ADD", self.conf(version, **conf), self.cid(i), netns, args=cni_args)
        assert reply.code == 0, f"ADD failed: {reply.out} {reply.stderr}"
        return reply

    def cleanup(self) -> None:
        for conf, cid, ifname in self.attachments:
            with contextlib.suppress(Exception):
                self.call("DEL", {**conf, "cniVersion": "1.0.0"}, cid, "", ifname)
        if self.netns:
            self.sh("; ".join(f"ip netns del {n} 2>/dev/null" for n in self.netns), check=False)


@pytest.fixture(scope="module")
def cni_server(lab) -> Iterator[str]:
    """A CNIServer inside the node, as the agent would run it."""
    sock = str(lab.node_dir(NODE) / f"test-cni-{secrets.token_hex(2)}.sock")
    proc = subprocess.Popen(
        lab.exec_argv(NODE, [PY, "-m", "agent.cni_server", sock]),
        env={**os.environ, **lab.node_env(NODE)},
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert proc.poll() is None, "CNIServer exited"
            assert time.monotonic() < deadline, "CNIServer did not start"
            time.sleep(0.05)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def harness(lab, sock: str, kind: type[Cni] = Cni) -> Iterator[Any]:
    """A `kind` harness, its pods, keys and links removed afterwards even on failure."""
    made = kind(lab, sock)
    try:
        yield made
    finally:
        made.cleanup()
        _delete_test_keys(lab, made)


@pytest.fixture(params=["exec", "server"])
def cni(request, lab) -> Iterator[Cni]:
    sock = request.getfixturevalue("cni_server") if request.param == "server" else ""
    yield from harness(lab, sock)


@pytest.fixture
def cni_exec(lab) -> Iterator[Cni]:
    yield from harness(lab, "")


@pytest.fixture(scope="module")
def ds(lab):
    from calico.datastore import Datastore

    store = Datastore.connect(lab.etcd_endpoints)
    yield store
    store.close()


def _delete_test_keys(lab, harness: Cni) -> None:
    from calico.datastore import Datastore

    store = Datastore.connect(lab.etcd_endpoints)
    try:
        store.kv_delete(f"/calico/resources/v3/projectcalico.org/profiles/{harness.network}")
    finally:
        store.close()


# ---- checks ------------------------------------------------------------------------------


def leftovers(
    cni: Cni, ds, cids: list[str], ifnames: tuple[str, ...] = ("eth0", "eth1")
) -> dict[str, list[str]]:
    """What the test's attachments still hold: handles, allocations, endpoints, links."""
    from calico import ipam, keys

    handles = [kv.key for kv in ds.kv_list(keys.HANDLE_PREFIX)[0] if f"{cni.network}." in kv.key]
    allocs = []
    for kv in ds.kv_list(keys.BLOCK_PREFIX)[0]:
        block = ipam.Block.from_json(kv.value)
        allocs += [
            str(ip) for ip, h in block.allocated().items() if h and h.startswith(f"{cni.network}.")
        ]
    weps = [
        kv.key
        for kv in ds.kv_list("/calico/resources/v3/projectcalico.org/workloadendpoints/")[0]
        if any((kv.json().get("spec") or {}).get("containerID") == c for c in cids)
    ]
    hosts = {host_ifname(c, i) for c in cids for i in ifnames}
    links = cni.sh("ip -o link show").split("\n")
    cali = [
        name
        for line in links
        if line.count(":") >= 2 and (name := line.split(":")[1].strip().split("@")[0]) in hosts
    ]
    return {
        "handles": handles,
        "allocations": allocs,
        "endpoints": weps,
        "links": cali,
    }


def assert_clean(cni: Cni, ds, cids: list[str]) -> None:
    left = leftovers(cni, ds, cids)
    assert left == {"handles": [], "allocations": [], "endpoints": [], "links": []}, left


def check_shape(version: str, out: dict[str, Any]) -> None:
    """The ADD result has exactly the shape `version` defines."""
    assert out["cniVersion"] == version
    assert "dns" in out
    if version in ("0.1.0", "0.2.0"):
        assert "ips" not in out and "interfaces" not in out
        ip4 = out["ip4"]
        iface = ipaddress.ip_interface(ip4["ip"])
        assert iface.network.prefixlen == 32
        assert ip4["gateway"] == "169.254.1.1"
        assert ip4["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
    else:
        assert "ip4" not in out
        names = [i["name"] for i in out["interfaces"]]
        assert names[0].startswith("cali") and names[1] == "eth0"
        assert out["interfaces"][0]["mac"] == "ee:ee:ee:ee:ee:ee"
        assert out["interfaces"][1]["sandbox"].startswith("/run/netns/")
        (ip,) = out["ips"]
        assert ipaddress.ip_interface(ip["address"]).network.prefixlen == 32
        assert ip["interface"] == 1
        if version in ("0.3.1", "0.4.0"):
            assert ip["version"] == "4"
        else:
            assert "version" not in ip
    parse_result(out, version)  # and it reads back in that version


# ---- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_add_check_del_per_version(cni: Cni, ds, version: str) -> None:
    reply = cni.add(0, version)
    out = reply.out
    check_shape(version, out)
    ip = (out["ip4"]["ip"] if "ip4" in out else out["ips"][0]["address"]).split("/")[0]
    cid = cni.cid(0)

    # What ADD made, as ARCHITECTURE.md's pod plumbing says.
    host = host_ifname(cid, "eth0")
    # `proto 80` when the node agent restored the route first (it watches endpoints too)
    route = rf"^{re.escape(ip)} dev {host} (proto \S+ )?scope link"
    assert re.search(route, cni.sh("ip route"), re.M), cni.sh("ip route")
    for rel, want in (
        (f"ipv4/conf/{host}/proxy_arp", "1"),
        (f"ipv4/neigh/{host}/proxy_delay", "0"),
        (f"ipv4/conf/{host}/forwarding", "1"),
        (f"ipv4/conf/{host}/rp_filter", "1"),
    ):
        assert cni.sh(f"cat /proc/sys/net/{rel}").strip() == want, rel
    pod_routes = cni.sh(f"ip -n {cni.netns[0]} route")
    assert "default via 169.254.1.1 dev eth0" in pod_routes
    assert "169.254.1.1 dev eth0 scope link" in pod_routes
    wep = ds.kv_get(
        f"/calico/resources/v3/projectcalico.org/workloadendpoints/default/"
        f"{endpoint_name(NODE, cid, 'eth0')}"
    )
    assert wep is not None
    spec = wep.json()["spec"]
    assert spec["ipNetworks"] == [f"{ip}/32"]
    assert spec["profiles"] == [cni.network]
    assert spec["interfaceName"] == host and spec["endpoint"] == "eth0"
    assert wep.json()["metadata"]["labels"] == {
        "projectcalico.org/namespace": "default",
        "projectcalico.org/orchestrator": "cni",
    }
    profile = ds.kv_get(f"/calico/resources/v3/projectcalico.org/profiles/{cni.network}")
    assert profile is not None
    assert profile.json()["spec"]["labelsToApply"] == {cni.network: ""}

    conf_prev = {**cni.conf(version), "prevResult": out}
    if version >= "0.4.0":
        ok = cni.call("CHECK", conf_prev, cid, cni.netns and f"/run/netns/{cni.netns[0]}")
        assert ok.code == 0, ok.out
        cni.sh(f"ip route del {ip}/32 dev {host}")
        bad = cni.call("CHECK", conf_prev, cid, f"/run/netns/{cni.netns[0]}")
        assert bad.error["code"] == 100
        assert "route" in bad.error["details"] and ip in bad.error["details"], bad.error
    else:
        refused = cni.call("CHECK", conf_prev, cid, f"/run/netns/{cni.netns[0]}")
        assert refused.error["code"] == 1  # CHECK does not exist before 0.4.0

    for _ in range(2):  # DEL is repeatable
        gone = cni.call("DEL", cni.conf(version), cid, f"/run/netns/{cni.netns[0]}")
        assert gone.code == 0, gone.out
    assert_clean(cni, ds, [cid])


def test_pods_reach_each_other(cni: Cni, ds) -> None:
    a = cni.add(1).out["ips"][0]["address"].split("/")[0]
    cni.add(2)
    port = 8000 + secrets.randbelow(1000)
    server_code = (
        "import socket\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('{a}', {port})); s.listen(1); print('ready', flush=True)\n"
        "s.settimeout(20); c,_=s.accept(); c.sendall(b'pong:'+c.recv(10)); c.close()\n"
    )
    server = subprocess.Popen(
        cni.lab.exec_argv(NODE, ["ip", "netns", "exec", cni.netns[0], PY, "-c", server_code]),
        env=cni.node_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        client_code = (
            "import socket\n"
            f"c=socket.create_connection(('{a}', {port}), timeout=5); c.sendall(b'ping')\n"
            "print(c.recv(20).decode())\n"
        )
        proc = subprocess.run(
            cni.lab.exec_argv(NODE, ["ip", "netns", "exec", cni.netns[1], PY, "-c", client_code]),
            env=cni.node_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.stdout.strip() == "pong:ping", proc.stderr
    finally:
        server.kill()
        server.wait()


def test_requested_addresses(cni: Cni, ds) -> None:
    base = 200 + secrets.randbelow(50)
    wanted = [f"192.168.{base}.{10 + i}" for i in range(3)]
    got = cni.add(1, cni_args=f"IP={wanted[0]}").out["ips"][0]["address"]
    assert got == f"{wanted[0]}/32"
    got = cni.add(2, args={"cni": {"ips": [wanted[1]]}})
    assert got.out["ips"][0]["address"] == f"{wanted[1]}/32"
    got = cni.add(3, runtimeConfig={"ips": [f"{wanted[2]}/24"]})
    assert got.out["ips"][0]["address"] == f"{wanted[2]}/32"


def test_50_concurrent_adds_then_dels(cni: Cni, ds) -> None:
    n = 50
    cids = [cni.cid(i) for i in range(n)]
    paths = []
    names = [f"{cni.token}p{i}" for i in range(n)]
    cni.netns += names
    cni.sh(" && ".join(f"ip netns add {name}" for name in names))
    paths = [f"/run/netns/{name}" for name in names]
    conf = cni.conf()

    with ThreadPoolExecutor(n) as pool:
        adds = list(pool.map(lambda i: cni.call("ADD", conf, cids[i], paths[i]), range(n)))
    cni.attachments += [(conf, c, "eth0") for c in cids]
    errors = [(r.out, r.stderr) for r in adds if r.code != 0]
    assert errors == []
    ips = [r.out["ips"][0]["address"] for r in adds]
    assert len(set(ips)) == n

    with ThreadPoolExecutor(n) as pool:
        dels = list(pool.map(lambda i: cni.call("DEL", conf, cids[i], paths[i]), range(n)))
    assert [(r.out, r.stderr) for r in dels if r.code != 0] == []
    assert_clean(cni, ds, cids)


def test_gc_releases_what_the_runtime_no_longer_lists(cni: Cni, ds) -> None:
    ips = [cni.add(i).out["ips"][0]["address"].split("/")[0] for i in range(3)]
    cids = [cni.cid(i) for i in range(3)]
    before = leftovers(cni, ds, cids)
    assert len(before["handles"]) == 3 and sorted(before["allocations"]) == sorted(ips)
    assert len(before["endpoints"]) == 3 and len(before["links"]) == 3, before
    gc_conf = {
        **cni.conf("1.1.0"),
        "cni.dev/valid-attachments": [{"containerID": cids[0], "ifname": "eth0"}],
    }

    old = cni.call("GC", {**gc_conf, "cniVersion": "1.0.0"})
    assert old.error["code"] == 1  # GC does not exist before 1.1.0
    assert leftovers(cni, ds, cids) == before

    for _ in range(2):  # the second GC finds nothing to do
        reply = cni.call("GC", gc_conf)
        assert (reply.code, reply.out) == (0, None), (reply.out, reply.stderr)
        gone = leftovers(cni, ds, cids[1:])  # handles and allocations: the whole network's
        assert gone["endpoints"] == [] and gone["links"] == [], gone
        kept = leftovers(cni, ds, [cids[0]])
        assert kept["handles"] == [f"/calico/ipam/v2/handle/{cni.network}.{cids[0]}"]
        assert kept["allocations"] == [ips[0]]
        assert len(kept["endpoints"]) == 1 and kept["links"] == [host_ifname(cids[0], "eth0")], kept


# ---- bad input: the right code, a clear message, nothing left behind ---------------------


def test_malformed_json(cni: Cni, ds) -> None:
    netns = cni.pod(0)
    reply = cni.call("ADD", '{"cniVersion": "1.0.0", "name": ', cni.cid(0), netns)
    assert reply.error["code"] == 6
    assert "decode" in reply.error["msg"]
    assert_clean(cni, ds, [cni.cid(0)])


def test_missing_env(cni: Cni, ds) -> None:
    netns = cni.pod(0)
    reply = cni.call("ADD", cni.conf(), cni.cid(0), netns, drop=("CNI_CONTAINERID",))
    assert reply.error["code"] == 4
    assert "CNI_CONTAINERID" in reply.error["details"]
    assert_clean(cni, ds, [cni.cid(0)])


def test_unknown_version(cni: Cni, ds) -> None:
    netns = cni.pod(0)
    reply = cni.call("ADD", cni.conf("0.9.9"), cni.cid(0), netns)
    assert reply.error["code"] == 1
    assert "0.9.9" in reply.error["details"]
    assert_clean(cni, ds, [cni.cid(0)])


def test_unknown_ipam_type(cni: Cni, ds) -> None:
    netns = cni.pod(0)
    conf = cni.conf(ipam={"type": "no-such-ipam"})
    reply = cni.call("ADD", conf, cni.cid(0), netns)
    assert reply.error["code"] == 7
    assert "no-such-ipam" in reply.error["details"]
    assert_clean(cni, ds, [cni.cid(0)])


def test_ip_outside_every_pool(cni: Cni, ds) -> None:
    netns = cni.pod(0)
    reply = cni.call("ADD", cni.conf(), cni.cid(0), netns, args="IP=10.250.3.4")
    assert reply.error["code"] == 101
    assert "10.250.3.4 is not in any IPPool" in reply.error["details"]
    assert_clean(cni, ds, [cni.cid(0)])


def test_ip_already_in_use(cni: Cni, ds) -> None:
    ip = f"192.168.{200 + secrets.randbelow(50)}.{100 + secrets.randbelow(100)}"
    cni.add(0, cni_args=f"IP={ip}")
    netns = cni.pod(1)
    reply = cni.call("ADD", cni.conf(), cni.cid(1), netns, args=f"IP={ip}")
    assert reply.error["code"] == 101
    assert f"{ip} is already assigned" in reply.error["details"]
    left = leftovers(cni, ds, [cni.cid(1)])
    assert left["allocations"] == [ip]  # only the first pod's
    assert left["links"] == [] and left["endpoints"] == []


def test_netns_missing(cni: Cni, ds) -> None:
    reply = cni.call("ADD", cni.conf(), cni.cid(0), "/run/netns/does-not-exist-xyz")
    assert reply.error["code"] == 100
    assert "does-not-exist-xyz" in reply.error["details"]
    assert_clean(cni, ds, [cni.cid(0)])


@pytest.mark.parametrize("where", ["refused", "blackhole"])
def test_etcd_unreachable(cni: Cni, ds, where: str) -> None:
    netns = cni.pod(0)
    # A closed port answers at once; TEST-NET-3 leaves packets unanswered (the fabric
    # drops them), so the deadline is what ends the wait.
    endpoints = "http://127.0.0.1:1" if where == "refused" else "http://203.0.113.1:2379"
    conf = cni.conf(etcd_endpoints=endpoints)
    reply = cni.call("ADD", conf, cni.cid(0), netns)
    assert reply.error["code"] == 11
    assert "etcd" in reply.error["details"] or "etcd" in reply.error["msg"]
    assert reply.seconds < 5.0
    assert_clean(cni, ds, [cni.cid(0)])


def test_sigkill_half_way_is_repaired_by_calicoctl(cni_exec: Cni, ds, tmp_path: Path) -> None:
    cni = cni_exec
    netns = cni.pod(0)
    marker = cni.lab.node_dir(NODE) / f"{cni.token}.paused"
    proc = cni.spawn(cni.conf(), cni.cid(0), netns, CALICO_CNI_PAUSE_AFTER_IPAM=str(marker))
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "ADD never paused"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # the launcher execs python: this pid is the plugin
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        marker.unlink(missing_ok=True)

    # The address, the endpoint and the profile commit in one transaction, before the
    # veth is needed: the kill leaves the first two and no interface.
    left = leftovers(cni, ds, [cni.cid(0)])
    leaked = left["allocations"]
    assert len(leaked) == 1
    assert len(left["endpoints"]) == 1 and left["links"] == [], left

    calicoctl_env = {**os.environ, **cni.lab.root_env()}
    report = tmp_path / "report.json"
    run = subprocess.run(
        [PY, "-m", "calicoctl", "ipam", "check", "-o", str(report)],
        env=calicoctl_env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(report.read_text())
    # No runtime knows this container: its node's agent lists no such pod.
    name = f"default/{endpoint_name(NODE, cni.cid(0), 'eth0')}"
    stale = [e for e in data["staleEndpoints"] if e["endpoint"] == name]
    assert stale and stale[0]["ips"] == leaked and stale[0]["reason"] == "pod gone", data
    assert f"{leaked[0]} endpoint {name} on {NODE}: pod gone" in run.stdout

    # Only this test's endpoint is repaired: the report is trimmed to it, in case other
    # tests' pods are half-way through their own ADDs on the shared lab.
    data["leakedAddresses"] = []
    data["staleEndpoints"] = stale
    report.write_text(json.dumps(data))
    run = subprocess.run(
        [PY, "-m", "calicoctl", "ipam", "release", f"--from-report={report}"],
        env=calicoctl_env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "Removed 1 of 1 stale endpoints" in run.stdout, run.stdout
    assert_clean(cni, ds, [cni.cid(0)])
