"""`calicoctl ipam check/show` logic over an in-memory snapshot (calicoctl/ipam_commands.py)."""

from __future__ import annotations

import ipaddress

from calico import ipam
from calicoctl import ipam_commands as ci


def _snapshot() -> ci.Snapshot:
    pool = ipam.Pool("p", ipaddress.IPv4Network("10.0.0.0/24"))
    b1 = ipam.Block.new(ipaddress.IPv4Network("10.0.0.0/26"), "n1")
    b1, _ = b1.auto_assign(2, "net.a", node="n1")  # 10.0.0.0 (endpoint), 10.0.0.1 (leak)
    stray = ipam.Block.new(ipaddress.IPv4Network("10.9.0.0/26"), "n1")
    stray = stray.assign(ipaddress.IPv4Address("10.9.0.5"), "net.b")
    endpoints = {"default/e1": ["10.0.0.0"], "default/e2": ["10.0.0.9"], "default/e3": ["10.9.0.5"]}
    return ci.Snapshot([pool], [b1, stray], endpoints, {})


def test_check_finds_each_kind_of_problem() -> None:
    report = ci.check_snapshot(_snapshot())
    assert [a["ip"] for a in report.leaked_addresses] == ["10.0.0.1"]
    assert report.leaked_addresses[0]["handle"] == "net.a"
    assert report.endpoints_without_allocation == [{"endpoint": "default/e2", "ip": "10.0.0.9"}]
    assert [a["ip"] for a in report.addresses_outside_pools] == ["10.9.0.5"]
    assert report.problems == 3
    assert set(report.to_json()) == {
        "version",
        "leakedAddresses",
        "endpointsWithoutAllocation",
        "addressesOutsidePools",
        "staleEndpoints",
        "nodesNotChecked",
        "unprogrammedEndpoints",
    }


def test_endpoints_an_agent_cannot_program_are_problems() -> None:
    snap = _snapshot()
    snap.agent_errors = [
        {"status": "error", "name": "n1-cni-X-eth0", "namespace": "default", "node": "n1",
         "reason": "metadata.name: illegal name"},
    ]  # fmt: skip
    report = ci.check_snapshot(snap)
    assert report.unprogrammed_endpoints == [
        {"endpoint": "default/n1-cni-X-eth0", "node": "n1", "reason": "metadata.name: illegal name"}
    ]
    assert report.problems == 4
    text = ci.render_check(snap, report)
    assert "Found 1 endpoints their node's agent cannot program" in text
    assert "default/n1-cni-X-eth0 on n1: metadata.name: illegal name" in text


def test_show_counts_pools_and_blocks() -> None:
    text = ci.render_show(_snapshot())
    assert "| IP Pool" in text and "10.0.0.0/24" in text and "2 (0%)" in text
    assert "| Block " in text and "10.0.0.0/26" in text and "62 (96%)" in text
    assert "Block (no pool)" in text and "10.9.0.0/26" in text


def test_show_one_address() -> None:
    snap = _snapshot()
    assert "IP 10.0.0.1 is in use" in ci.render_ip(snap, "10.0.0.1")
    assert "(none: leaked?)" in ci.render_ip(snap, "10.0.0.1")
    assert "default/e1" in ci.render_ip(snap, "10.0.0.0")
    assert "is not assigned" in ci.render_ip(snap, "10.0.0.50")
    assert "outside every IP pool" in ci.render_ip(snap, "172.16.0.1")


def test_endpoints_without_pod_or_interface_and_unreachable_nodes():
    snap = _snapshot()
    snap.endpoints = {"default/a": ["10.0.0.1"], "default/b": ["10.0.0.2"], "default/c": []}
    snap.workloads = {
        "default/a": {
            "node": "n1",
            "containerID": "p1",
            "interface": "eth0",
            "orchestrator": "cni",
        },
        "default/b": {
            "node": "n1",
            "containerID": "p2",
            "interface": "eth1",
            "orchestrator": "cni",
        },
        "default/c": {
            "node": "n2",
            "containerID": "p3",
            "interface": "eth0",
            "orchestrator": "cni",
        },
        "default/k": {
            "node": "n1",
            "containerID": "zz",
            "interface": "eth0",
            "orchestrator": "k8s",
        },
    }
    pods = [
        {"uuid": "p2", "state": "running", "networks": [{"ifName": "eth0"}]},
        {"uuid": "p9", "state": "prepared", "networks": []},
    ]
    stale, unchecked = ci.check_workloads(snap, {"n1": pods, "n2": "node API not reachable: x"})
    assert [(e["endpoint"], e["reason"]) for e in stale] == [
        ("default/a", "pod gone"),
        ("default/b", "interface gone"),
    ]
    assert unchecked == [{"node": "n2", "reason": "node API not reachable: x", "endpoints": 1}]
    report = ci.check_snapshot(snap)
    report.stale_endpoints, report.nodes_not_checked = stale, unchecked
    text = ci.render_check(snap, report)
    assert "Check incomplete (1 nodes not checked)" in text and "n2: 1 endpoints" in text
    assert report.to_json()["staleEndpoints"][0]["endpoint"] == "default/a"


def test_a_nodes_tunnel_address_is_in_use_not_leaked() -> None:
    """tunl0's address has no endpoint; it is held by `ipip-tunnel-addr-<node>` and named on
    the Node. The same handle with no Node recording the address is a leak."""
    pool = ipam.Pool("p", ipaddress.IPv4Network("10.0.0.0/24"))
    block = ipam.Block.new(ipaddress.IPv4Network("10.0.0.0/26"), "n1")
    block = block.assign(ipaddress.IPv4Address("10.0.0.1"), "ipip-tunnel-addr-n1")
    block = block.assign(ipaddress.IPv4Address("10.0.0.2"), "ipip-tunnel-addr-n2")
    snap = ci.Snapshot([pool], [block], {}, {}, tunnel_addresses={"10.0.0.1": "n1"})
    report = ci.check_snapshot(snap)
    assert [a["ip"] for a in report.leaked_addresses] == ["10.0.0.2"]
    assert "endpoint: tunl0 of node n1" in ci.render_ip(snap, "10.0.0.1")
