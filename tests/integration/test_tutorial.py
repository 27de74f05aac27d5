"""The seed tutorial, end to end, on the shared 2-node lab (issues 5 and 8).

Each step is typed as the tutorial has the user type it (on a node through `lab.exec`,
`calicoctl` in the root namespace) and the test checks what the user would see: `rkt list`
lines, wget's output, `calicoctl get profiles`. Clean-up is then checked below the surface
too: no endpoint in etcd, no IPAM allocation or handle, no cali veth, no netns pin.

The lab is shared with other modules: every pod this module starts is stopped and removed
even when a test fails, and network files it wrote (that were not there before) go too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico import ipam, keys
from calico.tutorial import HTTPD_IP
from lab.cluster import plugin_dir

pytestmark = [pytest.mark.root, pytest.mark.lab]

NODES = ("calico-01", "calico-02")
NETWORKS = ("network1", "network2")
WEP_PREFIX = "/calico/resources/v3/projectcalico.org/workloadendpoints/"

# The network file exactly as the tutorial writes it.
CONF = """{{
    "name": "{name}",
    "cniVersion": "0.1.0",
    "type": "calico",
    "ipam": {{
        "type": "calico-ipam"
    }}
}}
"""


# ---------------------------------------------------------------- helpers


def on(lab, node: str, *argv: str, input: str | None = None, timeout: float = 60):
    return lab.exec(node, list(argv), input=input, timeout=timeout)


def rkt_rows(lab, node: str) -> list[list[str]]:
    """`rkt list --full --no-legend` split into fields (columns are padded with tabs)."""
    proc = on(lab, node, "rkt", "list", "--full", "--no-legend")
    assert proc.returncode == 0, proc.stderr
    return [[f for f in line.split("\t") if f] for line in proc.stdout.splitlines() if line.strip()]


def pod_uuids(lab, node: str) -> set[str]:
    return {row[0] for row in rkt_rows(lab, node) if row[1] != "node"}


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def root_run(lab, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    tool = Path(plugin_dir()) / argv[0]
    return subprocess.run(
        [str(tool) if tool.exists() else argv[0], *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **lab.root_env()},
    )


def remove_pods(lab, uuids: dict[str, set[str]]) -> None:
    """Stop and remove the given pods (by node), whatever state they are in."""
    for node, ids in uuids.items():
        present = {row[0] for row in rkt_rows(lab, node)}
        for uuid in ids & present:
            on(lab, node, "rkt", "stop", "--force", uuid, timeout=30)
            on(lab, node, "rkt", "rm", uuid, timeout=30)


class Leftovers:
    """What pods leave behind, read from etcd and the nodes."""

    def __init__(self, lab, ds, nodes: tuple[str, ...] = NODES):
        self.lab, self.ds, self.nodes = lab, ds, nodes

    def endpoints(self) -> set[str]:
        return {kv.key for kv in self.ds.kv_list(WEP_PREFIX)[0]}

    def handles(self) -> set[str]:
        return {kv.key[len(keys.HANDLE_PREFIX) :] for kv in self.ds.kv_list(keys.HANDLE_PREFIX)[0]}

    def allocations(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for kv in self.ds.kv_list(keys.BLOCK_PREFIX)[0]:
            for ip, handle in ipam.Block.from_json(kv.value).allocated().items():
                out[str(ip)] = handle
        return out

    def cali_links(self, node: str) -> list[str]:
        out = on(self.lab, node, "ip", "-o", "link", "show").stdout
        names = [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()]
        return [n for n in names if n.startswith("cali")]

    def pod_dirs(self, node: str) -> set[str]:
        pods = self.lab.node_dir(node) / "rkt" / "pods"
        return {p.name for p in pods.iterdir()} if pods.is_dir() else set()

    def netns_pins(self, node: str) -> list[str]:
        """Bind mounts of pod network namespaces, as the node's mount namespace has them."""
        mountinfo = on(self.lab, node, "cat", "/proc/self/mountinfo").stdout
        return [line.split()[4] for line in mountinfo.splitlines() if "/pods/" in line.split()[4]]

    def snapshot(self) -> dict[str, object]:
        snap: dict[str, object] = {
            "endpoints": self.endpoints(),
            "handles": self.handles(),
            "allocations": self.allocations(),
        }
        for node in self.nodes:
            snap[f"{node} pods"] = self.pod_dirs(node)
            snap[f"{node} cali links"] = sorted(self.cali_links(node))
            snap[f"{node} netns pins"] = sorted(self.netns_pins(node))
        return snap


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ds(lab):
    from calico.datastore import Datastore

    store = Datastore.connect(lab.etcd_endpoints)
    yield store
    store.close()


