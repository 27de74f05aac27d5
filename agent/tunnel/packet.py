"""IPv4 and IPIP packets as bytes: what the relay reads, strips and checks (pure).

An IPIP packet (RFC 2003) is an outer IPv4 header with protocol 4 followed by the inner
IPv4 packet, unchanged. The relay sends inner packets through a raw IPPROTO_IPIP socket,
so the kernel writes the outer header (source chosen by routing, DF, TTL 64, its own
checksum); on receive the socket hands over the whole outer packet and the relay strips
`IHL * 4` bytes. `encapsulate` builds the outer header by hand for tests (a forged packet
from a host that is no node) and for comparing with what a kernel ipip device sends.
"""

from __future__ import annotations

import ipaddress
import struct

IPPROTO_IPIP = 4
IPV4_MIN_HEADER = 20
IPIP_OVERHEAD = 20  # the outer header (no options): tunl0's MTU is the fabric's minus this

_HEADER = struct.Struct("!BBHHHBBH4s4s")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_dst(packet: bytes) -> bytes | None:
    """The 4-byte destination of an IPv4 packet, None if it is not one (IPv6, too short)."""
    if len(packet) < IPV4_MIN_HEADER or packet[0] >> 4 != 4:
        return None
    return packet[16:20]


def strip_outer(packet: bytes) -> bytes | None:
    """The inner packet of an IPIP packet as a raw IPIP socket delivers it (outer header
    first); None when it is not IPv4-in-IPv4 or is truncated."""
    if len(packet) < IPV4_MIN_HEADER or packet[0] >> 4 != 4 or packet[9] != IPPROTO_IPIP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    if ihl < IPV4_MIN_HEADER or total < ihl or len(packet) < total:
        return None
    inner = packet[ihl:total]
    if len(inner) < IPV4_MIN_HEADER or inner[0] >> 4 != 4:
        return None
    return inner


def encapsulate(inner: bytes, src: str, dst: str, ttl: int = 64, ident: int = 0) -> bytes:
    """`inner` behind an outer IPv4 header with protocol 4, DF set, checksum filled in: the
    bytes a kernel ipip device puts on the wire (it inherits the inner TOS only when told)."""
    header = _HEADER.pack(
        0x45,
        0,
        IPV4_MIN_HEADER + len(inner),
        ident,
        0x4000,  # DF
        ttl,
        IPPROTO_IPIP,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    csum = checksum(header)
    return header[:10] + struct.pack("!H", csum) + header[12:] + inner


def icmp_echo(src: str, dst: str, ident: int = 1, seq: int = 1, payload: bytes = b"") -> bytes:
    """An IPv4 ICMP echo request, checksums filled in (tests and forged packets)."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    header = _HEADER.pack(
        0x45, 0, IPV4_MIN_HEADER + len(icmp), 0, 0x4000, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + icmp
