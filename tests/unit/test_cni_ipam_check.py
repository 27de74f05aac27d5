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
    }


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
