"""Allowed flows: conntrack events from ctnetlink, parsed without any library.

A connection the policy lets through is confirmed by conntrack, which announces it on the
NFNLGRP_CONNTRACK_NEW multicast group of the network namespace it lives in; a denied SYN is
dropped before confirmation and never appears here (it is in the NFLOG stream instead).

Pure parsing (:func:`parse_conntrack_messages`, tested on captured bytes) is separate from
:class:`ConntrackEventSocket`, which subscribes in the *current* network namespace.
Note: a namespace only tracks connections once something there uses conntrack (any
``-m conntrack``/``-m state`` rule, NAT, ...); the agent's own rules do.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

from agent.flows.nflog import NetfilterReader, open_netfilter_socket
from kernel.netlink import NLM_F_CREATE, NLM_F_EXCL, iter_nlmsgs, nfgen_header, parse_attrs

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_DELETE = 2

NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_UPDATE = 2
NFNLGRP_CONNTRACK_DESTROY = 3

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_TIMEOUT = 7
CTA_MARK = 8
CTA_ID = 12
CTA_ZONE = 18
CTA_TIMESTAMP = 20

CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_PROTO_ICMP_ID = 4
CTA_PROTO_ICMP_TYPE = 5
CTA_PROTO_ICMP_CODE = 6
CTA_PROTO_ICMPV6_ID = 7
CTA_PROTO_ICMPV6_TYPE = 8
CTA_PROTO_ICMPV6_CODE = 9
CTA_TIMESTAMP_START = 1

IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2
IPS_CONFIRMED = 1 << 3


@dataclass(slots=True, frozen=True)
class Tuple:
    """One direction of a connection."""

    protocol: int
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None


@dataclass(slots=True)
class ConntrackEvent:
    kind: str  # "new", "update" or "destroy"
    family: int
    orig: Tuple
    reply: Tuple | None
    status: int | None
    id: int | None
    mark: int | None
    zone: int | None
    start: float | None  # the kernel's start stamp, only with nf_conntrack_timestamp=1

    @property
    def nat(self) -> bool:
        """Whether the reply is not the mirror of the original (NAT in between)."""
        r = self.reply
        return r is not None and (r.src != self.orig.dst or r.dst != self.orig.src)


def _be(value: bytes | None, fmt: str) -> int | None:
    if value is None or len(value) < struct.calcsize(fmt):
        return None
    return struct.unpack_from(fmt, value)[0]


def parse_tuple(raw: bytes) -> Tuple | None:
    """A CTA_TUPLE_ORIG / CTA_TUPLE_REPLY nest."""
    nest = parse_attrs(raw)
    ip = parse_attrs(nest.get(CTA_TUPLE_IP, b""))
    proto = parse_attrs(nest.get(CTA_TUPLE_PROTO, b""))
    if CTA_IP_V4_SRC in ip and CTA_IP_V4_DST in ip:
        src = socket.inet_ntop(socket.AF_INET, ip[CTA_IP_V4_SRC][:4])
        dst = socket.inet_ntop(socket.AF_INET, ip[CTA_IP_V4_DST][:4])
    elif CTA_IP_V6_SRC in ip and CTA_IP_V6_DST in ip:
        src = socket.inet_ntop(socket.AF_INET6, ip[CTA_IP_V6_SRC][:16])
        dst = socket.inet_ntop(socket.AF_INET6, ip[CTA_IP_V6_DST][:16])
    else:
        return None
    number = _be(proto.get(CTA_PROTO_NUM), "B")
    if number is None:
        return None
    if number in (1, 58):
        six = number == 58
        return Tuple(
            protocol=number,
            src=src,
            dst=dst,
            icmp_type=_be(proto.get(CTA_PROTO_ICMPV6_TYPE if six else CTA_PROTO_ICMP_TYPE), "B"),
            icmp_code=_be(proto.get(CTA_PROTO_ICMPV6_CODE if six else CTA_PROTO_ICMP_CODE), "B"),
            icmp_id=_be(proto.get(CTA_PROTO_ICMPV6_ID if six else CTA_PROTO_ICMP_ID), "!H"),
        )
    return Tuple(
        protocol=number,
        src=src,
        dst=dst,
        sport=_be(proto.get(CTA_PROTO_SRC_PORT), "!H"),
        dport=_be(proto.get(CTA_PROTO_DST_PORT), "!H"),
    )


def parse_conntrack_event(
    mtype: int, flags: int, payload: bytes, reply: bool = True
) -> ConntrackEvent | None:
    """One ctnetlink message (payload after the nlmsghdr); None when it is not a conntrack.
    `reply=False` skips the reply tuple (the collector only needs the original one)."""
    if mtype >> 8 != NFNL_SUBSYS_CTNETLINK or len(payload) < 4:
        return None
    msg = mtype & 0xFF
    if msg == IPCTNL_MSG_CT_NEW:
        kind = "new" if flags & (NLM_F_CREATE | NLM_F_EXCL) else "update"
    elif msg == IPCTNL_MSG_CT_DELETE:
        kind = "destroy"
    else:
        return None
    family, _res = nfgen_header(payload)
    attrs = parse_attrs(payload, 4)
    orig = parse_tuple(attrs.get(CTA_TUPLE_ORIG, b""))
    if orig is None:
        return None
    reply_raw = attrs.get(CTA_TUPLE_REPLY)
    start = None
    if CTA_TIMESTAMP in attrs:
        ns = _be(parse_attrs(attrs[CTA_TIMESTAMP]).get(CTA_TIMESTAMP_START), "!Q")
        start = None if ns is None else ns / 1e9
    return ConntrackEvent(
        kind=kind,
        family=family,
        orig=orig,
        reply=parse_tuple(reply_raw) if reply and reply_raw is not None else None,
        status=_be(attrs.get(CTA_STATUS), "!I"),
        id=_be(attrs.get(CTA_ID), "!I"),
        mark=_be(attrs.get(CTA_MARK), "!I"),
        zone=_be(attrs.get(CTA_ZONE), "!H"),
        start=start,
    )


def parse_conntrack_messages(buf: bytes, reply: bool = True) -> list[ConntrackEvent]:
    """Every conntrack event in one datagram."""
    out = []
    for mtype, flags, _seq, payload in iter_nlmsgs(buf):
        event = parse_conntrack_event(mtype, flags, payload, reply)
        if event is not None:
            out.append(event)
    return out


class ConntrackEventSocket(NetfilterReader):
    """Subscribed to conntrack events (NEW by default) in the current network namespace.

    Overruns (ENOBUFS) are counted in `lost_overruns`: the kernel dropped events for this
    socket, and the collector's stats say so.
    """

    def __init__(
        self, groups: tuple[int, ...] = (NFNLGRP_CONNTRACK_NEW,), rcvbuf: int = 32 << 20
    ) -> None:
        super().__init__(open_netfilter_socket(rcvbuf, groups))

    def recv(self) -> tuple[float, list[ConntrackEvent]]:
        data = self.recv_raw()
        return time.time(), parse_conntrack_messages(data) if data else []


__all__ = [
    "ConntrackEvent",
    "ConntrackEventSocket",
    "Tuple",
    "parse_conntrack_event",
    "parse_conntrack_messages",
    "parse_tuple",
]
