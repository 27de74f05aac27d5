"""NFLOG and ctnetlink parsing on bytes captured from a real kernel, and the prefix contract.

Captured once in a throw-away namespace pair: node 10.251.0.1 (veth ifindex 2), pod
10.251.0.2; INPUT rule `-p tcp --dport 81 -m conntrack --ctstate NEW -j NFLOG --nflog-group 1
--nflog-prefix "D|I|pol|default/deny-81|3"`, then a SYN to :81, a TCP connect to :80 and a
UDP datagram to :5353 from the pod.
"""

from __future__ import annotations

import pytest

from agent.flows.conntrack import (
    IPS_CONFIRMED,
    parse_conntrack_messages,
)
from agent.flows.nflog import nflog_config_messages, parse_ip_header, parse_nflog_messages
from agent.flows.prefix import PREFIX_MAX, nflog_prefix, parse_prefix, prefix_name_matches
from kernel.netlink import iter_nlmsgs, parse_attrs

NFLOG_SYN_81 = bytes.fromhex(
    "cc0000000004000000000000000000000200000108000100080001001e000a00447c497c706f6c7c"
    "64656661756c742f64656e792d38317c330000000800040000000002100008000006000082e67405"
    "8e97000006000f000001000006001100000e0000120010007ad74910188282e674058e9708000000"
    "14000300000000006b09f1e800000000000363bb400009004500003c4fc640004006d4fd0afb0002"
    "0afb0001c68400513d747c0300000000a002faf016270000020405b40402080a5d967db700000000"
    "0103030a"
)
# The same, captured again once NflogSocket asked for sequence numbers (NFULNL_CFG_F_SEQ).
NFLOG_SYN_81_SEQ = bytes.fromhex(
    "d40000000004000000000000000000000200000108000100080001001e000a00447c497c706f6c7c"
    "64656661756c742f64656e792d38317c3300000008000400000000021000080000060000f604954f"
    "9f3c000006000f000001000006001100000e00001200100056c0f2f41962f604954f9f3c08000000"
    "14000300000000006b09f3a5000000000002820608000c0000000000400009004500003c63924000"
    "4006c1310afb00020afb0001c220005106cd1a4f00000000a002faf016270000020405b40402080a"
    "84385207000000000103030a"
)


def with_seq(seq: int) -> bytes:
    """NFLOG_SYN_81_SEQ with another NFULA_SEQ value."""
    attr = bytes.fromhex("08000c00")
    at = NFLOG_SYN_81_SEQ.index(attr) + 4
    return NFLOG_SYN_81_SEQ[:at] + seq.to_bytes(4, "big") + NFLOG_SYN_81_SEQ[at + 4 :]


CT_NEW_TCP_80 = bytes.fromhex(
    "c4000000000100060000000000000000020000003400018014000180080001000afb000208000200"
    "0afb00011c0002800500010006000000060002008364000006000300005000003400028014000180"
    "080001000afb0001080002000afb00021c0002800500010006000000060002000050000006000300"
    "8364000008000c00a4f6488608000300000000080800070000000078300004802c00018005000100"
    "01000000050002000a000000050003000000000006000400030000000600050000000000"
)
CT_NEW_UDP_5353 = bytes.fromhex(
    "94000000000100060000000000000000020000003400018014000180080001000afb000208000200"
    "0afb00011c00028005000100110000000600020092a500000600030014e900003400028014000180"
    "080001000afb0001080002000afb00021c00028005000100110000000600020014e9000006000300"
    "92a5000008000c008c6aba060800030000000008080007000000001e"
)


# ---------------------------------------------------------------- NFLOG


