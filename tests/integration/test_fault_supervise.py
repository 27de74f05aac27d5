"""Faults on a lab of its own: agent kill -9 / SIGSTOP, node service kill -9, etcd kill -9.

The node service (`calico-node`, the rkt pod `node`) restarts a killed agent; established
flows keep flowing and nothing fails open while the agent is away; health reads unhealthy
while the agent is dead or stale; `calico-lab up` repairs a dead etcd or node service and
keeps pods and etcd data. The module's lab is its own (killing the shared one's parts
would hurt every other module) and is removed in a finally.

Traffic is real: the test process makes its sockets inside the pods' network namespaces
(setns from a thread, as the node API's probes do), so every packet crosses the pods'
veths and the nodes' iptables.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess

import pytest

from calico.datastore import Datastore
from calico.keys import RESOURCE_ROOT, endpoint_status_key
from calico.nodeapi import NodeClient
from calico.tools import program
from kernel.ns import entered, open_netns
from lab import fabric
from lab.cluster import Lab
from tests.integration.conftest import dedicated_lab
from tests.integration.test_agent import wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.fault]

PORT = 7070
NETWORKS = ("network1", "network2")


@pytest.fixture(scope="module")
def flab(tmp_path_factory):
    with dedicated_lab(tmp_path_factory.mktemp("faultlabs"), 2, NETWORKS) as cluster:
        yield cluster


@pytest.fixture
def up_again(flab):
    """Whatever a test breaks, the lab is up and healthy again for the next one."""
    yield flab
    for node in flab.nodes:  # a stopped agent gets going again
        info = node_info(flab, node)["agent"]
        if info["pid"]:
            os.kill(info["pid"], signal.SIGCONT)
    if flab.status()["state"] != "up":
        flab.up(nodes=2)
    wait_until(lambda: flab.status()["state"] == "up", 30, "the lab up and healthy")


def node_info(lab: Lab, node: str) -> dict:
    return next(n for n in lab.status()["nodes"] if n["name"] == node)


class Pod:
    def __init__(self, lab: Lab, node: str, network: str):
        proc = lab.exec(node, ["rkt", "run", "--detach", f"--net={network}", "docker://busybox",
                               "--exec=/bin/sleep", "--", "600"], timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        self.lab, self.node, self.uuid = lab, node, proc.stdout.strip().splitlines()[-1]
        st = json.loads(lab.exec(node, ["rkt", "status", "--format=json", self.uuid]).stdout)
        self.pid = int(st["pid"])
        self.ip = next(n["ip"] for n in st["networks"] if n["netName"] == network)

    def socket(self) -> socket.socket:
        fd = open_netns(f"/proc/{self.pid}/ns/net")
        try:
            with entered(fd):
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            os.close(fd)

    def connects(self, dst: Pod, timeout: float = 0.5) -> bool:
        with self.socket() as s:
            s.settimeout(timeout)
            try:
                s.connect((dst.ip, PORT))
                return True
            except OSError:
                return False

    def remove(self) -> None:
        self.lab.exec(self.node, ["rkt", "stop", "--force", self.uuid], timeout=60)
        self.lab.exec(self.node, ["rkt", "rm", self.uuid], timeout=60)


@pytest.fixture
def pods(flab):
    made: list[Pod] = []
    try:
        srv = Pod(flab, "calico-01", "network1")
        made.append(srv)
        same = Pod(flab, "calico-02", "network1")
        made.append(same)
        other = Pod(flab, "calico-02", "network2")
        made.append(other)
        listener = srv.socket()
        listener.bind(("0.0.0.0", PORT))
        listener.listen(16)
        try:
            wait_until(lambda: same.connects(srv), 20, "network1 reaches network1")
            yield srv, same, other, listener
        finally:
            listener.close()
    finally:
        for pod in made:
            pod.remove()


def cali_rules(lab: Lab, node: str) -> int:
    save = lab.exec(node, ["iptables-legacy-save", "-t", "filter"], timeout=30).stdout
    return sum(1 for line in save.splitlines() if line.startswith("-A cali-"))


def test_agent_kill_9_keeps_flows_denies_comes_back_and_converges(flab, up_again, pods):
    srv, same, other, listener = pods
    client = same.socket()
    client.settimeout(3)
    client.connect((srv.ip, PORT))
    listener.settimeout(3)
    while True:  # earlier probes' connections wait in the backlog too
        peer, addr = listener.accept()
        if addr == client.getsockname():
            break
        peer.close()
    peer.settimeout(3)

    def exchange(data: bytes) -> None:
        client.sendall(data)
        assert peer.recv(64) == data
        peer.sendall(data)
        assert client.recv(64) == data

    try:
        exchange(b"before")
        assert not other.connects(srv)
        rules = {n: cali_rules(flab, n) for n in flab.nodes}
        old = node_info(flab, "calico-01")["agent"]
        os.kill(old["pid"], signal.SIGKILL)
        wait_until(lambda: fabric.proc_starttime(old["pid"]) is None, 5, "the agent gone")
        st = flab.status()
        assert st["state"] != "up"
        gone = next(n for n in st["nodes"] if n["name"] == "calico-01")["agent"]
        assert not gone["healthy"], gone
        # While it is away and while it comes back: the open connection passes data, and
        # network2 is never let in.
        turns = 0
        while True:
            turns += 1
            exchange(b"during %d" % turns)
            assert not other.connects(srv, timeout=0.3), "network2 got in while the agent was away"
            now = node_info(flab, "calico-01")["agent"]
            if now["healthy"] and now["pid"] not in (None, old["pid"]):
                break
            assert turns < 200, now
        assert now["restarts"] == 1 and "SIGKILL" in (now["last_exit"] or "")
        wait_until(lambda: flab.status()["state"] == "up", 20, "the lab up again")
        exchange(b"after")
        assert not other.connects(srv)
        assert same.connects(srv)
        assert {n: cali_rules(flab, n) for n in flab.nodes} == rules  # no duplicates
        log = flab.exec("calico-01", ["sh", "-c", f"cat $RKT_DIR/pods/{now['pod']}/log"]).stdout
        assert "calico-agent killed by signal SIGKILL" in log
    finally:
        client.close()
        peer.close()


def test_a_stopped_agent_reads_stale_and_unhealthy(flab, up_again):
    node = "calico-02"
    info = node_info(flab, node)["agent"]
    sock = info["socket"]
    with NodeClient(f"unix://{sock}", timeout=3) as client:
        health = client.health()
    assert health["healthy"] and health["age"] < health["stale_after"]
    assert "heartbeat" in health and health["pid"] == info["pid"]
    os.kill(info["pid"], signal.SIGSTOP)
    try:
        stale = wait_until(
            lambda: (a := node_info(flab, node)["agent"])["health"] == "stale" and a, 20, "stale"
        )
        assert not stale["healthy"] and "stale" in stale["why"]
        st = flab.status()
        assert st["state"] == "degraded" and st["repairs"] == []
        assert any(node in w and "stale" in w for w in st["why"]), st["why"]
        from console.model import ClusterState, NodeInfo, node_rows
        from console.nodes import NodePoller

        polled = NodePoller(lambda: {}, lambda _: None, timeout=1).poll_one(node, f"unix://{sock}")
        assert polled.reachable is False
        state = ClusterState(nodes={node: polled})
        assert node_rows(state)[0].cells[2] == "unreachable"
        state = ClusterState(nodes={node: NodeInfo(reachable=True, health={**health, "age": 60})})
        row = node_rows(state)[0]
        assert row.cells[2] == "unhealthy" and "stale" in row.data["health"]
    finally:
        os.kill(info["pid"], signal.SIGCONT)
    wait_until(lambda: node_info(flab, node)["agent"]["healthy"], 20, "fresh again")


def test_rejected_endpoint_is_reported(flab, up_again):
    name = "calico--01-cni-BadID" + secrets.token_hex(2)
    key = f"{RESOURCE_ROOT}workloadendpoints/default/{name}"
    wep = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"node": "calico-01", "orchestrator": "cni", "endpoint": "eth0",
                    "interfaceName": "caliXbad", "ipNetworks": ["192.168.250.1/32"]}}  # fmt: skip
    status_key = endpoint_status_key("calico-01", "cni", name, "eth0")
    ds = Datastore.connect(flab.etcd_endpoints)
    sock = node_info(flab, "calico-01")["agent"]["socket"]
    try:
        ds.kv_put(key, json.dumps(wep))
        with NodeClient(f"unix://{sock}", timeout=3) as client:
            health = wait_until(lambda: (h := client.health())["rejected"] and h, 10, "rejected")
        assert [r["key"] for r in health["rejected_keys"]] == [key]
        assert health["rejected_keys"][0]["reason"]
        kv = wait_until(lambda: ds.kv_get(status_key), 15, "the error status key")
        assert kv.json()["status"] == "error" and kv.json()["reason"]
        assert node_info(flab, "calico-01")["agent"]["rejected"] == 1
        check = subprocess.run(
            [program("calicoctl"), "ipam", "check", f"--etcd-endpoints={flab.etcd_endpoints}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "1 endpoints their node's agent cannot program" in check.stdout, check.stdout
        assert f"default/{name} on calico-01" in check.stdout, check.stdout
    finally:
        ds.kv_delete(key)
    try:
        wait_until(lambda: ds.kv_get(status_key) is None, 15, "the error status key gone")
    finally:
        ds.close()


def test_a_restarted_agent_reaps_its_predecessors_probe_pods(flab, up_again, pods):
    srv = pods[0]
    node = "calico-02"
    info = node_info(flab, node)["agent"]

    def probe_pods() -> list[str]:
        listing = json.loads(flab.exec(node, ["rkt", "list", "--format=json"]).stdout or "[]")
        return [p["name"] for p in listing if "probe" in p.get("app_names", [])]

    with NodeClient(f"unix://{info['socket']}", timeout=20) as client:
        assert client.probe(srv.ip, PORT, network="network1")["result"] == "connected"
    assert len(probe_pods()) == 1
    os.kill(info["pid"], signal.SIGKILL)
    wait_until(lambda: node_info(flab, node)["agent"]["pid"] not in (None, info["pid"]), 15,
               "a new agent")  # fmt: skip
    wait_until(lambda: probe_pods() == [], 30, "the old probe pod reaped")


def test_up_repairs_a_killed_etcd_and_keeps_pods_and_data(flab, up_again, pods):
    srv, same, other, _ = pods
    before = flab.status()
    ds = Datastore.connect(flab.etcd_endpoints)
    try:
        weps = sorted(kv.key for kv in ds.kv_list(f"{RESOURCE_ROOT}workloadendpoints/")[0])
    finally:
        ds.close()
    assert len(weps) >= 3
    os.kill(before["etcd"]["pid"], signal.SIGKILL)
    wait_until(lambda: not flab.status()["etcd"]["alive"], 5, "etcd gone")
    broken = flab.status()
    port = before["etcd"]["endpoints"].rsplit(":", 1)[1]
    assert broken["state"] == "broken"
    assert broken["repairs"] == [f"restart etcd on its data dir and port {port}"]
    assert not other.connects(srv)  # isolation holds with etcd down
    after = flab.up(nodes=2)
    assert after["state"] == "up" and after["repaired"] == broken["repairs"]
    assert after["etcd"]["endpoints"] == before["etcd"]["endpoints"]
    assert after["etcd"]["pid"] != before["etcd"]["pid"]
    assert [n["agent"]["service_pid"] for n in after["nodes"]] == [
        n["agent"]["service_pid"] for n in before["nodes"]
    ]
    ds = Datastore.connect(flab.etcd_endpoints)
    try:
        assert sorted(kv.key for kv in ds.kv_list(f"{RESOURCE_ROOT}workloadendpoints/")[0]) == weps
    finally:
        ds.close()
    assert same.connects(srv) and not other.connects(srv)


def test_up_repairs_a_killed_node_service_and_keeps_the_rest(flab, up_again, pods):
    srv, same, other, _ = pods
    before = flab.status()
    info = node_info(flab, "calico-02")["agent"]
    os.kill(info["service_pid"], signal.SIGKILL)
    wait_until(lambda: fabric.proc_starttime(info["pid"]) is None, 15, "the agent gone with it")
    broken = flab.status()
    assert broken["state"] == "broken"
    assert broken["repairs"] == ["start the node service on calico-02"]
    listing = json.loads(flab.exec("calico-02", ["rkt", "list", "--format=json"]).stdout)
    assert next(p for p in listing if p["name"] == info["pod"])["state"] == "exited"
    assert not other.connects(srv)  # the rules outlive the agent
    after = flab.up(nodes=2)
    assert after["state"] == "up" and after["repaired"] == broken["repairs"]
    assert after["etcd"]["pid"] == before["etcd"]["pid"]
    again = next(n for n in after["nodes"] if n["name"] == "calico-02")["agent"]
    assert again["service_alive"] and again["pod"] != info["pod"]
    listing = json.loads(flab.exec("calico-02", ["rkt", "list", "--format=json"]).stdout)
    names = {p["name"] for p in listing}
    assert {same.uuid, other.uuid} <= names and info["pod"] not in names
    assert same.connects(srv) and not other.connects(srv)
