"""calico-lab topologies on the real kernel: a routed lab behind its router, its ToR."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from lab.cluster import Lab
from lab.fabric import LabError
from tests.integration.conftest import dedicated_lab

pytestmark = [pytest.mark.root, pytest.mark.lab]

CONNECT = "import socket,sys\ntry:\n socket.create_connection((sys.argv[1], 9), timeout=2)\nexcept ConnectionRefusedError:\n pass\n"


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    with dedicated_lab(tmp_path_factory.mktemp("labs"), 4, topology="routed", tor_bgp=True) as c:
        yield c


def reaches(lab, node, address):
    """A TCP connect from `node` to `address` gets an answer (a refusal counts)."""
    return lab.exec(node, ["python3", "-c", CONNECT, address], timeout=20).returncode == 0


def test_nodes_in_different_subnets_reach_each_other_and_etcd(routed):
    st = routed.status()
    nodes = {n["name"]: n["address"] for n in st["nodes"]}
    subnets = {n: routed._read_state()["nodes"][n]["subnet"] for n in nodes}
    assert subnets["calico-01"] != subnets["calico-02"]
    assert reaches(routed, "calico-01", nodes["calico-02"])
    assert reaches(routed, "calico-04", nodes["calico-01"])
    for node in nodes:
        health = routed.exec(node, ["sh", "-c", 'curl -s "$ETCD_ENDPOINTS/health"'], timeout=20)
        assert '"health":"true"' in health.stdout, (node, health.stderr)


def test_router_knows_only_its_connected_subnets(routed):
    fab = routed.status()["fabric"]
    out = subprocess.run(["ip", "-n", fab["netns"], "-4", "-j", "route"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    routes = json.loads(out.stdout)
    assert all(r.get("protocol") in ("kernel", "bird") for r in routes), routes
    assert {r["dst"] for r in routes if r.get("protocol") == "kernel"} == {
        fab["subnet"].replace(".0/22", ".0/24"),
        *(s["cidr"] for s in fab["subnets"]),
    }
    # the root namespace: only the root link's connected route
    root = subprocess.run(["ip", "-4", "route", "show", "dev", fab["root_link"]],
                          capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    assert len(root) == 1 and root[0].startswith(fab["subnet"])


def test_tor_bird_runs_and_peers_every_node(routed):
    bgp = routed.bgp()
    assert bgp["tor"]["alive"], bgp["tor"]
    assert sorted(s["node"] for s in bgp["tor"]["sessions"]) == routed.nodes


def test_tor_learns_the_nodes_blocks_once_they_run_bird(routed):
    bgp = routed.bgp()
    if any("peers" not in v for v in bgp["nodes"].values()):
        pytest.skip("the nodes' agents serve no /v1/bgp yet (node BIRD: issue 13, other part)")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tor = routed.bgp()["tor"]
        if all(s["state"] == "up" for s in tor["sessions"]):
            break
        time.sleep(0.2)
    assert all(s["state"] == "up" for s in tor["sessions"]), tor["sessions"]


def test_routed_without_tor_or_ipip_is_refused_before_anything_is_made(tmp_path):
    lab = Lab("ct-refuse", state_dir=tmp_path / "ct-refuse")
    with pytest.raises(LabError, match="--tor-bgp or --ipip-mode"):
        lab.up(nodes=2, topology="routed")
    assert not (tmp_path / "ct-refuse").exists()


@pytest.mark.slow
def test_eight_node_flat_lab_comes_up(tmp_path):
    with dedicated_lab(tmp_path, 8) as lab:
        st = lab.status()
        assert st["state"] == "up" and len(st["nodes"]) == 8
        assert reaches(lab, "calico-08", st["nodes"][0]["address"])
