"""plugin/netlink.py's encoding, checked against the kernel's layouts (no sockets)."""

from __future__ import annotations

import ipaddress
import struct

from plugin import netlink, veth


def test_attr_padding_and_round_trip() -> None:
    raw = netlink.attr_str(netlink.IFLA_IFNAME, "eth0") + netlink.attr_u32(netlink.IFLA_MTU, 1400)
    assert len(raw) == 12 + 8  # "eth0\0" -> 4+5 bytes, padded to 12
    attrs = netlink.parse_attrs(raw)
    assert attrs[netlink.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", attrs[netlink.IFLA_MTU]) == (1400,)


def test_nested_flag_is_masked_when_parsing() -> None:
    inner = netlink.attr(netlink.VETH_INFO_PEER, b"x" * 4)
    raw = netlink.attr(netlink.IFLA_LINKINFO | netlink.NLA_F_NESTED, inner)
    assert netlink.parse_attrs(raw)[netlink.IFLA_LINKINFO] == inner


def test_mac_conversions() -> None:
    assert netlink.mac_bytes("ee:ee:ee:ee:ee:ee") == b"\xee" * 6
    assert netlink.mac_str(b"\x02\x00\x00\x00\x00\x01") == "02:00:00:00:00:01"


def test_route_parse() -> None:
    body = netlink._RTMSG.pack(2, 32, 0, 0, 254, 3, 253, 1, 0)
    body += netlink.attr(netlink.RTA_DST, ipaddress.IPv4Address("10.0.0.5").packed)
    body += netlink.attr_u32(netlink.RTA_OIF, 7)
    route = netlink._parse_route(body)
    assert route.dst == ipaddress.IPv4Network("10.0.0.5/32")
    assert route.oif == 7 and route.scope == netlink.RT_SCOPE_LINK and route.gateway is None


def test_error_text_includes_kernel_message() -> None:
    request = netlink._NLMSGHDR.pack(16, 24, 5, 1, 0)
    body = struct.pack("=i", -100) + request
    body += netlink.attr_str(netlink.NLMSGERR_ATTR_MSG, "Nexthop device is not up")
    text = netlink._error_text(100, netlink.NLM_F_ACK_TLVS | netlink.NLM_F_CAPPED, body)
    assert "Nexthop device is not up" in text


def test_host_ifname_and_pod_mac() -> None:
    assert veth.host_ifname("0123456789abcdef") == "cali0123456789a"
    assert len(veth.host_ifname("0123456789abcdef")) == 15
    mac = netlink.mac_bytes(veth.random_mac())
    assert mac[0] & 0x01 == 0 and mac[0] & 0x02 == 2  # unicast, locally administered
