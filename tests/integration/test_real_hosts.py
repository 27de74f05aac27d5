"""The seed tutorial on hosts that are not one L2 segment (issue 13's must-shows).

A routed lab puts calico-01 and calico-02 on different subnets behind a router that knows no
pod routes. The tutorial (`seed_tutorial`, the same steps as on the flat lab) runs with
the httpd on calico-01 and wget from calico-02 (across the router) and calico-01, so
network1 reaching it and network2 timing out are both shown across subnets. Each topology is
a dedicated lab, one at a time (a module-scoped parametrized fixture), torn down even when a
test fails. The flat lab on a 3-member TLS etcd runs the tutorial in test_etcd_cluster.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from calico.tutorial import HTTPD_IP
from tests.integration.conftest import dedicated_lab
from tests.integration.test_tutorial import NETWORKS, pod_uuids, remove_pods, seed_tutorial

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

TOPOLOGIES = {
    # Nodes 1 and 3 share a subnet, 2 and 4 the other: CrossSubnet tunnels only between them.
    "routed-ipip-crosssubnet": {"topology": "routed", "ipip_mode": "CrossSubnet"},
    "routed-tor-bgp": {"topology": "routed", "tor_bgp": True},
}
NODES = 4


@pytest.fixture(scope="module", params=list(TOPOLOGIES))
def routed(request, tmp_path_factory) -> Iterator[tuple[str, object]]:
    options = TOPOLOGIES[request.param]
    base = tmp_path_factory.mktemp("routed")
    with dedicated_lab(base, NODES, NETWORKS, **options) as cluster:
        yield request.param, cluster


@pytest.fixture
def ds(routed):
    from calico.datastore import Datastore

    store = Datastore.connect(routed[1].etcd_settings())
    yield store
    store.close()


@pytest.fixture
def started(routed) -> Iterator[dict[str, set[str]]]:
    lab = routed[1]
    before = {node: pod_uuids(lab, node) for node in lab.nodes}
    mine: dict[str, set[str]] = {node: set() for node in lab.nodes}
    yield mine
    for node in lab.nodes:
        mine[node] |= pod_uuids(lab, node) - before[node]
    remove_pods(lab, mine)


def subnet_of(lab, node: str) -> int:
    return lab.status()["fabric"]["nodes"][node]["subnet"]


def test_the_two_tutorial_hosts_are_on_different_subnets(routed) -> None:
    lab = routed[1]
    assert subnet_of(lab, "calico-01") != subnet_of(lab, "calico-02")
    assert subnet_of(lab, "calico-01") == subnet_of(lab, "calico-03")


def test_seed_tutorial_across_subnets(routed, ds, started) -> None:
    """The whole tutorial, calico-01 (httpd) and calico-02 (other subnet)."""
    seed_tutorial(routed[1], ds, started, ("calico-01", "calico-02"))


def test_cross_subnet_traffic_takes_the_topologys_path(routed, started) -> None:
    """While a pod on calico-01 serves, how calico-02 (other subnet) and calico-03 (same
    subnet) route to it: through tunl0 only across subnets with CrossSubnet IPIP; through
    the ToR (a route learned by BGP, via the router) with the ToR peer."""
    name, lab = routed
    proc = lab.exec(
        "calico-01",
        ["rkt", "run", "--detach", f"--net=network1:IP={HTTPD_IP}", "docker://busybox",
         "--exec", "httpd", "--", "-f", "-h", "/"],
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    started["calico-01"].add(proc.stdout.strip().splitlines()[-1])

    def route(node: str) -> dict:
        out = lab.exec(node, ["ip", "-j", "route", "get", HTTPD_IP], timeout=30).stdout
        return json.loads(out)[0]

    across, beside = route("calico-02"), route("calico-03")
    a_addr = lab.node_address("calico-01")
    if name == "routed-ipip-crosssubnet":
        assert across["dev"] == "tunl0" and across["gateway"] == a_addr, across
        assert beside["dev"] == "eth0" and beside.get("gateway") == a_addr, beside
    else:
        routes = json.loads(lab.exec("calico-02", ["ip", "-j", "route", "show"]).stdout)
        learned = [r for r in routes if r.get("protocol") == "bird"]
        assert learned, routes
        assert across["dev"] == "eth0" and across.get("gateway") != a_addr, across
        assert beside["dev"] == "eth0" and beside.get("gateway") == a_addr, beside


def test_a_tor_peer_turned_off_and_on_converges(routed, started, tmp_path) -> None:
    """With the ToR: calico-01's BGPPeer deleted, its session goes, the ToR forgets its
    block and calico-02's pod no longer reaches the httpd on it; applied again, the session
    is Established and the pod gets its answer, with no step but the two calicoctl calls."""
    from tests.integration.test_bgp import established, wget_from
    from tests.integration.test_tutorial import root_run, wait_for

    name, lab = routed
    if name != "routed-tor-bgp":
        pytest.skip("a ToR peering exists only with --tor-bgp")
    proc = lab.exec(
        "calico-01",
        ["rkt", "run", "--detach", f"--net=network1:IP={HTTPD_IP}", "docker://busybox",
         "--exec", "httpd", "--", "-f", "-h", "/"],
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    started["calico-01"].add(proc.stdout.strip().splitlines()[-1])
    tor_addr = lab.status()["fabric"]["subnets"][subnet_of(lab, "calico-01")]["router"]
    assert wait_for(lambda: wget_from(lab, "calico-02"), 20, "the httpd across subnets")

    saved = tmp_path / "peer.json"
    got = root_run(lab, "calicoctl", "get", "bgppeer", "tor-calico-01", "-o", "json")
    assert got.returncode == 0, got.stderr
    peer = json.loads(got.stdout)
    saved.write_text(json.dumps({**peer, "metadata": {"name": peer["metadata"]["name"]}}))
    assert root_run(lab, "calicoctl", "delete", "bgppeer", "tor-calico-01").returncode == 0
    wait_for(lambda: tor_addr not in established(lab, "calico-01"), 15, "the session gone")
    assert not wget_from(lab, "calico-02")

    assert root_run(lab, "calicoctl", "apply", "-f", str(saved)).returncode == 0
    wait_for(lambda: established(lab, "calico-01") == {tor_addr: "node specific"}, 15, "back")
    assert wait_for(lambda: wget_from(lab, "calico-02"), 20, "the httpd again")
