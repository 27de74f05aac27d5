"""Denied packets: the NFLOG contract with the dataplane, its parser, and its socket.

Contract with the agent dataplane (whoever renders the iptables rules follows this)
==============================================================================

Every packet the policy denies is logged before it is dropped, so the flow log can say
*which* rule denied it:

* Where: just before each DROP that ends an endpoint's chain (the end-of-tier drop after a
  policy tier, the profile default deny), and on each explicit ``Deny`` rule (the NFLOG rule
  goes right before the rule's DROP, with the same match).
* What: ``-m conntrack --ctstate NEW -j NFLOG --nflog-group 1 --nflog-prefix "<prefix>"
  --nflog-threshold 1``. Only NEW packets are logged (one record per attempted connection,
  not per retransmit of established traffic), group 1 is ``NFLOG_GROUP``, and the threshold
  of 1 hands every packet to user space at once.
* Prefix: build it with :func:`nflog_prefix`, never by hand::

      D|<I or E>|<kind>|<name>|<rule index or ->

  ``I`` = ingress (traffic *to* the endpoint, the ``cali-tw-``/``cali-pi-``/``cali-pri-``
  side), ``E`` = egress (traffic *from* the endpoint). ``kind`` is one of

  - ``pol``: a policy; ``name`` is ``namespace/name`` for a NetworkPolicy, ``name`` for a
    GlobalNetworkPolicy; the index is the rule's position in the policy's ingress or egress
    list (0-based), or ``-`` for the end-of-tier drop;
  - ``pro``: a profile; ``name`` is the profile's name, index as for policies;
  - ``def``: the default deny at the end of an endpoint's chain when nothing allowed;
    ``name`` is the endpoint's profile list joined by ``,`` (or its interface name when it
    has no profile), index ``-``.

  The kernel keeps at most 63 bytes of prefix (``xt_nflog_info.prefix`` is 64 bytes with the
  NUL; iptables silently cuts longer ones). :func:`nflog_prefix` always fits: a name that
  would not is cut at a UTF-8 character boundary and ends in ``~`` plus 8 hex digits of the
  SHA-1 of the full name, so two long names never share a prefix and the full name can be
  matched afterwards (:func:`prefix_name_matches`). The direction, kind and index are never
  cut. :func:`parse_prefix` reverses it; a prefix that does not follow the contract parses to
  ``{"kind": "unknown", "raw": ...}`` rather than failing.

Allowed traffic is not logged by iptables: it is read from conntrack NEW events (see
``agent.flows.conntrack``).

This module: pure parsing of NFULNL netlink messages (:func:`parse_nflog_messages`, tested on
captured bytes; the framing is kernel.netlink's), then the netfilter socket reader the
conntrack reader shares and the socket (:class:`NflogSocket`) that binds a group in the
current network namespace.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from dataclasses import dataclass

from agent.flows.prefix import NFLOG_GROUP
from calico.protocols import flow_name
from kernel.netlink import (
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_NETFILTER,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    SOL_NETLINK,
    attr,
    build_nfmsg,
    iter_nlmsgs,
    netlink_error,
    nfgen_header,
    parse_attrs,
)

# ---------------------------------------------------------------- L3/L4 headers (pure)

TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


@dataclass(slots=True, frozen=True)
class IPHeader:
    """What a flow record needs from the start of a packet."""

    version: int
    protocol: int
    src: str
    dst: str
    length: int
    sport: int | None = None
    dport: int | None = None
    tcp_flags: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    @property
    def protocol_name(self) -> str:
        return flow_name(self.protocol)

    def flag_names(self) -> list[str]:
        if self.tcp_flags is None:
            return []
        return [n for bit, n in enumerate(TCP_FLAG_NAMES) if self.tcp_flags & (1 << bit)]


def _l4(header: dict, proto: int, data: bytes, off: int, fragment_offset: int) -> None:
    if fragment_offset:
        return  # no L4 header in a non-first fragment
    if proto in (6, 17, 132) and len(data) >= off + 4:
        header["sport"], header["dport"] = struct.unpack_from("!HH", data, off)
        if proto == 6 and len(data) >= off + 14:
            header["tcp_flags"] = data[off + 13]
    elif proto in (1, 58) and len(data) >= off + 2:
        header["icmp_type"], header["icmp_code"] = data[off], data[off + 1]


def parse_ip_header(data: bytes) -> IPHeader | None:
    """IPv4 (options skipped) or IPv6 (no extension headers walked) plus TCP/UDP ports."""
    if not data:
        return None
    version = data[0] >> 4
    if version == 4 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        if ihl < 20:
            return None
        total, frag, proto = struct.unpack_from("!H2xH1xB", data, 2)
        header: dict = {
            "version": 4,
            "protocol": proto,
            "src": socket.inet_ntop(socket.AF_INET, data[12:16]),
            "dst": socket.inet_ntop(socket.AF_INET, data[16:20]),
            "length": total,
        }
        _l4(header, proto, data, ihl, frag & 0x1FFF)
        return IPHeader(**header)
    if version == 6 and len(data) >= 40:
        plen, nxt = struct.unpack_from("!HB", data, 4)
        header = {
            "version": 6,
            "protocol": nxt,
            "src": socket.inet_ntop(socket.AF_INET6, data[8:24]),
            "dst": socket.inet_ntop(socket.AF_INET6, data[24:40]),
            "length": plen + 40,
        }
        _l4(header, nxt, data, 40, 0)
        return IPHeader(**header)
    return None


# ---------------------------------------------------------------- NFULNL messages (pure)

NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1

NFULA_PACKET_HDR = 1
NFULA_MARK = 2
NFULA_TIMESTAMP = 3
NFULA_IFINDEX_INDEV = 4
NFULA_IFINDEX_OUTDEV = 5
NFULA_IFINDEX_PHYSINDEV = 6
NFULA_IFINDEX_PHYSOUTDEV = 7
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
NFULA_SEQ = 12  # per-group sequence number, with NFULNL_CFG_F_SEQ

NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_NLBUFSIZ = 3
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULA_CFG_FLAGS = 6
NFULNL_CFG_F_SEQ = 0x0001
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_CFG_CMD_PF_BIND = 3
NFULNL_CFG_CMD_PF_UNBIND = 4
NFULNL_COPY_PACKET = 2

HOOK_NAMES = {0: "PREROUTING", 1: "INPUT", 2: "FORWARD", 3: "OUTPUT", 4: "POSTROUTING"}


@dataclass(slots=True)
class NflogPacket:
    """One logged packet: the rule's prefix, where it was seen, and its headers."""

    group: int
    family: int
    prefix: str
    hook: int | None
    timestamp: float | None  # the kernel's, when the skb had one (often it has not)
    indev: int | None
    outdev: int | None
    mark: int | None
    header: IPHeader | None
    payload_len: int
    seq: int | None = None  # consecutive per group: a gap is packets the kernel lost

    @property
    def hook_name(self) -> str | None:
        return None if self.hook is None else HOOK_NAMES.get(self.hook, str(self.hook))


