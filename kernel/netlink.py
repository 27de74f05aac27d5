"""Netlink without a library: message framing, attributes, errors, a request/reply client.

One framing serves every family calico-rkt speaks: NETLINK_ROUTE for the CNI plugin's
links, addresses and routes (kernel.rtnetlink), NETLINK_NETFILTER for NFLOG and conntrack
(agent.flows), which add their own nfgenmsg header (:func:`nfgen_header`,
:func:`build_nfmsg`). Encoded by hand with `struct` from the kernel's uapi layouts
(linux/netlink.h, linux/netfilter/nfnetlink.h).

Why not pyroute2 (a project dependency): measured on this machine, importing it costs
~165 ms (paid on every exec of the CNI plugin's in-process fallback) and each call ~0.3-0.5
ms of Python on top of the kernel's ~0.05 ms; here a request is well under 0.1 ms. The
parsers are on the flow collector's hot path too (tens of thousands of NFLOG and conntrack
messages a second): :func:`parse_attrs` binds its unpacker and inlines the 4-byte
alignment, ~20 % faster than the two loops it replaces (2.1 us against 2.5-3.1 us for a
typical 11-attribute message).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

# linux/netlink.h
NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3
SOL_NETLINK = 270  # linux/socket.h; not exported by Python's socket module
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_NO_ENOBUFS = 5
NETLINK_EXT_ACK = 11
NLMSGERR_ATTR_MSG = 1
NLM_F_ACK_TLVS = 0x200  # on an error reply: extended ack attributes follow
NLM_F_CAPPED = 0x100  # on an error reply: the original request is not echoed in full
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # drops NLA_F_NESTED and NLA_F_NET_BYTEORDER

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLATTR = struct.Struct("=HH")  # len, type (an rtattr has the same layout)
_ERRHDR = struct.Struct("=i")


class NetlinkError(OSError):
    """The kernel refused a request; errno as OSError has it, plus the kernel's own text
    (extended ack) when it gave one."""


def align(n: int) -> int:
    """Netlink lengths round up to 4 bytes (NLMSG_ALIGN, NLA_ALIGN)."""
    return (n + 3) & ~3


# ---------------------------------------------------------------- attributes


def attr(kind: int, data: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    raw = NLATTR.pack(NLATTR.size + len(data), kind) + data
    return raw + b"\0" * (align(len(raw)) - len(raw))


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    """A u32 in host byte order (rtnetlink's; netfilter's are big endian, packed by hand)."""
    return attr(kind, struct.pack("=I", value))


def parse_attrs(buf: bytes, start: int = 0, _unpack=NLATTR.unpack_from) -> dict[int, bytes]:
    """Attributes from `start` to the end as {type: payload}, the flag bits masked off; the
    last of a repeated type wins (none we read repeat). Stops at the first attribute that
    is malformed or runs past the end: a truncated datagram never raises."""
    out: dict[int, bytes] = {}
    off = start
    end = len(buf)
    while off + 4 <= end:
        length, kind = _unpack(buf, off)
        if length < 4 or off + length > end:
            break
        out[kind & NLA_TYPE_MASK] = buf[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


# ---------------------------------------------------------------- messages


def iter_nlmsgs(buf: bytes, _unpack=NLMSGHDR.unpack_from) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of every netlink message in one datagram; stops at a
    malformed or truncated header."""
    off = 0
    end = len(buf)
    while off + 16 <= end:
        length, mtype, flags, seq, _pid = _unpack(buf, off)
        if length < 16 or off + length > end:
            break
        yield mtype, flags, seq, buf[off + 16 : off + length]
        off += (length + 3) & ~3


def build_nlmsg(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), msg_type, flags, seq, 0) + payload


def netlink_error(payload: bytes) -> int:
    """The (positive) errno of an NLMSG_ERROR payload, 0 for an ACK."""
    (code,) = _ERRHDR.unpack_from(payload, 0)
    return -code


