"""IPIP: the route calculation (Always / CrossSubnet / Never, bird vs direct), the host
guard, tunl0's plan, and the relay's packet handling (header strip/build, route cache)."""

from __future__ import annotations

import struct

from agent.calc.calculator import calculate
from agent.calc.model import Inputs, Route
from agent.calc.routes import block_routes, ipip_pools
from agent.calc.static import ALL_HOSTS_IPSET
from agent.dataplane import tunnel
from agent.dataplane.routes import parse_routes
from agent.tunnel import packet
from agent.tunnel.relay import (
    NO_GATEWAY,
    NO_ROUTE,
    NOT_IPIP,
    NOT_IPV4,
    NOT_VIA_TUNNEL,
    Relay,
    RouteCache,
    route_answer,
)
from calico.resources import Resource

API = "projectcalico.org/v3"


def node(name: str, addr: str, tunnel_addr: str | None = None):
    bgp = {"ipv4Address": addr}
    if tunnel_addr:
        bgp["ipv4IPIPTunnelAddr"] = tunnel_addr
    return Resource.from_dict(
        {"apiVersion": API, "kind": "Node", "metadata": {"name": name}, "spec": {"bgp": bgp}}
    )


def pool(mode: str | None, cidr: str = "10.66.0.0/16", disabled: bool = False):
    spec = {"cidr": cidr, "disabled": disabled}
    if mode:
        spec["ipipMode"] = mode
    return Resource.from_dict(
        {
            "apiVersion": API,
            "kind": "IPPool",
            "metadata": {"name": f"p-{mode}".lower()},
            "spec": spec,
        }
    )


def inputs(mode: str | None, backend: str = "direct", **kw) -> Inputs:
    nodes = {
        "a": node("a", "192.168.1.10/24", "10.66.0.1"),
        "b": node("b", "192.168.1.11/24"),  # same subnet as a
        "c": node("c", "192.168.2.10/24"),  # another subnet
    }
    blocks = {"10.66.0.0/26": "a", "10.66.0.64/26": "b", "10.66.0.128/26": "c"}
    return Inputs(
        "a", nodes=nodes, blocks=blocks, pools=[pool(mode)] if mode != "none" else [],
        backend=backend, **kw,
    )  # fmt: skip


TUN_B = Route("10.66.0.64/26", via="192.168.1.11", dev="tunl0", onlink=True)
TUN_C = Route("10.66.0.128/26", via="192.168.2.10", dev="tunl0", onlink=True)
PLAIN_B = Route("10.66.0.64/26", via="192.168.1.11")
PLAIN_C = Route("10.66.0.128/26", via="192.168.2.10")
OWN = Route("10.66.0.0/26", kind="blackhole")


def test_always_tunnels_every_remote_block():
    r = block_routes(inputs("Always"))
    assert r == {OWN.dst: OWN, TUN_B.dst: TUN_B, TUN_C.dst: TUN_C}
    assert TUN_B.batch_args() == "10.66.0.64/26 via 192.168.1.11 dev tunl0 onlink"


def test_cross_subnet_tunnels_only_outside_this_nodes_subnet():
    r = block_routes(inputs("CrossSubnet"))
    assert r[PLAIN_B.dst] == PLAIN_B and r[TUN_C.dst] == TUN_C


def test_never_and_no_pool_keep_plain_routes():
    for mode in ("Never", None, "none"):
        r = block_routes(inputs(mode))
        assert r == {OWN.dst: OWN, PLAIN_B.dst: PLAIN_B, PLAIN_C.dst: PLAIN_C}, mode


def test_bird_backend_writes_only_own_blackholes():
    for mode in ("Always", "CrossSubnet", "Never"):
        assert block_routes(inputs(mode, backend="bird")) == {OWN.dst: OWN}


def test_unknown_own_subnet_counts_as_outside():
    i = inputs("CrossSubnet")
    i.nodes = {**i.nodes, "a": Resource.from_dict(
        {"apiVersion": API, "kind": "Node", "metadata": {"name": "a"}, "spec": {}})}  # fmt: skip
    assert block_routes(i)[TUN_B.dst] == TUN_B


def test_borrowed_address_follows_its_pool():
    from tests.unit.test_agent_calc import wep

    i = inputs("CrossSubnet")
    i.endpoints = [wep("c", "cid1", ["10.66.0.70"], ["n"]), wep("b", "cid2", ["10.66.0.10"], ["n"])]
    r = block_routes(i)
    assert r["10.66.0.70/32"] == Route(
        "10.66.0.70/32", via="192.168.2.10", dev="tunl0", onlink=True
    )
    assert r["10.66.0.10/32"] == Route("10.66.0.10/32", via="192.168.1.11")


def test_disabled_pool_asks_for_no_tunnel_address():
    assert ipip_pools([pool("Always", disabled=True)]) == []
    assert [p.metadata.name for p in ipip_pools([pool("Always"), pool("Never")])] == ["p-always"]


def test_calculation_with_ipip_guards_input_and_sets_tunnel_address():
    dp = calculate(inputs("Always"))
    assert dp.ipip and dp.tunnel_address == "10.66.0.1"
    hosts = dp.ipsets[ALL_HOSTS_IPSET]
    assert hosts.members == {"192.168.1.10", "192.168.1.11", "192.168.2.10"}
    guard = dp.chains["cali-INPUT"].rules[0]
    assert guard.match == ("-p", "4", "-m", "set", "!", "--match-set", ALL_HOSTS_IPSET, "src")
    assert guard.target == ("-j", "DROP")


