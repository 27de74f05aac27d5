"""The userspace half of tunl0: TUN device <-> raw IPPROTO_IPIP socket (decisions pure).

Out: a packet the kernel routed into tunl0 is read from the TUN device; its outer
destination is the gateway of the kernel's route for its destination (what the kernel's
ipip device with `remote any` does), looked up once per destination with RTM_GETROUTE and
cached until any IPv4 route changes (RTNLGRP_IPV4_ROUTE); it goes out through the raw
socket, which makes the kernel write the outer header. In: the raw socket delivers every
protocol-4 packet that passed INPUT (where the agent drops IPIP from hosts that are no
node); the outer header is stripped and the inner packet written to the TUN device, where
the kernel receives it as from tunl0 and forwards it through cali-FORWARD as any other.

`Relay.outbound` / `Relay.inbound` decide per packet and count; the loop in
`agent.tunnel.main` only moves bytes between file descriptors.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.tunnel.packet import ipv4_dst, strip_outer

# Drop reasons, as counted and reported.
NOT_IPV4 = "not-ipv4"
NO_ROUTE = "no-route"
NOT_VIA_TUNNEL = "route-not-via-tunl0"
NO_GATEWAY = "route-without-gateway"
NOT_IPIP = "not-ipip"
SEND_ERROR = "send-error"
WRITE_ERROR = "write-error"

CACHE_MAX = 65536  # destinations remembered between route changes (a flood of new ones
#                    empties it rather than growing it)

# (outer destination, None) or (None, drop reason), for one inner destination.
Lookup = Callable[[bytes], tuple[str | None, str | None]]


class RouteCache:
    """Inner destination (4 bytes) -> outer destination or why not; `flush` on any route
    change. Negative answers are cached too: a flood towards an unrouted address costs one
    lookup, not one per packet."""

    def __init__(self, lookup: Lookup, max_entries: int = CACHE_MAX) -> None:
        self.lookup = lookup
        self.max_entries = max_entries
        self.entries: dict[bytes, tuple[str | None, str | None]] = {}
        self.lookups = 0
        self.flushes = 0

    def get(self, dst: bytes) -> tuple[str | None, str | None]:
        hit = self.entries.get(dst)
        if hit is not None:
            return hit
        self.lookups += 1
        answer = self.lookup(dst)
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[dst] = answer
        return answer

    def flush(self) -> None:
        if self.entries:
            self.entries.clear()
        self.flushes += 1


def route_answer(
    oif: int | None, gateway: str | None, tunnel_index: int
) -> tuple[str | None, str | None]:
    """What the kernel's route for an inner destination means for the relay: no route, a
    route out of another device, a tunl0 route without gateway (nothing to send to), or
    the outer destination."""
    if oif is None:
        return None, NO_ROUTE
    if oif != tunnel_index:
        return None, NOT_VIA_TUNNEL
    if not gateway:
        return None, NO_GATEWAY
    return gateway, None


@dataclass
class Counters:
    """What went through, each way, and what was dropped and why."""

    tun_rx_packets: int = 0  # read from tunl0 (the kernel routed them into the tunnel)
    tun_rx_bytes: int = 0
    encap_packets: int = 0  # sent as IPIP
    encap_bytes: int = 0  # inner bytes
    wire_rx_packets: int = 0  # IPIP received on the raw socket
    wire_rx_bytes: int = 0
    decap_packets: int = 0  # inner packets written to tunl0
    decap_bytes: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def to_dict(self) -> dict:
        return {
            "out": {
                "read_packets": self.tun_rx_packets,
                "read_bytes": self.tun_rx_bytes,
                "sent_packets": self.encap_packets,
                "sent_bytes": self.encap_bytes,
            },
            "in": {
                "received_packets": self.wire_rx_packets,
                "received_bytes": self.wire_rx_bytes,
                "written_packets": self.decap_packets,
                "written_bytes": self.decap_bytes,
            },
            "drops": dict(sorted(self.drops.items())),
        }


class Relay:
    """Per-packet decisions, with counters; no file descriptors."""

    def __init__(self, routes: RouteCache) -> None:
        self.routes = routes
        self.counters = Counters()

    def outbound(self, packet: bytes) -> tuple[str, int] | None:
        """A packet read from tunl0 -> the raw socket's address to send it to, or None
        (dropped, counted)."""
        c = self.counters
        c.tun_rx_packets += 1
        c.tun_rx_bytes += len(packet)
        dst = ipv4_dst(packet)
        if dst is None:
            c.drop(NOT_IPV4)
            return None
        outer, why = self.routes.get(dst)
        if outer is None:
            c.drop(why or NO_ROUTE)
            return None
        return outer, 0

    def sent(self, packet: bytes) -> None:
        self.counters.encap_packets += 1
        self.counters.encap_bytes += len(packet)

    def inbound(self, packet: bytes) -> bytes | None:
        """A packet from the raw socket (outer header first) -> the inner packet to write
        to tunl0, or None (dropped, counted)."""
        c = self.counters
        c.wire_rx_packets += 1
        c.wire_rx_bytes += len(packet)
        inner = strip_outer(packet)
        if inner is None:
            c.drop(NOT_IPIP)
            return None
        return inner

    def written(self, inner: bytes) -> None:
        self.counters.decap_packets += 1
        self.counters.decap_bytes += len(inner)


def dotted(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def write_status(path: Path, data: dict) -> None:
    """The status file, replaced atomically (readers never see half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def status_record(mode: str, relay: Relay | None, started: float, **extra: object) -> dict:
    data: dict = {"mode": mode, "pid": os.getpid(), "started": started, "time": time.time()}
    if relay is not None:
        data.update(relay.counters.to_dict())
        data["route_lookups"] = relay.routes.lookups
        data["route_cache_flushes"] = relay.routes.flushes
    data.update(extra)
    return data