def test_nflog_packet_from_captured_bytes():
    (pkt,) = parse_nflog_messages(NFLOG_SYN_81)
    assert pkt.group == 1
    assert pkt.family == 2
    assert pkt.prefix == "D|I|pol|default/deny-81|3"
    assert pkt.hook_name == "INPUT"
    assert pkt.indev == 2
    assert pkt.outdev is None
    assert pkt.timestamp == pytest.approx(1795813864.222139)
    h = pkt.header
    assert h is not None
    assert (h.version, h.protocol_name, h.src, h.dst) == (4, "tcp", "10.251.0.2", "10.251.0.1")
    assert (h.sport, h.dport, h.length) == (50820, 81, 60)
    assert h.flag_names() == ["SYN"]
    assert pkt.payload_len == 60


def test_nflog_sequence_number():
    assert parse_nflog_messages(NFLOG_SYN_81)[0].seq is None
    (pkt,) = parse_nflog_messages(NFLOG_SYN_81_SEQ)
    assert pkt.seq == 0 and pkt.header.sport == 49696
    assert parse_nflog_messages(with_seq(77))[0].seq == 77


def test_two_messages_in_one_datagram_and_garbage_tail():
    data = NFLOG_SYN_81 + NFLOG_SYN_81 + b"\x01\x02\x03"
    assert [p.header.dport for p in parse_nflog_messages(data)] == [81, 81]


@pytest.mark.parametrize("cut", [0, 3, 16, 20, 60, 150, len(NFLOG_SYN_81) - 1])
def test_truncated_datagrams_never_raise(cut):
    parse_nflog_messages(NFLOG_SYN_81[:cut])
    parse_conntrack_messages(CT_NEW_TCP_80[:cut])


def test_non_packet_messages_are_skipped():
    # an NLMSG_ERROR ack (type 2) carries no packet
    ack = bytes.fromhex("2400000002000000010000000000000000000000") + bytes(16)
    assert parse_nflog_messages(ack) == []
    assert parse_conntrack_messages(ack) == []


def test_ip_header_udp_icmp_and_fragments():
    udp = bytes.fromhex("4500001c000040004011000001020304050607081234003500080000")
    h = parse_ip_header(udp)
    assert (h.protocol_name, h.src, h.dst, h.sport, h.dport) == (
        "udp",
        "1.2.3.4",
        "5.6.7.8",
        0x1234,
        53,
    )
    icmp = bytes.fromhex("4500001c00004000400100000a0000010a0000020800f7ff00000000")
    h = parse_ip_header(icmp)
    assert (h.protocol_name, h.icmp_type, h.icmp_code, h.sport) == ("icmp", 8, 0, None)
    frag = bytearray(udp)
    frag[6:8] = b"\x00\x10"  # fragment offset 16: no UDP header here
    assert parse_ip_header(bytes(frag)).sport is None
    assert parse_ip_header(b"") is None
    assert parse_ip_header(b"\x45\x00") is None


def test_config_messages_are_well_formed():
    msgs = nflog_config_messages(group=7, copy_range=128)
    assert len(msgs) == 3
    for raw in msgs:
        ((mtype, flags, _seq, payload),) = list(iter_nlmsgs(raw))
        assert mtype == (4 << 8) | 1  # NFNL_SUBSYS_ULOG, NFULNL_MSG_CONFIG
        assert flags & 0x1  # request
    _, _, _, payload = next(iter_nlmsgs(msgs[1]))
    assert payload[2:4] == b"\x00\x07"  # group in res_id, big endian
    assert parse_attrs(payload, 4) == {1: b"\x01"}  # NFULA_CFG_CMD = BIND


# ---------------------------------------------------------------- conntrack


def test_conntrack_new_tcp_from_captured_bytes():
    (ev,) = parse_conntrack_messages(CT_NEW_TCP_80)
    assert ev.kind == "new"
    assert ev.family == 2
    o = ev.orig
    assert (o.protocol, o.src, o.dst, o.sport, o.dport) == (
        6,
        "10.251.0.2",
        "10.251.0.1",
        33636,
        80,
    )
    r = ev.reply
    assert (r.src, r.dst, r.sport, r.dport) == ("10.251.0.1", "10.251.0.2", 80, 33636)
    assert ev.status & IPS_CONFIRMED
    assert ev.id == 2767603846
    assert not ev.nat