@pytest.fixture(scope="module")
def networks(lab) -> Iterator[None]:
    """The tutorial's two network files on both nodes; the ones this module made go at the
    end (files someone else wrote stay as they were)."""
    made = []
    for node in NODES:
        for net in NETWORKS:
            path = f"/etc/rkt/net.d/10-calico-{net}.conf"
            if on(lab, node, "test", "-e", path).returncode != 0:
                made.append((node, path))
    yield
    for node, path in made:
        on(lab, node, "rm", "-f", path)


@pytest.fixture
def started(lab) -> Iterator[dict[str, set[str]]]:
    """Pods a test starts, by node; every one of them is removed at the end, even on failure
    (the pods that were there before the test are left alone)."""
    before = {node: pod_uuids(lab, node) for node in NODES}
    mine: dict[str, set[str]] = {node: set() for node in NODES}
    yield mine
    for node in NODES:
        mine[node] |= pod_uuids(lab, node) - before[node]
    remove_pods(lab, mine)


# ---------------------------------------------------------------- the walkthrough


def test_seed_tutorial_step_by_step(lab, ds, networks, started) -> None:
    seed_tutorial(lab, ds, started, NODES)


def seed_tutorial(lab, ds, started: dict[str, set[str]], nodes: tuple[str, str]) -> None:
    """The tutorial's steps on `nodes` (the httpd on the first, wget from both), checked
    as the user sees them, then the clean-up checked below the surface. Other modules run
    it on other lab topologies (test_real_hosts.py)."""
    NODES = nodes  # noqa: N806 - the tutorial's two hosts, as in the module-level default
    leftovers = Leftovers(lab, ds, nodes)

    # 1. Verify the Calico service is running: `rkt list` shows `node` running on each node.
    for node in NODES:
        proc = on(lab, node, "rkt", "list")
        assert proc.returncode == 0, proc.stderr
        header, *rows = proc.stdout.splitlines()
        assert header.split() == [
            "UUID", "APP", "IMAGE", "NAME", "STATE", "CREATED", "STARTED", "NETWORKS"
        ]  # fmt: skip
        node_rows = [r.split() for r in rows if r.split()[1:2] == ["node"]]
        assert len(node_rows) == 1, proc.stdout
        assert "running" in node_rows[0], proc.stdout

    # 2. Create the networks, on both nodes, as the tutorial's `cat > file <<EOF`.
    for node in NODES:
        for net in NETWORKS:
            path = f"/etc/rkt/net.d/10-calico-{net}.conf"
            proc = on(lab, node, "sh", "-c", f"cat > {path}", input=CONF.format(name=net))
            assert proc.returncode == 0, proc.stderr
            written = json.loads(on(lab, node, "cat", path).stdout)
            assert written == {
                "name": net,
                "cniVersion": "0.1.0",
                "type": "calico",
                "ipam": {"type": "calico-ipam"},
            }
        listing = on(lab, node, "ls", "/etc/rkt/net.d").stdout.split()
        assert {"10-calico-network1.conf", "10-calico-network2.conf"} <= set(listing)

    # 3. On calico-01, the httpd in network1 at a fixed address, backgrounded with `&`.
    a, b = NODES
    proc = on(
        lab, a, "sh", "-c",
        f"rkt run --net=network1:IP={HTTPD_IP} docker://busybox --exec httpd -- -f -h / "
        ">/dev/null 2>&1 &",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    want = f"network1:ip4={HTTPD_IP}"

    def httpd_listed() -> str | None:
        out = on(lab, a, "rkt", "list").stdout
        for line in out.splitlines():
            if want in line and "running" in line.split():
                return line
        return None

    line = wait_for(httpd_listed, 20, f"`rkt list` on {a} to show {want} running")
    fields = line.split()
    assert fields[1] == "busybox"
    assert "default-restricted:ip4=" in line  # rkt's second, host-only network
    httpd = next(row[0] for row in rkt_rows(lab, a) if want in " ".join(row))
    assert httpd.startswith(fields[0])
    started[a].add(httpd)

    # 4. Same network, from the other node and from the same node: wget gets /etc/passwd.
    wget = ["--exec=/bin/wget", "--", "-T", "3", f"http://{HTTPD_IP}/etc/passwd"]
    for node in (b, a):
        proc = on(lab, node, "rkt", "run", "--net=network1", "docker://busybox", *wget)
        seen = proc.stdout + proc.stderr
        assert proc.returncode == 0, seen
        assert re.search(r"passwd\s+100%", seen), seen
        assert f"Connecting to {HTTPD_IP}" in seen

    # 5. From network2 the server is isolated: wget waits its 3 s and gives up.
    t0 = time.monotonic()
    proc = on(lab, b, "rkt", "run", "--net=network2", "docker://busybox", *wget)
    took = time.monotonic() - t0
    seen = proc.stdout + proc.stderr
    assert proc.returncode != 0, seen
    assert "wget: download timed out" in seen, seen
    assert "100%" not in seen
    assert 2.9 <= took < 8, f"wget gave up after {took:.1f} s"

    # 6. The plugin made one profile per network.
    proc = root_run(lab, "calicoctl", "get", "profiles")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()]
    assert proc.stdout.splitlines()[0].split()[0] == "NAME"
    assert {"network1", "network2"} <= set(names), proc.stdout

    # What the pods hold before clean-up, to check it all goes.
    pods = {node: pod_uuids(lab, node) for node in NODES}
    for node in NODES:
        started[node] |= pods[node]
    assert len(pods[a]) == 2 and len(pods[b]) == 2, pods  # httpd + wget; two wgets
    held_handles = {h for h in leftovers.handles() if h.split(".", 1)[-1] in pods[a] | pods[b]}
    assert f"network1.{httpd}" in held_handles
    assert leftovers.allocations().get(HTTPD_IP) == f"network1.{httpd}"

    # 7. Reset: stop the httpd, then remove every pod as the tutorial pipes it.
    proc = on(lab, a, "rkt", "stop", "--force", httpd)
    assert proc.returncode == 0, proc.stderr
    wait_for(
        lambda: any(r[0] == httpd and "exited" in r for r in rkt_rows(lab, a)),
        10, "the httpd pod to be exited",
    )  # fmt: skip
    for node in NODES:
        proc = on(lab, node, "sh", "-c", "rkt list --no-legend | cut -f1 | xargs rkt rm")
        # rm refuses the running node service pod (so xargs reports a failure), nothing else
        refusals = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert all("running" in ln for ln in refusals), proc.stderr
        rows = rkt_rows(lab, node)
        assert [r[1] for r in rows] == ["node"], rows
        assert "running" in rows[0]

    every_pod = pods[a] | pods[b]
    endpoints = [
        k for k in leftovers.endpoints() if any(u.replace("-", "--") in k for u in every_pod)
    ]
    assert endpoints == []
    assert [h for h in leftovers.handles() if h.split(".", 1)[-1] in every_pod] == []
    allocations = leftovers.allocations()
    assert [ip for ip, h in allocations.items() if h and h.split(".", 1)[-1] in every_pod] == []
    assert HTTPD_IP not in allocations
    for node in NODES:
        assert leftovers.cali_links(node) == [], f"cali veths left on {node}"
        assert not leftovers.pod_dirs(node) & every_pod
        assert leftovers.netns_pins(node) == [], f"pod netns pins left on {node}"


