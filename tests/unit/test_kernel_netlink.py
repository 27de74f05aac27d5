"""kernel/netlink.py's framing, checked against the kernel's layouts (no sockets)."""

from __future__ import annotations

import struct

from kernel import netlink, rtnetlink


def test_attr_padding_and_round_trip() -> None:
    raw = netlink.attr_str(rtnetlink.IFLA_IFNAME, "eth0") + netlink.attr_u32(
        rtnetlink.IFLA_MTU, 1400
    )
    assert len(raw) == 12 + 8  # "eth0\0" -> 4+5 bytes, padded to 12
    attrs = netlink.parse_attrs(raw)
    assert attrs[rtnetlink.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", attrs[rtnetlink.IFLA_MTU]) == (1400,)


def test_nested_flag_is_masked_when_parsing() -> None:
    inner = netlink.attr(rtnetlink.VETH_INFO_PEER, b"x" * 4)
    raw = netlink.attr(rtnetlink.IFLA_LINKINFO | netlink.NLA_F_NESTED, inner)
    assert netlink.parse_attrs(raw)[rtnetlink.IFLA_LINKINFO] == inner


def test_error_text_includes_kernel_message() -> None:
    request = netlink.NLMSGHDR.pack(16, 24, 5, 1, 0)
    body = struct.pack("=i", -100) + request
    body += netlink.attr_str(netlink.NLMSGERR_ATTR_MSG, "Nexthop device is not up")
    text = netlink.error_text(100, netlink.NLM_F_ACK_TLVS | netlink.NLM_F_CAPPED, body)
    assert "Nexthop device is not up" in text
