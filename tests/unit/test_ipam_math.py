"""Calico's IPAM block model on plain data: keys, pools, blocks, handles, block choice."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest

from calico import ipam, keys
from calico.ipam import (
    AddressInUse,
    AddressNotInBlock,
    AffinityMismatch,
    Block,
    Handle,
    Pool,
    UnknownPool,
    choose_source,
    next_free_block,
    select_pools,
)

NET = IPv4Network("192.168.0.0/26")
H1 = "network1.c1"
H2 = "network1.c2"


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


# ---- keys ---------------------------------------------------------------------------------


def test_keys_match_calico_layout() -> None:
    assert keys.block_key(NET) == "/calico/ipam/v2/assignment/ipv4/block/192.168.0.0-26"
    assert keys.cidr_from_block_key(keys.block_key(NET)) == NET
    assert keys.affinity_key("calico-01", NET) == (
        "/calico/ipam/v2/host/calico-01/ipv4/block/192.168.0.0-26"
    )
    assert keys.parse_affinity_key(keys.affinity_key("calico-01", NET)) == ("calico-01", NET)
    assert keys.handle_key(H1) == "/calico/ipam/v2/handle/network1.c1"
    assert ipam.make_handle_id("network1", "c1") == H1
    assert json.loads(ipam.affinity_value()) == {"state": "confirmed", "deleted": False}
    with pytest.raises(ValueError):
        keys.cidr_from_block_key("/calico/resources/v3/x")
    with pytest.raises(ValueError):
        keys.parse_affinity_key("/calico/ipam/v2/host/n1/ipv6/block/fd00::-122")


# ---- pools --------------------------------------------------------------------------------


def test_pool_split_into_blocks() -> None:
    pool = Pool("p", IPv4Network("10.0.0.0/24"))
    blocks = list(pool.blocks())
    assert blocks == [IPv4Network(f"10.0.0.{i * 64}/26") for i in range(4)]
    assert pool.block_count == 4
    assert list(Pool("small", IPv4Network("10.1.0.0/30"), block_size=31).blocks()) == [
        IPv4Network("10.1.0.0/31"),
        IPv4Network("10.1.0.2/31"),
    ]


def test_pool_block_size_cannot_exceed_pool() -> None:
    with pytest.raises(ValueError):
        Pool("p", IPv4Network("10.0.0.0/28"), block_size=26)


def test_pool_from_resource() -> None:
    res = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "pool1"},
        "spec": {"cidr": "192.168.0.0/16", "blockSize": 28, "disabled": True},
    }
    assert Pool.from_resource(res) == Pool("pool1", IPv4Network("192.168.0.0/16"), 28, True)
    res["spec"] = {"cidr": "10.0.0.0/16"}
    assert Pool.from_resource(res).block_size == 26


def test_select_pools_skips_disabled_and_honours_ipv4_pools() -> None:
    a = Pool("a", IPv4Network("10.2.0.0/16"))
    b = Pool("b", IPv4Network("10.1.0.0/16"))
    off = Pool("off", IPv4Network("10.3.0.0/16"), disabled=True)
    assert select_pools([a, b, off]) == [b, a]  # deterministic order
    assert select_pools([a, b, off], ["a"]) == [a]
    assert select_pools([a, b, off], ["10.1.0.0/16", "a"]) == [b, a]
    with pytest.raises(UnknownPool):
        select_pools([a, b, off], ["off"])
    with pytest.raises(UnknownPool):
        select_pools([a, b], ["nope"])


def test_pool_for_ip() -> None:
    a = Pool("a", IPv4Network("10.0.0.0/16"))
    inner = Pool("inner", IPv4Network("10.0.5.0/24"))
    assert ipam.pool_for([a, inner], ip("10.0.5.9")) == inner
    assert ipam.pool_for([a, inner], ip("10.0.6.9")) == a
    assert ipam.pool_for([a], ip("11.0.0.1")) is None
    assert ipam.block_cidr_for(a, ip("10.0.0.77")) == IPv4Network("10.0.0.64/26")


def test_next_free_block() -> None:
    pool = Pool("p", IPv4Network("10.0.0.0/25"))
    first, second = pool.blocks()
    assert next_free_block([pool], []) == first
    assert next_free_block([pool], [first]) == second
    assert next_free_block([pool], [first, second]) is None


# ---- blocks -------------------------------------------------------------------------------


def test_new_block_json_as_calico_stores_it() -> None:
    data = Block.new(NET, "calico-01").to_json()
    assert data["cidr"] == "192.168.0.0/26"
    assert data["affinity"] == "host:calico-01"
    assert data["allocations"] == [None] * 64
    assert data["unallocated"] == list(range(64))
    assert data["attributes"] == []
    assert data["strictAffinity"] is False
    assert data["deleted"] is False
    assert data["sequenceNumber"] == 0
    assert Block.from_json(json.dumps(data)) == Block.new(NET, "calico-01")


def test_auto_assign_and_counts() -> None:
    b0 = Block.new(NET, "n1")
    b1, got = b0.auto_assign(2, H1, {"node": "n1"}, node="n1")
    assert got == [ip("192.168.0.0"), ip("192.168.0.1")]
    assert (b1.used_count, b1.free_count) == (2, 62)
    assert (b0.used_count, b0.free_count) == (0, 64)  # input untouched
    data = b1.to_json()
    assert data["allocations"][:3] == [0, 0, None]
    assert data["attributes"] == [{"handle_id": H1, "secondary": {"node": "n1"}}]
    assert data["unallocated"][0] == 2
    assert data["sequenceNumberForAllocation"] == {"0": 0, "1": 0}
    assert b1.sequence_number == 1

    b2, got2 = b1.auto_assign(1, H2)
    assert got2 == [ip("192.168.0.2")]
    assert len(b2.attributes) == 2
    assert b2.handle_of(ip("192.168.0.2")) == H2
    assert b2.allocated() == {
        ip("192.168.0.0"): H1,
        ip("192.168.0.1"): H1,
        ip("192.168.0.2"): H2,
    }


def test_auto_assign_reuses_attribute_of_same_owner() -> None:
    b, _ = Block.new(NET).auto_assign(1, H1)
    b, _ = b.auto_assign(1, H1)
    assert len(b.attributes) == 1 and b.ips_by_handle(H1) == [ip("192.168.0.0"), ip("192.168.0.1")]


def test_auto_assign_on_full_block_returns_what_there_is() -> None:
    small = Block.new(IPv4Network("10.0.0.0/30"))
    small, got = small.auto_assign(3, H1)
    assert len(got) == 3
    small, got = small.auto_assign(5, H2)
    assert got == [ip("10.0.0.3")]
    after, got = small.auto_assign(1, H2)
    assert got == [] and after is small


def test_assign_specific() -> None:
    b = Block.new(NET, "n1").assign(ip("192.168.0.10"), H1)
    assert b.handle_of(ip("192.168.0.10")) == H1
    assert 10 not in b.unallocated and b.free_count == 63
    with pytest.raises(AddressInUse, match=H1):
        b.assign(ip("192.168.0.10"), H2)
    with pytest.raises(AddressNotInBlock):
        b.assign(ip("192.168.1.10"), H2)
    # auto assignment then skips it
    b, got = b.auto_assign(11, H2)
    assert ip("192.168.0.10") not in got and len(got) == 11


def test_strict_affinity_refuses_other_nodes() -> None:
    b = Block.new(NET, "n1", strict=True)
    with pytest.raises(AffinityMismatch):
        b.auto_assign(1, H1, node="n2")
    with pytest.raises(AffinityMismatch):
        b.assign(ip("192.168.0.3"), H1, node="n2")
    b.auto_assign(1, H1, node="n1")
    # non-strict blocks lend to anyone (borrowing)
    Block.new(NET, "n1").auto_assign(1, H1, node="n2")


def test_release_and_attribute_compaction() -> None:
    b, _ = Block.new(NET).auto_assign(2, H1)
    b, _ = b.auto_assign(1, H2)
    b, per_handle, missing = b.release([ip("192.168.0.0"), ip("192.168.0.1"), ip("192.168.0.9")])
    assert per_handle == {H1: 2}
    assert missing == [ip("192.168.0.9")]
    # H1's attribute is gone and H2's renumbered to index 0
    assert [a.handle_id for a in b.attributes] == [H2]
    assert b.to_json()["allocations"][:3] == [None, None, 0]
    # freed ordinals go to the back: not reused at once
    assert list(b.unallocated[-2:]) == [0, 1]
    assert "0" not in b.seq_for_allocation and "2" in b.seq_for_allocation


def test_release_by_handle_and_idempotence() -> None:
    b, _ = Block.new(NET).auto_assign(3, H1)
    b, _ = b.auto_assign(1, H2)
    b2, freed = b.release_by_handle(H1)
    assert freed == [ip("192.168.0.0"), ip("192.168.0.1"), ip("192.168.0.2")]
    assert b2.used_count == 1 and b2.ips_by_handle(H1) == []
    b3, again = b2.release_by_handle(H1)
    assert again == [] and b3 is b2
    b4, _ = b3.release_by_handle(H2)
    assert b4.is_empty and b4.free_count == 64 and b4.attributes == ()


def test_json_round_trip_keeps_unknown_fields() -> None:
    b, _ = Block.new(NET, "n1").auto_assign(2, H1, {"pod": "p"})
    data = b.to_json()
    data["affinityClaimTime"] = "2024-01-01T00:00:00Z"
    back = Block.from_json(json.dumps(data).encode())
    assert back.to_json() == data
    assert back.node == "n1"


def test_with_affinity() -> None:
    b = Block.new(NET, "n1")
    assert b.with_affinity(None).node is None
    assert b.with_affinity("n2").affinity == "host:n2"


# ---- handles ------------------------------------------------------------------------------


def test_handle_counts_and_json() -> None:
    h = Handle(H1).increment(NET, 2).increment("10.0.0.0/26")
    assert h.to_json() == {
        "handleID": H1,
        "block": {"192.168.0.0/26": 2, "10.0.0.0/26": 1},
        "deleted": False,
    }
    assert h.total == 3
    assert Handle.from_json(h.dumps()) == h
    h = h.decrement(NET).decrement("10.0.0.0/26", 5)
    assert h.block == {"192.168.0.0/26": 1}
    assert not h.is_empty
    assert h.decrement(NET).is_empty
    assert h.blocks() == [NET]


# ---- choosing a source --------------------------------------------------------------------


def test_choose_source_affine_then_claim_then_borrow() -> None:
    pool = Pool("p", IPv4Network("10.0.0.0/30"), block_size=31)  # two blocks of 2
    b1, b2 = pool.blocks()
    assert choose_source("n1", [pool], []) == ipam.Source("claim", b1)

    mine = Block.new(b1, "n1")
    assert choose_source("n1", [pool], [mine]) == ipam.Source("affine", b1)

    mine, _ = mine.auto_assign(2, H1)  # full
    assert choose_source("n1", [pool], [mine]) == ipam.Source("claim", b2)

    theirs = Block.new(b2, "n2")
    assert choose_source("n1", [pool], [mine, theirs]) == ipam.Source("borrow", b2)

    strict = Block.new(b2, "n2", strict=True)
    assert choose_source("n1", [pool], [mine, strict]) is None

    theirs_full, _ = theirs.auto_assign(2, H2)
    assert choose_source("n1", [pool], [mine, theirs_full]) is None


def test_choose_source_ignores_blocks_of_other_pools() -> None:
    p1 = Pool("p1", IPv4Network("10.0.0.0/26"))
    other = Block.new(IPv4Network("10.9.0.0/26"), "n1")
    assert choose_source("n1", [p1], [other]) == ipam.Source("claim", IPv4Network("10.0.0.0/26"))
