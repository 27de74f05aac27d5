"""calico-lab on the real kernel: namespaces, fabric, etcd, per-node /etc, teardown."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calico.keys import resource_key
from lab import fabric
from lab.cluster import DEFAULT_POOL_NAME, REGISTRY_DIR, Lab
from tests.integration.conftest import lab_prerequisites_missing

pytestmark = [pytest.mark.root, pytest.mark.lab]

CALICO_LAB = str(Path(sys.executable).parent / "calico-lab")


@pytest.fixture(autouse=True)
def _prerequisites():
    reason = lab_prerequisites_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def fresh_lab(tmp_path):
    """A lab of its own for lifecycle tests (not up yet); always removed afterwards."""
    name = "ct" + secrets.token_hex(2)
    cluster = Lab(name, state_dir=tmp_path / "labs" / name)
    try:
        yield cluster
    finally:
        cluster.down()


def root_snapshot() -> dict:
    """What of the root namespace a lab must leave alone."""
    return {
        "routes": subprocess.run(
            ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True
        ).stdout.splitlines(),
        "links": [
            line.split(":")[1].strip().split("@")[0]
            for line in subprocess.run(
                ["ip", "-o", "link"], capture_output=True, text=True
            ).stdout.splitlines()
        ],
        "iptables": subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout,
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


def leftovers(cluster: Lab, pids: list[int], root_link: str) -> list[str]:
    """Everything of `cluster` still on the machine (empty when it is all gone)."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line}" for line in netns.splitlines() if line.startswith(cluster.name)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if f" {root_link}" in links or f" {root_link}@" in links:
        found.append(f"link {root_link}")
    mounts = Path("/proc/mounts").read_text()
    found += [
        f"mount {line}"
        for line in mounts.splitlines()
        if str(cluster.state_dir) in line or cluster.name in line
    ]
    found += [f"pid {p}" for p in pids if fabric.proc_starttime(p) is not None]
    if cluster.state_dir.exists():
        found.append(f"dir {cluster.state_dir}")
    if os.path.lexists(f"{REGISTRY_DIR}/{cluster.name}"):
        found.append(f"registry entry {REGISTRY_DIR}/{cluster.name}")
    return found


def ping_argv(address: str) -> list[str] | None:
    if shutil.which("ping"):
        return ["ping", "-c1", "-W1", address]
    if shutil.which("busybox"):
        return ["busybox", "ping", "-c1", "-W1", address]
    return None


# --- lifecycle (each test makes its own lab) -------------------------------------------


def test_up_then_down_leaves_nothing_behind(fresh_lab):
    before = root_snapshot()
    t0 = time.monotonic()
    st = fresh_lab.up(nodes=2)
    up_seconds = time.monotonic() - t0
    assert st["state"] == "up", st
    assert [n["name"] for n in st["nodes"]] == ["calico-01", "calico-02"]
    assert up_seconds < 5, f"up took {up_seconds:.2f}s"

    # The root namespace gained exactly one link and its connected route, nothing else.
    root_link = st["fabric"]["root_link"]
    during = root_snapshot()
    assert set(during["links"]) - set(before["links"]) == {root_link}
    new_routes = set(during["routes"]) - set(before["routes"])
    assert new_routes and all(root_link in r for r in new_routes), new_routes
    assert set(before["routes"]) <= set(during["routes"])
    assert during["iptables"] == before["iptables"]
    assert during["ip_forward"] == before["ip_forward"]

    # A process living on a node (a shell from `exec`) must go with the lab too.
    sleeper = subprocess.Popen(
        fresh_lab.exec_argv("calico-01", ["sleep", "300"]),
        env={**os.environ, **fresh_lab.node_env("calico-01")},
    )
    pids = [st["etcd"]["pid"], sleeper.pid]
    time.sleep(0.2)

    t0 = time.monotonic()
    res = fresh_lab.down()
    down_seconds = time.monotonic() - t0
    assert res["removed"]
    assert sleeper.wait(5) is not None
    assert leftovers(fresh_lab, pids, root_link) == []
    assert fresh_lab.status()["state"] == "down"
    assert root_snapshot() == before
    assert down_seconds < 5, f"down took {down_seconds:.2f}s"


def test_up_twice_is_idempotent(fresh_lab):
    first = fresh_lab.up(nodes=2)
    second = fresh_lab.up(nodes=2)
    assert not first["already_up"]
    assert second["already_up"]
    assert second["etcd"]["pid"] == first["etcd"]["pid"]
    assert second["fabric"] == first["fabric"]

    def steady(nodes):  # the health file's age moves on between two calls
        return [{**n, "agent": {**n["agent"], "health_age": None}} for n in nodes]

    assert steady(second["nodes"]) == steady(first["nodes"])
    assert all(n["agent"]["healthy"] for n in second["nodes"])
    from lab.fabric import LabError

    with pytest.raises(LabError, match="already up with 2 nodes"):
        fresh_lab.up(nodes=3)


