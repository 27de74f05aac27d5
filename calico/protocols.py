"""IP protocols: the one table every program reads.

A protocol has four spellings in this project, and they differ on purpose:

- the Calico resource name (`TCP`, `ICMPv6`, `UDPLite`), what a rule's `protocol` says and
  what describe and why? print;
- the IP protocol number, what the kernel and the policy evaluator compare;
- the iptables token (`-p tcp`, `-p ipv6-icmp`), what the agent renders;
- the flow name (`tcp`, `icmpv6`), lower case as Hubble prints it, what flow records carry.

Only the protocols that carry ports can be used with `ports`/`notPorts` and in ipsets of
type `hash:net,port` (TCP, UDP, SCTP, UDPLite).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Protocol:
    number: int
    name: str  # as Calico resources spell it
    iptables: str  # iptables' -p token
    flow: str  # flow records (lower case, as Hubble prints it)
    has_ports: bool


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol(6, "TCP", "tcp", "tcp", has_ports=True),
    Protocol(17, "UDP", "udp", "udp", has_ports=True),
    Protocol(1, "ICMP", "icmp", "icmp", has_ports=False),
    Protocol(58, "ICMPv6", "ipv6-icmp", "icmpv6", has_ports=False),
    Protocol(132, "SCTP", "sctp", "sctp", has_ports=True),
    Protocol(136, "UDPLite", "udplite", "udplite", has_ports=True),
)

BY_NUMBER: dict[int, Protocol] = {p.number: p for p in PROTOCOLS}
_BY_LOWER_NAME: dict[str, Protocol] = {p.name.lower(): p for p in PROTOCOLS}
PORT_PROTOCOLS: frozenset[int] = frozenset(p.number for p in PROTOCOLS if p.has_ports)


def protocol_number(proto: int | str) -> int:
    """Protocol name (any case) or number -> IP protocol number (raises ValueError)."""
    if isinstance(proto, int):
        if not 0 <= proto <= 255:
            raise ValueError(f"protocol number {proto} out of range 0-255")
        return proto
    if proto.isdigit():
        return protocol_number(int(proto))
    known = _BY_LOWER_NAME.get(proto.lower())
    if known is None:
        names = ", ".join(p.name for p in PROTOCOLS[:-1]) + f" or {PROTOCOLS[-1].name}"
        raise ValueError(f"unknown protocol {proto!r} (use {names} or 0-255)")
    return known.number


def protocol_name(number: int) -> str:
    """The Calico resource name of a protocol number, or the number itself."""
    known = BY_NUMBER.get(number)
    return known.name if known else str(number)


def iptables_token(number: int) -> str:
    """What iptables' `-p` takes for a protocol number."""
    known = BY_NUMBER.get(number)
    return known.iptables if known else str(number)


def flow_name(number: int) -> str:
    """A flow record's protocol: lower-case name, or the number."""
    known = BY_NUMBER.get(number)
    return known.flow if known else str(number)