def error_text(code: int, flags: int, body: bytes) -> str:
    """strerror(code), plus the kernel's extended-ack message when the reply carries one."""
    text = os.strerror(code)
    # The error header is followed by the request we sent (just its header when capped),
    # then the extended-ack attributes.
    if flags & NLM_F_ACK_TLVS and len(body) >= _ERRHDR.size + NLMSGHDR.size:
        orig_len = NLMSGHDR.unpack_from(body, _ERRHDR.size)[0]
        skip = NLMSGHDR.size if flags & NLM_F_CAPPED else align(orig_len)
        attrs = parse_attrs(body, _ERRHDR.size + skip)
        msg = attrs.get(NLMSGERR_ATTR_MSG)
        if msg:
            kernel_text = msg.rstrip(b"\x00").decode(errors="replace")
            text += f" ({kernel_text})"
    return text


# ---------------------------------------------------------------- nfnetlink


def nfgen_header(payload: bytes) -> tuple[int, int]:
    """(family, res_id) from the nfgenmsg at the start of a netfilter message."""
    family, _version = payload[0], payload[1]
    (res_id,) = struct.unpack_from("!H", payload, 2)
    return family, res_id


def build_nfmsg(
    subsys: int, msg: int, family: int, res_id: int, attrs: bytes, seq: int, flags: int
) -> bytes:
    """A netfilter message: nlmsghdr, nfgenmsg (version 0, res_id big endian), attributes."""
    body = struct.pack("=BB", family, 0) + struct.pack("!H", res_id) + attrs
    return build_nlmsg((subsys << 8) | msg, flags, seq, body)


# ---------------------------------------------------------------- the request/reply client


class NetlinkSocket:
    """One netlink socket of `protocol`, bound to the network namespace of the thread that
    opened it (kernel.ns.entered() opens one inside a pod's namespace). Not shared between
    threads: opening one costs ~20 us."""

    def __init__(self, protocol: int) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol
        )
        try:
            self.sock.bind((0, 0))
            # Ask for the kernel's error text ("Nexthop device is not up", ...): it goes
            # into the CNI error's details as is.
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:
            self.sock.close()
            raise
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, msg_type: int, flags: int, payload: bytes) -> int:
        """Send one request; returns its sequence number."""
        self.seq += 1
        self.sock.send(build_nlmsg(msg_type, flags, self.seq, payload))
        return self.seq

    def replies(self, seq: int) -> Iterator[tuple[int, bytes]]:
        """(type, body) of each reply to `seq` until the ACK / end of dump; raises
        NetlinkError on an error reply."""
        while True:
            for msg_type, flags, rseq, body in iter_nlmsgs(self.sock.recv(65536)):
                if rseq != seq:
                    continue  # a late reply to an earlier request on this socket
                if msg_type == NLMSG_DONE:
                    return
                if msg_type == NLMSG_ERROR:
                    code = netlink_error(body)
                    if code == 0:
                        return
                    raise NetlinkError(code, error_text(code, flags, body))
                yield msg_type, body

    def request(self, msg_type: int, flags: int, payload: bytes) -> list[tuple[int, bytes]]:
        seq = self.send(msg_type, flags | NLM_F_REQUEST | NLM_F_ACK, payload)
        return list(self.replies(seq))

    def request_unless(
        self, msg_type: int, flags: int, payload: bytes, *absent: int
    ) -> list[tuple[int, bytes]] | None:
        """`request`, but None when the kernel answers with one of the `absent` errnos:
        the link, route or rule asked about is not there (a repeatable DEL, a lookup)."""
        try:
            return self.request(msg_type, flags, payload)
        except NetlinkError as exc:
            if exc.errno in absent:
                return None
            raise

    def dump(self, msg_type: int, payload: bytes) -> list[tuple[int, bytes]]:
        seq = self.send(msg_type, NLM_F_REQUEST | NLM_F_DUMP, payload)
        return list(self.replies(seq))
