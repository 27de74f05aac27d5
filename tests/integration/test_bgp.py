"""Routes through BGP: every node runs BIRD (started by `calicoctl node run`), the agent
renders its configuration from etcd, and a change to BGPConfiguration or BGPPeer converges
with no manual step (issue 13's must-shows).

One dedicated 3-node flat lab for the module. The httpd pod runs on calico-03, so its block
(192.168.0.64/26) is affine there and every other node must learn the route from BIRD. The
tests run in order: the mesh, then the mesh turned off (routes withdrawn: packets stop),
then calico-01 made a route reflector that every node peers with (packets flow again,
through reflected routes), then a peer that never answers (shown, not hidden).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.tutorial import HTTPD_IP
from tests.integration.conftest import dedicated_lab
from tests.integration.test_tutorial import NETWORKS, on, remove_pods, root_run, wait_for

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

BLOCK = str(ipaddress.ip_network(f"{HTTPD_IP}/26", strict=False))  # claimed by calico-03
CONVERGE = 15.0  # seconds a BGP change gets to show in the kernel and in node status


@pytest.fixture(scope="module")
def mesh_lab(tmp_path_factory) -> Iterator[object]:
    with dedicated_lab(tmp_path_factory.mktemp("bgp"), 3, NETWORKS) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def httpd(mesh_lab) -> Iterator[str]:
    """The httpd pod on calico-03 (its uuid)."""
    proc = on(
        mesh_lab, "calico-03", "rkt", "run", "--detach", f"--net=network1:IP={HTTPD_IP}",
        "docker://busybox", "--exec", "httpd", "--", "-f", "-h", "/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    uuid = proc.stdout.strip().splitlines()[-1]
    yield uuid
    remove_pods(mesh_lab, {"calico-03": {uuid}})


def node_status(lab, node: str) -> str:
    proc = on(lab, node, "calicoctl", "node", "status", timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def peer_rows(text: str) -> list[list[str]]:
    """The rows of node status's IPv4 table: [address, type, state, since, info]."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0][:1].isdigit():
            rows.append(cells)
    return rows


def established(lab, node: str) -> dict[str, str]:
    """Peer address -> peer type, for this node's Established sessions."""
    return {r[0]: r[1] for r in peer_rows(node_status(lab, node)) if r[4] == "Established"}


def block_route(lab, node: str) -> dict | None:
    routes = json.loads(on(lab, node, "ip", "-j", "route", "show", BLOCK).stdout or "[]")
    return routes[0] if routes else None


def wget_from(lab, node: str) -> bool:
    proc = on(
        lab, node, "rkt", "run", "--net=network1", "docker://busybox",
        "--exec=/bin/wget", "--", "-q", "-O-", "-T", "3", f"http://{HTTPD_IP}/etc/passwd",
        timeout=60,
    )  # fmt: skip
    uuids = {line.split()[0] for line in on(lab, node, "rkt", "list", "--no-legend").stdout
             .splitlines() if line.split() and line.split()[1] == "busybox"}  # fmt: skip
    remove_pods(lab, {node: uuids})
    return proc.returncode == 0


def calicoctl_apply(lab, tmp_path: Path, docs: list[dict]) -> None:
    path = tmp_path / "bgp.json"
    path.write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}))
    proc = root_run(lab, "calicoctl", "apply", "-f", str(path))
    assert proc.returncode == 0, proc.stderr


V3 = "projectcalico.org/v3"


def test_every_node_meshes_with_the_others(mesh_lab) -> None:
    """The default: a full node-to-node mesh, Established in Calico's table."""
    for node in mesh_lab.nodes:
        others = {mesh_lab.node_address(n) for n in mesh_lab.nodes if n != node}
        text = node_status(mesh_lab, node)
        assert text.startswith(f"calico-node is running on {node}"), text
        assert "PEER ADDRESS" in text and "PEER TYPE" in text and "SINCE" in text, text
        assert established(mesh_lab, node) == dict.fromkeys(others, "node-to-node mesh"), text


def test_a_remote_block_is_routed_by_bird(mesh_lab, httpd) -> None:
    """The block calico-03 claimed reaches calico-01 as a BIRD route via calico-03, and a
    pod on calico-01 gets an answer through it."""
    via = mesh_lab.node_address("calico-03")
    route = wait_for(lambda: block_route(mesh_lab, "calico-01"), CONVERGE, "the block's route")
    assert route.get("protocol") == "bird" and route.get("gateway") == via, route
    assert wget_from(mesh_lab, "calico-01")


def test_mesh_off_withdraws_the_routes(mesh_lab, httpd, tmp_path) -> None:
    """BGPConfiguration default with the mesh off: the sessions go, the learned routes go
    with them, and the pod on calico-01 no longer reaches the httpd (no route left but the
    fabric's default, which knows no pods)."""
    calicoctl_apply(mesh_lab, tmp_path, [{
        "apiVersion": V3, "kind": "BGPConfiguration", "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": False, "asNumber": 64512},
    }])  # fmt: skip
    wait_for(lambda: block_route(mesh_lab, "calico-01") is None, CONVERGE, "route withdrawn")
    wait_for(lambda: not peer_rows(node_status(mesh_lab, "calico-01")), CONVERGE, "no peers")
    assert "No IPv4 peers found." in node_status(mesh_lab, "calico-01")
    assert not wget_from(mesh_lab, "calico-01")