def test_down_after_etcd_killed(fresh_lab):
    st = fresh_lab.up(nodes=2)
    pid = st["etcd"]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while fabric.proc_starttime(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fresh_lab.status()["state"] == "broken"
    fresh_lab.down()
    assert leftovers(fresh_lab, [pid], st["fabric"]["root_link"]) == []


def test_up_restarts_a_killed_etcd_and_keeps_the_lab(fresh_lab):
    st = fresh_lab.up(nodes=2)
    os.kill(st["etcd"]["pid"], signal.SIGKILL)
    again = fresh_lab.up(nodes=2)
    assert again["state"] == "up"
    assert not again["already_up"] and again["repaired"][0].startswith("restart etcd")
    assert again["etcd"]["pid"] != st["etcd"]["pid"]
    assert again["etcd"]["endpoints"] == st["etcd"]["endpoints"]
    assert again["fabric"] == st["fabric"]
    assert fabric.proc_starttime(st["etcd"]["pid"]) is None


def test_down_after_up_died_half_way(tmp_path):
    """`up` killed after the namespaces, mounts and etcd exist but before it finished."""
    name = "ct" + secrets.token_hex(2)
    state_dir = tmp_path / "labs" / name
    crash = (
        "import os, sys\n"
        "from lab.cluster import Lab\n"
        "Lab._register = lambda self, state: os._exit(9)\n"
        f"Lab({name!r}, state_dir={str(state_dir)!r}).up(nodes=2)\n"
    )
    proc = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    cluster = Lab(name, state_dir=state_dir)
    try:
        state = json.loads((state_dir / "lab.json").read_text())
        assert state["phase"] == "starting"
        assert cluster.status()["state"] == "broken"
        assert fabric.netns_exists(f"{name}-calico-02")
        etcd_pid = state["etcd"]["pid"]
        assert fabric.proc_starttime(etcd_pid) is not None  # the orphaned etcd still runs
    finally:
        cluster.down()
    assert leftovers(cluster, [etcd_pid], state["fabric"]["root_link"]) == []


# --- the shared lab --------------------------------------------------------------------


def test_nodes_reach_each_other_over_the_fabric(lab):
    a, b = lab.nodes[:2]
    argv = ping_argv(lab.node_address(b))
    if argv:
        proc = lab.exec(a, argv, timeout=10)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return
    # No ping here: a TCP connection from node a to a listener on node b instead.
    listen = (
        "import socket; s = socket.create_server(('0.0.0.0', 7777)); print('ready', flush=True);"
        " s.accept()[0].sendall(b'hi from b')"
    )
    server = subprocess.Popen(
        lab.exec_argv(b, [sys.executable, "-c", listen]),
        stdout=subprocess.PIPE, text=True, env={**os.environ, **lab.node_env(b)},
    )  # fmt: skip
    try:
        assert server.stdout.readline().strip() == "ready"
        connect = (
            f"import socket; c = socket.create_connection(({lab.node_address(b)!r}, 7777), 2);"
            " print(c.recv(100).decode())"
        )
        proc = lab.exec(a, [sys.executable, "-c", connect], timeout=10)
        assert proc.stdout.strip() == "hi from b", proc.stderr
    finally:
        server.kill()
        server.wait()


def test_node_is_set_up_like_a_host(lab):
    node = "calico-01"
    st = lab.status()
    bridge = st["fabric"]["bridge_address"]
    out = lab.exec(node, ["sh", "-c", "hostname; cat /proc/sys/net/ipv4/ip_forward"]).stdout
    assert out.split() == [node, "1"]
    routes = lab.exec(node, ["ip", "route"]).stdout
    assert f"default via {bridge} dev eth0" in routes
    # /sys is the node's own: only its links.
    assert sorted(lab.exec(node, ["ls", "/sys/class/net"]).stdout.split()) == [
        "eth0",
        "lo",
        "tunl0",
    ]
    # Named network namespaces (a runtime's pods) are the node's own.
    pod = "podtest" + secrets.token_hex(2)
    lab.exec(node, ["ip", "netns", "add", pod], check=True)
    try:
        assert lab.exec(node, ["ip", "netns", "list"]).stdout.split() == [pod]
        assert pod not in lab.exec("calico-02", ["ip", "netns", "list"]).stdout
        assert not Path("/run/netns", pod).exists()
    finally:
        lab.exec(node, ["ip", "netns", "delete", pod], check=True)
    # Unknown destinations go to the fabric namespace, which does not forward.
    assert f"via {bridge}" in lab.exec(node, ["ip", "route", "get", "192.0.2.77"]).stdout
    fab = subprocess.run(
        ["nsenter", f"--net=/run/netns/{st['fabric']['netns']}", "cat",
         "/proc/sys/net/ipv4/ip_forward"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert fab.strip() == "0"


def test_exec_passes_env_stdin_and_exit_code(lab):
    node = "calico-02"
    env = lab.node_env(node)
    script = "cat; echo; echo $CALICO_NODENAME $ETCD_ENDPOINTS $RKT_DIR $CNI_PATH; exit 5"
    proc = lab.exec(node, ["sh", "-c", script], input="hello")
    assert proc.returncode == 5
    first, second = proc.stdout.splitlines()
    assert first == "hello"
    assert second.split() == [
        node, env["ETCD_ENDPOINTS"], env["RKT_DIR"], env["CNI_PATH"]
    ]  # fmt: skip
    assert env["ETCD_ENDPOINTS"].startswith(f"http://{lab.status()['fabric']['root_address']}:")
    assert str(Path(sys.executable).parent) in env["CNI_PATH"].split(":")
    assert "/usr/lib/cni" in env["CNI_PATH"].split(":")
    assert env["CALICO_AGENT_SOCKET"] == str(lab.node_dir(node) / "agent.sock")
    assert lab.root_env()["ETCD_ENDPOINTS"].startswith("http://127.0.0.1:")


def test_each_node_has_its_own_net_d(lab):
    name = f"10-test-{secrets.token_hex(3)}.conf"
    conf = {"cniVersion": "0.3.1", "name": "network1", "type": "calico"}
    path = lab.write_net_conf("calico-01", name, conf)
    try:
        assert path == f"/etc/rkt/net.d/{name}"
        on_1 = lab.exec("calico-01", ["cat", path])
        assert on_1.returncode == 0 and json.loads(on_1.stdout) == conf
        assert lab.exec("calico-02", ["test", "-e", path]).returncode == 1
        assert lab.exec("calico-02", ["test", "-d", "/etc/rkt/net.d"]).returncode == 0
        assert not Path(path).exists()
        # Written the way the tutorial does it, with a shell redirection.
        lab.exec("calico-02", ["sh", "-c", f"echo '{{}}' > {path}"], check=True)
        assert lab.exec("calico-01", ["cat", path]).stdout == on_1.stdout
    finally:
        for node in lab.nodes:
            lab.exec(node, ["rm", "-f", path])


def test_etcd_reachable_from_a_node(lab):
    env = lab.node_env("calico-02")
    proc = lab.exec(
        "calico-02",
        ["etcdctl", f"--endpoints={env['ETCD_ENDPOINTS']}", "endpoint", "health"],
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    assert "is healthy" in proc.stdout + proc.stderr


def test_nodes_and_default_pool_are_registered(lab):
    def get(key: str) -> dict:
        proc = subprocess.run(
            ["etcdctl", f"--endpoints={lab.etcd_endpoints}", "get", key, "--print-value-only"],
            capture_output=True, text=True, check=True,
            env={**os.environ, "ETCDCTL_API": "3"},
        )  # fmt: skip
        return json.loads(proc.stdout)

    for node in lab.nodes:
        res = get(resource_key("Node", node))
        assert res["kind"] == "Node" and res["metadata"]["name"] == node
        assert res["spec"]["bgp"]["ipv4Address"] == lab.node_address(node) + "/24"
        sock = res["metadata"]["annotations"]["calico-rkt.io/api"]
        assert sock == f"unix://{lab.node_dir(node)}/agent.sock"
    pool = get(resource_key("IPPool", DEFAULT_POOL_NAME))
    assert pool["kind"] == "IPPool"
    assert pool["spec"]["cidr"] == "192.168.0.0/16"
    assert pool["spec"]["blockSize"] == 26
    assert pool["spec"].get("natOutgoing", False) is False  # false is the default, not written


def test_cli(lab):
    # No CALICO_LAB_STATE: the lab is found through its registration, wherever its state is.
    env = {k: v for k, v in os.environ.items() if k != "CALICO_LAB_STATE"}
    env["CALICO_LAB"] = lab.name

    def cli(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [CALICO_LAB, *args], capture_output=True, text=True, env=env, timeout=30, **kw
        )

    st = cli("status", "--json")
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["state"] == "up"
    assert lab.name in cli("list").stdout.split()

    proc = cli("exec", "calico-01", "--", "sh", "-c", "cat; exit 3", input="piped")
    assert (proc.returncode, proc.stdout) == (3, "piped")
    assert cli("exec", "2", "--", "hostname").stdout.strip() == "calico-02"

    exports = cli("env").stdout
    assert f"export ETCD_ENDPOINTS={lab.etcd_endpoints}\n" in exports
    assert "export CALICO_NODENAME=calico-01" in cli("env", "--node", "calico-01").stdout

    up = cli("up")
    assert up.returncode == 0 and "already up" in up.stdout

    for args in (
        ["exec", "calico-09", "--", "true"],
        ["exec", "--name", "nosuch" + secrets.token_hex(2), "calico-01", "--", "true"],
        ["up", "--name", "Bad/Name"],
    ):
        bad = cli(*args)
        assert bad.returncode != 0
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "Traceback" not in bad.stderr
    missing = cli("status", "--name", "nosuch" + secrets.token_hex(2))
    assert missing.returncode == 3 and ": down" in missing.stdout