@pytest.mark.parametrize(
    "name", ["isolation", pytest.param("default-deny", marks=pytest.mark.slow),
             pytest.param("policy-order", marks=pytest.mark.slow),
             pytest.param("two-networks", marks=pytest.mark.slow)],
)  # fmt: skip
def test_calico_lab_tutorial_passes_on_the_lab(lab, networks, started, name) -> None:
    """Issues 8 and 14: `calico-lab tutorial NAME` against the (clean) shared lab: every step
    of every walkthrough PASSes (its probes answer or time out as each step promises), and
    its clean-up leaves the node service alone and no policy behind."""
    from calico.tutorial import TUTORIALS

    for node in NODES:  # fresh enough: only the node service runs
        assert [r[1] for r in rkt_rows(lab, node)] == ["node"]
    proc = subprocess.run(
        [str(Path(plugin_dir()) / "calico-lab"), "tutorial", "--name", lab.name, name],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **lab.root_env()},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = re.findall(r"^   (PASS|FAIL) \(", proc.stdout, re.M)
    steps = re.findall(r"^== \d+\. ", proc.stdout, re.M)
    assert len(steps) == len(TUTORIALS[name].steps), proc.stdout
    assert verdicts == ["PASS"] * len(steps), proc.stdout
    assert f"tutorial {name}: every step passed" in proc.stdout
    for node in NODES:  # its own clean-up step left only the node service
        assert [r[1] for r in rkt_rows(lab, node)] == ["node"]
    for argv in (["networkpolicy", "-A"], ["globalnetworkpolicy"]):
        listed = root_run(lab, "calicoctl", "get", *argv)
        assert listed.returncode == 0 and listed.stdout.strip().splitlines()[1:] == [], listed