def test_a_route_reflector_brings_them_back(mesh_lab, httpd, tmp_path) -> None:
    """calico-01 becomes a route reflector (routeReflectorClusterID) and a global BGPPeer
    makes every node peer with it: calico-02 learns calico-03's block through calico-01
    with calico-03 as next hop, and its pod reaches the httpd again."""
    rr = mesh_lab.node_address("calico-01")
    got = json.loads(root_run(mesh_lab, "calicoctl", "get", "node", "calico-01", "-o", "json")
                     .stdout)  # fmt: skip
    got["spec"]["bgp"]["routeReflectorClusterID"] = "224.0.0.1"
    calicoctl_apply(mesh_lab, tmp_path, [got, {
        "apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "peer-with-rr"},
        "spec": {"peerIP": rr, "asNumber": 64512},
    }])  # fmt: skip
    a2, a3 = mesh_lab.node_address("calico-02"), mesh_lab.node_address("calico-03")
    clients = {a2: "route reflector client", a3: "route reflector client"}
    wait_for(lambda: established(mesh_lab, "calico-01") == clients, CONVERGE, "RR sessions")
    wait_for(lambda: established(mesh_lab, "calico-02") == {rr: "global"}, CONVERGE, "to RR")
    route = wait_for(lambda: block_route(mesh_lab, "calico-02"), CONVERGE, "reflected route")
    assert route.get("protocol") == "bird" and route.get("gateway") == a3, route
    assert wget_from(mesh_lab, "calico-02")


def test_a_peer_that_never_answers_is_shown(mesh_lab, tmp_path) -> None:
    """A node-specific BGPPeer nobody answers: calico-02's status lists it, not Established,
    beside the session that works."""
    calicoctl_apply(mesh_lab, tmp_path, [{
        "apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "nobody"},
        "spec": {"node": "calico-02", "peerIP": "10.254.254.254", "asNumber": 65099},
    }])  # fmt: skip

    def row() -> list[str] | None:
        rows = peer_rows(node_status(mesh_lab, "calico-02"))
        return next((r for r in rows if r[0] == "10.254.254.254"), None)

    found = wait_for(row, CONVERGE, "the unanswered peer in node status")
    assert found[1] == "node specific" and found[4] != "Established", found
    assert mesh_lab.node_address("calico-01") in established(mesh_lab, "calico-02")


def test_bird_killed_is_restarted_and_routes_hold(mesh_lab, httpd, tmp_path) -> None:
    """kill -9 of calico-03's BIRD: calico-node starts it again, its peers keep the routes
    they learned from it meanwhile (graceful restart), the pods keep talking, and the
    sessions come back Established."""
    # Back to the default full mesh from whatever the tests before left: no route
    # reflector, no explicit peers, the mesh on.
    node = json.loads(root_run(mesh_lab, "calicoctl", "get", "node", "calico-01", "-o", "json")
                      .stdout)  # fmt: skip
    node["spec"].get("bgp", {}).pop("routeReflectorClusterID", None)
    calicoctl_apply(mesh_lab, tmp_path, [node, {
        "apiVersion": V3, "kind": "BGPConfiguration", "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": True, "asNumber": 64512},
    }])  # fmt: skip
    for name in ("peer-with-rr", "nobody"):
        root_run(mesh_lab, "calicoctl", "delete", "bgppeer", name)
    a2, a3 = mesh_lab.node_address("calico-02"), mesh_lab.node_address("calico-03")
    mesh = {a2: "node-to-node mesh", a3: "node-to-node mesh"}
    wait_for(lambda: established(mesh_lab, "calico-01") == mesh, CONVERGE, "the mesh back")
    wait_for(
        lambda: (block_route(mesh_lab, "calico-01") or {}).get("gateway") == a3,
        CONVERGE,
        "the route learned over the mesh",
    )
    state_file = mesh_lab.node_dir("calico-03") / "node-service.json"
    bird = json.loads(state_file.read_text())["programs"]["bird"]
    os.kill(bird["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # the restart's window: the route stays
        route = block_route(mesh_lab, "calico-01")
        assert route and route.get("gateway") == a3, route
        time.sleep(0.1)
    assert wget_from(mesh_lab, "calico-01")

    def restarted() -> bool:
        rec = json.loads(state_file.read_text())["programs"]["bird"]
        return rec.get("state") == "running" and rec.get("pid") != bird["pid"]

    wait_for(restarted, CONVERGE, "calico-node restarting BIRD")
    wait_for(lambda: a3 in established(mesh_lab, "calico-01"), CONVERGE, "the session back")
    assert wget_from(mesh_lab, "calico-01")
