"""kernel/rtnetlink.py's link and route encoding, checked against the kernel's layouts (no
sockets)."""

from __future__ import annotations

import ipaddress
import struct

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


def test_rule_encoding_round_trips() -> None:
    src = ipaddress.IPv4Network("10.1.2.3/32")
    body = rtnetlink._rule_payload(101, 100, src, None)
    family, dst_len, src_len, _tos, table, _r1, _r2, action, _fl = rtnetlink._RTMSG.unpack_from(
        body
    )
    assert (family, dst_len, src_len, table, action) == (2, 0, 32, 101, rtnetlink.FR_ACT_TO_TBL)
    rule = rtnetlink._parse_rule(body)
    assert (rule.table, rule.priority, rule.src, rule.dst) == (101, 100, src, None)


def test_rule_and_route_with_a_32_bit_table() -> None:
    rule = rtnetlink._parse_rule(rtnetlink._rule_payload(70001, 5, None, None))
    assert rule.table == 70001 and rule.src is None
    assert rtnetlink._table_fields(101)[0] == 101
    rtm_table, raw = rtnetlink._table_fields(70001)
    assert rtm_table == rtnetlink.RT_TABLE_COMPAT
    assert rtnetlink.parse_attrs(raw)[rtnetlink.RTA_TABLE] == struct.pack("=I", 70001)