def test_conntrack_new_udp_from_captured_bytes():
    (ev,) = parse_conntrack_messages(CT_NEW_UDP_5353)
    assert (ev.kind, ev.orig.protocol, ev.orig.dport) == ("new", 17, 5353)


def test_conntrack_update_and_destroy_kinds():
    update = bytearray(CT_NEW_TCP_80)
    update[6:8] = b"\x00\x00"  # no NLM_F_CREATE|NLM_F_EXCL: an update
    assert parse_conntrack_messages(bytes(update))[0].kind == "update"
    destroy = bytearray(CT_NEW_TCP_80)
    destroy[4] = 2  # IPCTNL_MSG_CT_DELETE
    destroy[6:8] = b"\x00\x00"
    assert parse_conntrack_messages(bytes(destroy))[0].kind == "destroy"


# ---------------------------------------------------------------- the prefix contract


@pytest.mark.parametrize(
    "args, prefix",
    [
        (("I", "pol", "default/deny-81", 3), "D|I|pol|default/deny-81|3"),
        (("egress", "pol", "global-deny", None), "D|E|pol|global-deny|-"),
        (("ingress", "pro", "network1", 0), "D|I|pro|network1|0"),
        (("I", "def", "network1,network2", None), "D|I|def|network1,network2|-"),
    ],
)
def test_prefix_round_trip(args, prefix):
    assert nflog_prefix(*args) == prefix
    parsed = parse_prefix(prefix)
    direction, kind, name, index = args
    assert parsed["direction"] == ("ingress" if direction[0].lower() == "i" else "egress")
    assert parsed["kind"] == {"pol": "policy", "pro": "profile", "def": "default"}[kind]
    assert parsed["name"] == name
    assert parsed["rule_index"] == index
    assert parsed["truncated"] is False
    assert prefix_name_matches(parsed, name)


@pytest.mark.parametrize("name", ["n" * 200, "namespace-" + "é" * 40, "a/" + "x" * 54])
def test_long_names_are_cut_to_fit_and_still_identify_the_name(name):
    prefix = nflog_prefix("E", "pol", name, 12345)
    assert len(prefix.encode()) <= PREFIX_MAX
    prefix.encode().decode()  # never a broken UTF-8 sequence
    parsed = parse_prefix(prefix)
    assert parsed["truncated"] is True
    assert parsed["rule_index"] == 12345
    assert parsed["direction"] == "egress"
    assert name.startswith(parsed["name"])
    assert prefix_name_matches(parsed, name)
    assert not prefix_name_matches(parsed, name + "2")


def test_name_that_just_fits_is_not_cut():
    room = PREFIX_MAX - len("D|I|pro|") - len("|-")
    name = "p" * room
    prefix = nflog_prefix("I", "pro", name, None)
    assert len(prefix) == PREFIX_MAX
    assert parse_prefix(prefix)["name"] == name
    assert nflog_prefix("I", "pro", name + "q", None) != prefix


@pytest.mark.parametrize(
    "raw", ["", "hello", "A|I|pol|x|1", "D|X|pol|x|1", "D|I|zzz|x|1", "D|I|pol|x", "D|I|pol|x|y"]
)
def test_foreign_prefixes_parse_as_unknown(raw):
    assert parse_prefix(raw) == {"kind": "unknown", "raw": raw}


def test_names_with_a_bar_survive():
    assert parse_prefix(nflog_prefix("I", "pol", "a|b", 1))["name"] == "a|b"


@pytest.mark.parametrize(
    "args", [("X", "pol", "n", 1), ("I", "policy", "n", 1), ("I", "pol", "n", -1)]
)
def test_bad_prefix_arguments(args):
    with pytest.raises(ValueError):
        nflog_prefix(*args)
