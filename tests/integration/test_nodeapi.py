"""The node API on the shared 2-node lab (issue 6): what a client of the agent sees.

Pods listed and run through the API are the pods `rkt list` shows; probes answer connected
or timed out as the profiles say, in about their timeout; denied and allowed connections
show up in the flow stream with the rule that decided; bad requests get the right status
and change nothing; pods cannot reach their node or etcd; TCP needs the token; metrics,
the OpenAPI document and the dataplane view show what the agent programmed.

Every pod this module makes (including the reusable probe pods the agent starts on the
first probe from a network) is stopped and removed at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from calico.nodeapi import NodeAPIError, NodeClient
from calico.tutorial import network_conf

pytestmark = [pytest.mark.root, pytest.mark.lab]

NODES = ("calico-01", "calico-02")
UNKNOWN = "0123dead-0000-4000-8000-000000000000"
PROBE_TIMEOUT = 1.0


def wait_for(check, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def sock(lab, node: str) -> Path:
    return lab.node_dir(node) / "agent.sock"


def rkt_json(lab, node: str) -> list[dict]:
    proc = lab.exec(node, ["rkt", "list", "--format=json"], timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def rkt_text(lab, node: str) -> str:
    proc = lab.exec(node, ["rkt", "list", "--full"], timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def api(lab) -> Iterator[dict[str, NodeClient]]:
    """A client per node, through the address the node publishes on its Node resource."""
    from calico.datastore import Datastore

    store = Datastore.connect(lab.etcd_endpoints)
    try:
        urls = {}
        for node in NODES:
            kv = store.kv_get(f"/calico/resources/v3/projectcalico.org/nodes/{node}")
            urls[node] = kv.json()["metadata"]["annotations"]["calico-rkt.io/api"]
    finally:
        store.close()
    assert urls == {n: f"unix://{sock(lab, n)}" for n in NODES}
    clients = {node: NodeClient(url, timeout=30) for node, url in urls.items()}
    yield clients
    for c in clients.values():
        c.close()


@pytest.fixture(scope="module")
def module_pods(lab, api) -> Iterator[None]:
    """Networks in place; every pod that appears during the module goes at its end."""
    made = []
    for node in NODES:
        for net in ("network1", "network2"):
            path = f"/etc/rkt/net.d/10-calico-{net}.conf"
            if lab.exec(node, ["test", "-e", path]).returncode != 0:
                made.append((node, path))
            lab.write_net_conf(node, f"10-calico-{net}.conf", network_conf(net))
    before = {node: {p["name"] for p in rkt_json(lab, node)} for node in NODES}
    yield
    for node in NODES:
        for pod in rkt_json(lab, node):
            if pod["name"] not in before[node]:
                lab.exec(node, ["rkt", "stop", "--force", pod["name"]], timeout=30)
                lab.exec(node, ["rkt", "rm", pod["name"]], timeout=30)
    for node, path in made:
        lab.exec(node, ["rm", "-f", path])


@dataclass
class Httpd:
    node: str
    uuid: str
    ip: str
    iface: str


@pytest.fixture(scope="module")
def httpd(lab, api, module_pods) -> Httpd:
    """busybox httpd on calico-01 in network1, started through the API (detached)."""
    node = "calico-01"
    out = api[node].run_pod(networks=["network1"], exec_="httpd", args=["-f", "-h", "/"])
    uuid = out["uuid"]
    assert re.fullmatch(r"[0-9a-f-]{36}", uuid), out

    def up():
        for pod in api[node].pods():
            if pod["uuid"] == uuid and pod["state"] == "running":
                eps = pod["endpoints"]
                if eps and eps[0]["status"] == "up":
                    return pod
        return None

    pod = wait_for(up, 20, "the httpd pod running with its endpoint programmed")
    ip = next(n["ip"] for n in pod["networks"] if n["name"] == "network1")
    # listening: a connect from the node itself (routes to the pod via its cali veth) works
    wait_for(lambda: _connects_from_node(lab, node, ip, 80), 10, "httpd to listen")
    return Httpd(node, uuid, ip, pod["endpoints"][0]["interface"])


CONNECT = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(float(sys.argv[3]))\n"
    "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('connected')\n"
    "except ConnectionRefusedError: print('refused')\n"
    "except OSError as e: print('timed out' if 'timed out' in str(e) else repr(e))\n"
)


def _connect_from_node(lab, node: str, ip: str, port: int, timeout: float = 1.0) -> str:
    proc = lab.exec(node, [sys.executable, "-c", CONNECT, ip, str(port), str(timeout)])
    return proc.stdout.strip()


def _connects_from_node(lab, node: str, ip: str, port: int) -> bool:
    return _connect_from_node(lab, node, ip, port) == "connected"


# ---------------------------------------------------------------- pods


def test_api_lists_exactly_what_rkt_lists(lab, api, httpd) -> None:
    for node in NODES:
        listed = {p["name"]: p for p in rkt_json(lab, node)}
        served = {p["uuid"]: p for p in api[node].pods()}
        assert set(served) == set(listed)
        for uuid, pod in served.items():
            assert pod["state"] == listed[uuid]["state"]
            assert pod["app"] == listed[uuid]["app_names"][0]
            assert {(n["name"], n["ip"]) for n in pod["networks"]} == {
                (n["netName"], n.get("ip") or "") for n in listed[uuid]["networks"]
            }
        assert [p["app"] for p in served.values()].count("node") == 1
    # the pod run through the API is a pod `rkt list` shows, as the user reads it
    line = next(ln for ln in rkt_text(lab, httpd.node).splitlines() if httpd.uuid in ln)
    assert "busybox" in line and "running" in line
    assert f"network1:ip4={httpd.ip}" in line


def test_run_stop_remove_through_the_api(lab, api, module_pods) -> None:
    node = "calico-02"
    client = api[node]
    uuid = client.run_pod(networks=["network2"], exec_="/bin/sleep", args=["600"])["uuid"]
    line = wait_for(
        lambda: next(
            (ln for ln in rkt_text(lab, node).splitlines() if uuid in ln and "running" in ln),
            None,
        ),
        20,
        "the pod in rkt list",
    )
    assert "network2:ip4=" in line
    ip = re.search(r"network2:ip4=([\d.]+)", line).group(1)
    # the API keeps pod records between requests: a change shows in the very next answer
    assert {p["uuid"]: p["state"] for p in client.pods()}[uuid] == "running"
    assert client.stop_pod(uuid) == {"uuid": uuid, "stopped": True}
    assert {p["uuid"]: p["state"] for p in client.pods()}[uuid] == "exited"
    state = next(p["state"] for p in rkt_json(lab, node) if p["name"] == uuid)
    assert state == "exited"
    assert client.remove_pod(uuid) == {"uuid": uuid, "removed": True}
    assert uuid not in rkt_text(lab, node)
    assert uuid not in {p["uuid"] for p in client.pods()}
    wait_for(
        lambda: all(ip + "/32" not in e["ipNetworks"] for e in client.endpoints()),
        10,
        "the endpoint to go",
    )
    assert not (lab.node_dir(node) / "rkt" / "pods" / uuid).exists()


# ---------------------------------------------------------------- probes


def test_probes_say_connected_or_timed_out_in_about_their_timeout(api, httpd) -> None:
    client = api["calico-02"]
    # The first probe from a network starts the agent's reusable probe pod on it (an
    # `rkt run`); what is measured below is the steady state, once those pods exist.
    for net in ("network1", "network2"):
        client.probe(httpd.ip, 80, network=net, timeout=PROBE_TIMEOUT)
    for _ in range(3):
        for net, want in (("network1", "connected"), ("network2", "timed out")):
            t0 = time.monotonic()
            res = client.probe(httpd.ip, 80, network=net, timeout=PROBE_TIMEOUT)
            took = time.monotonic() - t0
            assert res["result"] == want, res
            assert res["from"]["network"] == net
            assert took < PROBE_TIMEOUT + 0.5, f"{net}: {took:.2f} s"
            if want == "timed out":
                assert took >= PROBE_TIMEOUT
    # from a pod (by uuid) on the same node and network: connected
    res = api[httpd.node].probe(httpd.ip, 80, pod=httpd.uuid, timeout=PROBE_TIMEOUT)
    assert res["result"] == "connected" and res["from"] == {"pod": httpd.uuid}


def test_100_probes_in_parallel_across_two_nodes_under_5s(api, httpd) -> None:
    """Per node 50 probes at once: network2 -> :80 (timed out: denied), network1 -> :80
    (connected) and network1 -> :81 (refused: allowed by policy, closed port). Only 4 per
    node go to :80 from network1: busybox httpd listens with a backlog of 9, and more
    simultaneous connects than that are dropped by the server's own kernel (ListenOverflows)
    and would read as timeouts that say nothing about policy."""
    plan = [("network2", 80, "timed out")] * 25
    plan += [("network1", 80, "connected")] * 4 + [("network1", 81, "refused")] * 21

    def batch(node: str, items: list[tuple[str, int, str]]) -> list[dict]:
        reqs = [
            {"address": httpd.ip, "port": port, "network": net, "timeout": PROBE_TIMEOUT}
            for net, port, _ in items
        ]
        return api[node].probes(reqs, timeout=PROBE_TIMEOUT)

    for node in NODES:  # probe pods exist on both nodes before the clock starts
        batch(node, [plan[0], plan[-1]])
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda node: batch(node, plan), NODES))
    took = time.monotonic() - t0
    assert took < 5.0, f"100 probes took {took:.2f} s"
    assert sum(len(r) for r in results) == 100
    for node, per_node in zip(NODES, results, strict=True):
        for (net, port, want), res in zip(plan, per_node, strict=True):
            assert res["result"] == want, (node, net, port, res)


# ---------------------------------------------------------------- flows


class FlowReader:
    """Follows a node's flow stream in a thread; records arrive in a queue with the wall
    clock time they were read."""

    def __init__(self, url: str, **filters: str):
        self.client = NodeClient(url)
        self.items: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(filters,), daemon=True)
        self.thread.start()

    def _run(self, filters: dict[str, str]) -> None:
        try:
            for item in self.client.flows(follow=True, **filters):
                self.items.put((time.time(), item))
        except NodeAPIError:
            pass  # closed by the test

    def next_flow(self, timeout: float, **want) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no flow record matching {want} within {timeout} s")
            try:
                seen, item = self.items.get(timeout=left)
            except queue.Empty:
                continue
            if item.get("type") == "flow" and all(
                _get(item, k) == v or (k == "since" and item["time"] >= v) for k, v in want.items()
            ):
                return seen, item

    def close(self) -> None:
        self.client.close()
        self.thread.join(timeout=5)


def _get(item: dict, key: str):
    value = item
    for part in key.split("__"):
        value = (value or {}).get(part)
    return value


def _wget_popen(lab, node: str, network: str, ip: str) -> subprocess.Popen:
    argv = ["rkt", "run", f"--net={network}", "docker://busybox", "--exec=/bin/wget", "--",
            "-T", "3", "-O", "/dev/null", f"http://{ip}/etc/passwd"]  # fmt: skip
    return subprocess.Popen(
        lab.exec_argv(node, argv),
        env={**os.environ, **lab.node_env(node)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_denied_and_allowed_wget_show_in_the_flow_stream(lab, api, httpd) -> None:
    reader = FlowReader(api[httpd.node].url, to=httpd.ip)
    try:
        since = time.time()
        wget = _wget_popen(lab, "calico-02", "network2", httpd.ip)
        try:
            seen, rec = reader.next_flow(
                10, verdict="denied", src_endpoint__network="network2", dport=80, since=since
            )
            assert wget.poll() is None, "the record came only after wget gave up"
            assert seen - rec["time"] < 1.0, f"denied record {seen - rec['time']:.2f} s late"
            assert rec["dst"] == httpd.ip and rec["protocol"] == "tcp"
            assert rec["dst_endpoint"]["pod"] == httpd.uuid
            assert rec["rule"]["kind"] == "default" and rec["rule"]["name"] == "network1"
            assert "network1" in rec["rule_text"] and "default deny" in rec["rule_text"]
            out, _ = wget.communicate(timeout=15)
            assert wget.returncode != 0 and "download timed out" in out
        finally:
            if wget.poll() is None:
                wget.kill()
                wget.communicate()

        since = time.time()
        wget = _wget_popen(lab, "calico-02", "network1", httpd.ip)
        seen, rec = reader.next_flow(
            10, verdict="allowed", src_endpoint__network="network1", dport=80, since=since
        )
        assert seen - rec["time"] < 1.0, f"allowed record {seen - rec['time']:.2f} s late"
        assert rec["dst_endpoint"]["pod"] == httpd.uuid
        assert "profile network1" in rec["rule_text"] and "Allow" in rec["rule_text"]
        out, _ = wget.communicate(timeout=15)
        assert wget.returncode == 0, out
    finally:
        reader.close()


# ---------------------------------------------------------------- refusals


def _raw(lab, node: str) -> httpx.Client:
    return httpx.Client(
        base_url="http://node", transport=httpx.HTTPTransport(uds=str(sock(lab, node))), timeout=30
    )


def _probe(**body) -> bytes:
    base = {"address": "192.168.0.1", "port": 80, "network": "network1", "timeout": 0.2}
    base.update(body)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


REFUSALS = [
    ("POST", "/v1/pods", b"{bad", 400, "not valid JSON"),
    ("POST", "/v1/pods", b"[1, 2]", 400, "JSON object"),
    ("POST", "/v1/pods", b'{"networks": "network1"}', 400, "networks must be a list"),
    ("POST", "/v1/pods", b'{"networks": ["nosuch"]}', 400, "networks not found: nosuch"),
    ("POST", "/v1/pods", b'{"networks": ["network1"], "timeout": NaN}', 400, "timeout"),
    ("POST", "/v1/pods", b'{"networks": ["network1"], "timeout": "soon"}', 400, "timeout"),
    ("POST", "/v1/pods", b'{"image": "docker://nosuchimage"}', 400, "not found"),
    ("POST", "/v1/probes", b"{bad", 400, "not valid JSON"),
    ("POST", "/v1/probes/batch", b"[1,", 400, "not valid JSON"),
    ("POST", "/v1/probes/batch", b'{"probes": "x"}', 400, "probes"),
    ("POST", f"/v1/pods/{UNKNOWN}/stop", b"", 404, "no pod found"),
    ("DELETE", f"/v1/pods/{UNKNOWN}", b"", 404, "no pod found"),
    ("POST", "/v1/probes", _probe(pod=UNKNOWN, network=...), 404, "no pod found"),
    ("POST", "/v1/probes", b'"x"', 400, "JSON object"),
    ("POST", "/v1/probes", _probe(port=...), 400, "port"),
    ("POST", "/v1/probes", _probe(port=0), 400, "port"),
    ("POST", "/v1/probes", _probe(port=70000), 400, "port"),
    ("POST", "/v1/probes", _probe(port="http"), 400, "port"),
    ("POST", "/v1/probes", _probe(port=80.5), 400, "port"),
    ("POST", "/v1/probes", _probe(port=True), 400, "port"),
    ("POST", "/v1/probes", _probe(address=...), 400, "address"),
    ("POST", "/v1/probes", _probe(address="not an address"), 400, "address"),
    ("POST", "/v1/probes", _probe(address=["192.168.0.1"]), 400, "address"),
    ("POST", "/v1/probes", _probe(network=...), 400, "pod (uuid) or network"),
    ("POST", "/v1/probes", _probe(network="host"), 400, "network"),
    ("POST", "/v1/probes", _probe(network="network1:IP=192.168.0.9"), 400, "network"),
    ("POST", "/v1/probes", _probe(network="network1,network2"), 400, "network"),
    ("POST", "/v1/probes", _probe(timeout="soon"), 400, "timeout"),
    ("POST", "/v1/probes", _probe().replace(b"0.2", b"NaN"), 400, "timeout"),
    ("GET", "/v1/flows?verdict=maybe", b"", 400, "verdict"),
    ("GET", "/v1/nosuch", b"", 404, "no such endpoint"),
    ("PUT", "/v1/pods", b"{}", 405, "not allowed"),
]


def _state(lab, api) -> dict:
    return {
        node: (
            sorted(p.name for p in (lab.node_dir(node) / "rkt" / "pods").iterdir()),
            sorted(p["uuid"] for p in api[node].pods()),
            sorted(e["name"] for e in api[node].endpoints()),
        )
        for node in NODES
    }


def test_the_api_refuses_bad_requests_and_changes_nothing(lab, api, httpd) -> None:
    api["calico-01"].probe(httpd.ip, 80, network="network1", timeout=0.2)  # probe pod exists
    before = _state(lab, api)
    with _raw(lab, "calico-01") as raw:
        for method, path, body, status, says in REFUSALS:
            resp = raw.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
            what = f"{method} {path} {body!r}"
            assert resp.status_code == status, f"{what}: {resp.status_code} {resp.text}"
            err = resp.json()
            assert err["status"] == status and says in err["error"], f"{what}: {err}"
            assert "\n" not in err["error"] and "Traceback" not in err["error"]
    assert _state(lab, api) == before


def test_pods_cannot_reach_their_node(lab, api, httpd) -> None:
    """The agent's host protection: a pod's connection to its own node is dropped (a timeout,
    where the node itself gets a refusal from the same closed port)."""
    node_ip = lab.node_address(httpd.node)
    etcd_port = int(lab.fabric_etcd_endpoints.rsplit(":", 1)[1])
    assert _connect_from_node(lab, httpd.node, node_ip, etcd_port) == "refused"
    res = api[httpd.node].probe(node_ip, etcd_port, pod=httpd.uuid, timeout=PROBE_TIMEOUT)
    assert res["result"] == "timed out", res
    # and the node API is a unix socket the pod's file system does not have
    argv = ["rkt", "run", "--net=network1", "docker://busybox", "--exec=/bin/ls", "--",
            str(sock(lab, httpd.node))]  # fmt: skip
    proc = lab.exec(httpd.node, argv, timeout=30)
    assert proc.returncode != 0 and "No such file" in proc.stdout + proc.stderr


GUARD = "calico-rkt-test-guard"


def test_pods_cannot_reach_etcd(lab, api, httpd) -> None:
    """A pod's SYN to etcd's fabric address must be dropped on its node by the agent.

    Safety net: a mangle POSTROUTING rule in the node (runs after the agent's filter
    FORWARD verdict) counts and drops any such packet before it can leave the node, so the
    test never sends pod traffic to the root namespace; its counter says whether the agent
    let the SYN through."""
    etcd = lab.fabric_etcd_endpoints.split("//", 1)[1]
    etcd_ip, etcd_port = etcd.rsplit(":", 1)
    rule = ["POSTROUTING", "-s", httpd.ip, "-d", etcd_ip, "-p", "tcp", "--dport", etcd_port,
            "-m", "comment", "--comment", GUARD, "-j", "DROP"]  # fmt: skip
    ipt = ["iptables-legacy", "-w", "-t", "mangle"]
    assert lab.exec(httpd.node, [*ipt, "-I", *rule]).returncode == 0
    try:
        res = api[httpd.node].probe(etcd_ip, int(etcd_port), pod=httpd.uuid, timeout=0.5)
        assert res["result"] == "timed out", res
        counters = lab.exec(httpd.node, [*ipt, "-L", "POSTROUTING", "-v", "-x", "-n"]).stdout
        guard = next(ln for ln in counters.splitlines() if GUARD in ln)
        leaked = int(guard.split()[0])
        assert leaked == 0, f"{leaked} packets from the pod to etcd got past the agent"
    finally:
        lab.exec(httpd.node, [*ipt, "-D", *rule])


def test_tcp_needs_the_bearer_token(tmp_path, lab) -> None:
    from agent.api.node import NodeService
    from agent.api.server import APIServer
    from tests.unit.fake_agent import FakeAgent

    agent = FakeAgent("stub-node")
    service = NodeService(agent, rkt_dir=str(tmp_path / "rkt"), local_config=str(tmp_path))
    server = APIServer(service.router(), None, tcp=("127.0.0.1", 0), token="s3cret-token")
    server.start()
    try:
        host, port = server.tcp_address
        url = f"http://{host}:{port}"
        for token in (None, "wrong"):
            with NodeClient(url, token=token) as client:
                for call in (client.health, client.pods, client.metrics):
                    with pytest.raises(NodeAPIError) as err:
                        call()
                    assert err.value.status == 401
        with NodeClient(url, token="s3cret-token") as client:
            assert client.health()["node"] == "stub-node"
            assert client.pods() == []
    finally:
        server.stop()
        service.close()
    # and the lab's unix sockets are root's only
    for node in NODES:
        assert sock(lab, node).stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- observability


ROUTES = {
    ("get", "/v1/health"), ("get", "/v1/pods"), ("post", "/v1/pods"),
    ("post", "/v1/pods/{uuid}/stop"), ("delete", "/v1/pods/{uuid}"), ("get", "/v1/networks"),
    ("get", "/v1/endpoints"), ("get", "/v1/dataplane"), ("post", "/v1/probes"),
    ("post", "/v1/probes/batch"), ("get", "/v1/flows"), ("get", "/metrics"),
    ("get", "/v1/openapi.json"), ("get", "/v1/bgp"), ("get", "/v1/pods/{uuid}/logs"),
}  # fmt: skip


def _metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_openapi_and_dataplane(lab, api, httpd) -> None:
    client = api[httpd.node]
    # traffic to the httpd first, so its chains count something
    api["calico-02"].probe(httpd.ip, 80, network="network1", timeout=PROBE_TIMEOUT)

    text = client.metrics()
    assert "# TYPE calico_agent_apply_seconds histogram" in text
    m = _metrics(text)
    buckets = [(k, v) for k, v in m.items() if k.startswith("calico_agent_apply_seconds_bucket")]
    counts = [v for _, v in buckets]
    assert buckets[-1][0].endswith('{le="+Inf"}') and counts == sorted(counts)
    assert m["calico_agent_apply_seconds_count"] == counts[-1] > 0
    assert m["calico_agent_apply_seconds_sum"] > 0
    assert m["calico_agent_rules"] > 0 and m["calico_agent_chains"] > 0
    assert m["calico_agent_ipsets"] >= 1 and m["calico_agent_ipset_members"] >= 1
    assert m["calico_agent_endpoints"] >= 1 and m["calico_agent_in_sync"] == 1

    doc = client._call("GET", "/openapi.json")
    listed = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert listed == ROUTES
    with _raw(lab, httpd.node) as raw:  # every GET it lists answers
        for method, path in ROUTES:
            if (
                method == "get" and "{" not in path
            ):  # a pod's logs: tests/integration/test_console_logs.py
                assert raw.get(path).status_code == 200, path

    dp = client.dataplane()
    chains = dp["chains"]
    for name in ("cali-FORWARD", "cali-INPUT", "cali-OUTPUT", "cali-from-wl-dispatch",
                 "cali-to-wl-dispatch", "cali-pri-network1", f"cali-tw-{httpd.iface}",
                 f"cali-fw-{httpd.iface}"):  # fmt: skip
        assert name in chains, sorted(chains)
    for rules in chains.values():
        for r in rules:
            assert isinstance(r["packets"], int) and isinstance(r["bytes"], int)
    assert sum(r["packets"] for r in chains[f"cali-tw-{httpd.iface}"]) > 0
    # the profile's ingress rule matches "source in the set of has(network1)"
    sets = {
        m.group(1)
        for r in chains["cali-pri-network1"]
        for m in [re.search(r"--match-set (\S+) src", r["rule"])]
        if m
    }
    assert len(sets) == 1
    (members_set,) = sets
    assert httpd.ip in dp["ipsets"][members_set]["members"]
    kernel = lab.exec(httpd.node, ["ipset", "list", members_set]).stdout
    assert re.search(rf"^{re.escape(httpd.ip)}$", kernel, re.M), kernel
    assert {"dst": f"{httpd.ip}/32", "kind": "unicast", "dev": httpd.iface, "via": None} in dp[
        "routes"
    ]
