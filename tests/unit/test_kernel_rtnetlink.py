"""kernel/rtnetlink.py's link and route encoding, checked against the kernel's layouts (no
sockets)."""

from __future__ import annotations

import ipaddress

from kernel import rtnetlink


def test_mac_conversions() -> None:
    assert rtnetlink.mac_bytes("ee:ee:ee:ee:ee:ee") == b"\xee" * 6
    assert rtnetlink.mac_str(b"\x02\x00\x00\x00\x00\x01") == "02:00:00:00:00:01"


def test_route_parse() -> None:
    body = rtnetlink._RTMSG.pack(2, 32, 0, 0, 254, 3, 253, 1, 0)
    body += rtnetlink.attr(rtnetlink.RTA_DST, ipaddress.IPv4Address("10.0.0.5").packed)
    body += rtnetlink.attr_u32(rtnetlink.RTA_OIF, 7)
    route = rtnetlink._parse_route(body)
    assert route.dst == ipaddress.IPv4Network("10.0.0.5/32")
    assert route.oif == 7 and route.scope == rtnetlink.RT_SCOPE_LINK and route.gateway is None