def test_calico_lab_tutorial_lists_and_refuses() -> None:
    tool = str(Path(plugin_dir()) / "calico-lab")
    listed = subprocess.run([tool, "tutorial", "--list"], capture_output=True, text=True)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "isolation", "default-deny", "policy-order", "two-networks",
    ]  # fmt: skip
    bad = subprocess.run([tool, "tutorial", "nosuch"], capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown tutorial 'nosuch'" in bad.stderr


# ---------------------------------------------------------------- bad input


BAD_INPUT = {
    "unknown network": (["run", "--net=nosuch", "docker://busybox", "--exec=/bin/true"],
                        "networks not found: nosuch"),
    "malformed --net": (["run", "--net=network1:IP", "docker://busybox", "--exec=/bin/true"],
                        "malformed --net"),
    "empty network name": (["run", "--net=:IP=192.168.0.7", "docker://busybox",
                            "--exec=/bin/true"], "malformed --net"),
    "IP= outside the pool": (["run", "--net=network1:IP=10.99.0.5", "docker://busybox",
                              "--exec=/bin/true"], "10.99.0.5 is not in any IPPool"),
    "second network fails after the first was added": (
        ["run", "--net=network1", "--net=network2:IP=10.99.0.6", "docker://busybox",
         "--exec=/bin/true"], "10.99.0.6 is not in any IPPool"),
    "unknown image": (["run", "--net=network1", "docker://nosuchimage", "--exec=/bin/true"],
                      "image 'docker://nosuchimage' not found"),
    "unknown UUID (stop)": (["stop", "--force", "0000dead"], "no pod found with UUID '0000dead'"),
    "unknown UUID (rm)": (["rm", "0000dead"], "no pod found with UUID '0000dead'"),
    "unknown UUID (status)": (["status", "0000dead"], "no pod found with UUID '0000dead'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_leaves_nothing(lab, ds, networks, started, case) -> None:
    argv, message = BAD_INPUT[case]
    for node in NODES:  # the tutorial's files, in case this runs on its own
        for net in NETWORKS:
            lab.write_net_conf(node, f"10-calico-{net}.conf", CONF.format(name=net))
    leftovers = Leftovers(lab, ds)
    before = leftovers.snapshot()
    proc = on(lab, "calico-01", "rkt", *argv)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("rkt: ") and message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout.strip() == ""
    assert leftovers.snapshot() == before