def test_calculation_without_ipip_is_unchanged():
    with_none, never = calculate(inputs("none")), calculate(inputs("Never"))
    for dp in (with_none, never):
        assert not dp.ipip and dp.tunnel_address is None and ALL_HOSTS_IPSET not in dp.ipsets
        assert len(dp.chains["cali-INPUT"].rules) == 1
    assert with_none.chains["cali-INPUT"] == calculate(Inputs("a")).chains["cali-INPUT"]


def test_kernel_onlink_route_reads_back_equal():
    data = [{"dst": "10.66.0.64/26", "gateway": "192.168.1.11", "dev": "tunl0",
             "protocol": "80", "flags": ["onlink"]},
            {"dst": "10.66.0.128/26", "gateway": "192.168.2.10", "dev": "eth0", "protocol": "80",
             "flags": []}]  # fmt: skip
    ours = parse_routes(data).ours
    assert ours["10.66.0.64/26"] == TUN_B and ours["10.66.0.128/26"] == PLAIN_C


def test_tunnel_plan():
    assert tunnel.plan(True, "10.66.0.1", 1480, True, {"10.66.0.1/32"}) == []
    assert tunnel.plan(True, "10.66.0.1", 1500, False, {"10.66.9.9/32"}) == [
        "link set dev tunl0 mtu 1480",
        "address del 10.66.9.9/32 dev tunl0",
        "address add 10.66.0.1/32 dev tunl0",
        "link set dev tunl0 up",
    ]
    assert tunnel.plan(True, None, 1480, True, set()) == []
    assert tunnel.plan(False, None, 1480, True, {"10.66.0.1/32"}) == [
        "address del 10.66.0.1/32 dev tunl0"
    ]


# ---------------------------------------------------------------- the relay


def test_encapsulate_then_strip_gives_back_the_inner_packet():
    inner = packet.icmp_echo("10.66.0.2", "10.66.0.66", payload=b"x" * 10)
    outer = packet.encapsulate(inner, "192.168.1.10", "192.168.2.10")
    assert len(outer) == len(inner) + packet.IPIP_OVERHEAD
    assert outer[9] == packet.IPPROTO_IPIP and packet.checksum(outer[:20]) == 0
    assert struct.unpack_from("!H", outer, 2)[0] == len(outer)
    assert packet.strip_outer(outer) == inner
    assert packet.ipv4_dst(inner) == bytes([10, 66, 0, 66])


def test_strip_refuses_what_is_not_ipip():
    inner = packet.icmp_echo("10.66.0.2", "10.66.0.66")
    assert packet.strip_outer(inner) is None  # protocol 1
    outer = packet.encapsulate(inner, "1.1.1.1", "2.2.2.2")
    assert packet.strip_outer(outer[:30]) is None  # truncated
    assert packet.strip_outer(b"\x60" + outer[1:]) is None  # not IPv4
    assert packet.ipv4_dst(b"\x60" + bytes(39)) is None


def test_strip_honours_options_and_padding():
    inner = packet.icmp_echo("10.66.0.2", "10.66.0.66")
    outer = bytearray(packet.encapsulate(inner, "1.1.1.1", "2.2.2.2"))
    with_opts = bytes([0x46]) + bytes(outer[1:20]) + b"\x01\x01\x01\x00" + inner
    with_opts = with_opts[:2] + struct.pack("!H", len(with_opts)) + with_opts[4:]
    assert packet.strip_outer(with_opts + b"\0\0") == inner  # trailing bytes ignored


def test_route_answer():
    assert route_answer(None, None, 7) == (None, NO_ROUTE)
    assert route_answer(2, "192.168.1.11", 7) == (None, NOT_VIA_TUNNEL)
    assert route_answer(7, None, 7) == (None, NO_GATEWAY)
    assert route_answer(7, "192.168.1.11", 7) == ("192.168.1.11", None)


def test_route_cache_looks_up_once_per_destination_until_flushed():
    asked = []

    def lookup(dst: bytes):
        asked.append(dst)
        return ("192.168.1.11", None) if dst[3] == 66 else (None, NO_ROUTE)

    cache = RouteCache(lookup, max_entries=3)
    d1, d2 = bytes([10, 66, 0, 66]), bytes([10, 66, 0, 9])
    assert cache.get(d1) == ("192.168.1.11", None)
    assert cache.get(d1) == ("192.168.1.11", None)
    assert cache.get(d2) == (None, NO_ROUTE)
    assert cache.get(d2) == (None, NO_ROUTE)  # negative answers are cached too
    assert asked == [d1, d2]
    cache.flush()
    cache.get(d1)
    assert asked == [d1, d2, d1] and cache.flushes == 1
    for i in range(5):  # never more than max_entries
        cache.get(bytes([10, 0, 0, i]))
    assert len(cache.entries) <= 3


def test_relay_counts_and_drops_by_reason():
    routes = {bytes([10, 66, 0, 66]): ("192.168.2.10", None)}
    relay = Relay(RouteCache(lambda d: routes.get(d, (None, NOT_VIA_TUNNEL))))
    good = packet.icmp_echo("10.66.0.2", "10.66.0.66")
    assert relay.outbound(good) == ("192.168.2.10", 0)
    relay.sent(good)
    assert relay.outbound(packet.icmp_echo("10.66.0.2", "8.8.8.8")) is None
    assert relay.outbound(b"\x60" + bytes(47)) is None
    assert relay.inbound(packet.encapsulate(good, "192.168.2.10", "192.168.1.10")) == good
    assert relay.inbound(good) is None
    c = relay.counters
    assert (c.tun_rx_packets, c.encap_packets, c.encap_bytes) == (3, 1, len(good))
    assert c.wire_rx_packets == 2
    assert c.drops == {NOT_VIA_TUNNEL: 1, NOT_IPV4: 1, NOT_IPIP: 1}
    assert c.to_dict()["drops"] == {NOT_IPIP: 1, NOT_IPV4: 1, NOT_VIA_TUNNEL: 1}