def _u32(value: bytes | None) -> int | None:
    return None if value is None or len(value) < 4 else struct.unpack_from("!I", value)[0]


def parse_nflog_packet(payload: bytes) -> NflogPacket:
    """One NFULNL_MSG_PACKET (the payload after the nlmsghdr)."""
    family, group = nfgen_header(payload)
    attrs = parse_attrs(payload, 4)
    hook = None
    hdr = attrs.get(NFULA_PACKET_HDR)
    if hdr is not None and len(hdr) >= 3:
        hook = hdr[2]
    stamp = None
    ts = attrs.get(NFULA_TIMESTAMP)
    if ts is not None and len(ts) >= 16:
        sec, usec = struct.unpack_from("!QQ", ts)
        stamp = sec + usec / 1e6
    raw_prefix = attrs.get(NFULA_PREFIX, b"")
    prefix = raw_prefix.split(b"\0", 1)[0].decode(errors="replace")
    data = attrs.get(NFULA_PAYLOAD, b"")
    return NflogPacket(
        group=group,
        family=family,
        prefix=prefix,
        hook=hook,
        timestamp=stamp,
        indev=_u32(attrs.get(NFULA_IFINDEX_INDEV)),
        outdev=_u32(attrs.get(NFULA_IFINDEX_OUTDEV)),
        mark=_u32(attrs.get(NFULA_MARK)),
        seq=_u32(attrs.get(NFULA_SEQ)),
        header=parse_ip_header(data),
        payload_len=len(data),
    )


def parse_nflog_messages(buf: bytes) -> list[NflogPacket]:
    """Every NFULNL packet in one datagram; config ACKs and other messages are skipped."""
    out = []
    packet_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
    for mtype, _flags, _seq, payload in iter_nlmsgs(buf):
        if mtype == packet_type and len(payload) >= 4:
            out.append(parse_nflog_packet(payload))
    return out


def nflog_config_messages(group: int, copy_range: int, seq: int = 1) -> list[bytes]:
    """The requests that bind `group` and ask for the first `copy_range` bytes of each packet."""
    flags = NLM_F_REQUEST | NLM_F_ACK

    def cfg(family: int, res_id: int, attrs: bytes, n: int) -> bytes:
        return build_nfmsg(NFNL_SUBSYS_ULOG, NFULNL_MSG_CONFIG, family, res_id, attrs, n, flags)

    cmd = lambda c: attr(NFULA_CFG_CMD, bytes([c]))  # noqa: E731
    mode = struct.pack("!IBx", copy_range, NFULNL_COPY_PACKET)
    return [
        cfg(socket.AF_INET, 0, cmd(NFULNL_CFG_CMD_PF_BIND), seq),
        cfg(socket.AF_UNSPEC, group, cmd(NFULNL_CFG_CMD_BIND), seq + 1),
        cfg(
            socket.AF_UNSPEC,
            group,
            attr(NFULA_CFG_MODE, mode)
            + attr(NFULA_CFG_QTHRESH, struct.pack("!I", 1))
            + attr(NFULA_CFG_TIMEOUT, struct.pack("!I", 0))
            + attr(NFULA_CFG_FLAGS, struct.pack("!H", NFULNL_CFG_F_SEQ)),
            seq + 2,
        ),
    ]


# ---------------------------------------------------------------- the socket

SO_RCVBUFFORCE = 33


def open_netfilter_socket(rcvbuf: int, groups: tuple[int, ...] = ()) -> socket.socket:
    """A NETLINK_NETFILTER socket in the current namespace, with a large receive buffer."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, 0))
        for group in groups:
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    except BaseException:
        sock.close()
        raise
    return sock


class NetfilterReader:
    """A NETLINK_NETFILTER socket read into one reused buffer (a fresh 256 KB buffer per
    recv() costs more than parsing). ENOBUFS (the kernel dropped messages because this
    reader fell behind) is counted in `lost_overruns` and reading continues."""

    BUFSIZE = 1 << 18

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lost_overruns = 0
        self._buf = bytearray(self.BUFSIZE)
        self._view = memoryview(self._buf)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_raw(self) -> bytes:
        """One datagram, unparsed (b"" after an overrun, which is counted)."""
        try:
            n = self.sock.recv_into(self._buf)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.lost_overruns += 1
                return b""
            raise
        return bytes(self._view[:n])

    def close(self) -> None:
        self._view.release()
        self.sock.close()

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NflogSocket(NetfilterReader):
    """Bound to one NFLOG group in the network namespace it was opened in.

    `recv()` blocks until a datagram arrives (use `fileno()` with select/poll to wait with a
    stop signal) and returns the receive time and the parsed packets. Binding fails with
    EBUSY when another process (ulogd, a second collector) holds the group.
    """

    def __init__(self, group: int = NFLOG_GROUP, copy_range: int = 128, rcvbuf: int = 32 << 20):
        self.group = group
        super().__init__(open_netfilter_socket(rcvbuf))
        try:
            for message in nflog_config_messages(group, copy_range):
                self._request(message)
        except BaseException:
            self.sock.close()
            raise

    def _request(self, message: bytes) -> None:
        self.sock.send(message)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            data = self.sock.recv(65536)
            for mtype, _flags, _seq, payload in iter_nlmsgs(data):
                if mtype == NLMSG_ERROR:
                    code = netlink_error(payload)
                    if code:
                        raise OSError(code, f"NFLOG config: {os.strerror(code)}")
                    return
        raise TimeoutError("NFLOG config: no answer from the kernel")

    def recv(self) -> tuple[float, list[NflogPacket]]:
        data = self.recv_raw()
        return time.time(), parse_nflog_messages(data) if data else []
