"""Flow records (Hubble-like) and the bounded ring they live in.

Pure: no sockets, no kernel. The collector pushes; every reader has its own cursor, so a
slow reader never blocks the collector. A reader that falls more than the ring's capacity
behind gets ``Dropped(count)`` (``{"type": "dropped", "count": N}`` on the wire) for the
records it missed, then continues with the oldest record still kept.

The `hubble observe`-style filter readers pass is `calico.flowfilter.FlowFilter`, shared with
the console so that what the console asks for is what the agent sends; it is re-exported
here for the ring's readers, and matches a FlowRecord as it is (no dict made per record).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from calico.flowwords import ALLOWED, DENIED

VERDICTS = (ALLOWED, DENIED)
DEFAULT_CAPACITY = 10_000


# ---------------------------------------------------------------- records


@dataclass(slots=True, frozen=True)
class EndpointInfo:
    """What the agent knows about the endpoint behind an address."""

    name: str
    network: str | None = None
    networks: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    pod: str | None = None
    namespace: str | None = None

    @classmethod
    def coerce(cls, value: EndpointInfo | Mapping[str, Any] | None) -> EndpointInfo | None:
        """From a lookup's answer: an EndpointInfo, a mapping with `name` (and optionally
        `network`/`networks`, `profiles`, `pod`, `namespace`), or None."""
        if value is None or isinstance(value, EndpointInfo):
            return value
        networks = tuple(value.get("networks") or ())
        network = value.get("network") or (networks[0] if networks else None)
        if network and network not in networks:
            networks = (network, *networks)
        return cls(
            name=str(value.get("name") or value.get("pod") or "?"),
            network=network,
            networks=networks,
            profiles=tuple(value.get("profiles") or ()),
            pod=value.get("pod"),
            namespace=value.get("namespace"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "network": self.network,
            "networks": list(self.networks),
            "profiles": list(self.profiles),
            "pod": self.pod,
            "namespace": self.namespace,
        }


@dataclass(slots=True)
class FlowRecord:
    """One flow decision: a denied packet (NFLOG) or an allowed new connection (conntrack).

    `rule` says what decided: for denies the parsed NFLOG prefix (``direction``, ``kind``
    policy/profile/default, ``name``, ``rule_index``); for allows whatever the agent's
    resolver answered, or None when it had none.
    """

    time: float
    verdict: str
    protocol: str
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    src_endpoint: EndpointInfo | None = None
    dst_endpoint: EndpointInfo | None = None
    direction: str | None = None  # ingress/egress as seen by the local endpoint, if known
    rule: dict[str, Any] | None = None
    in_iface: str | None = None
    out_iface: str | None = None
    tcp_flags: tuple[str, ...] = ()
    icmp_type: int | None = None
    icmp_code: int | None = None
    source: str = ""  # "nflog" or "conntrack"

    @property
    def rule_text(self) -> str | None:
        return describe_rule(self.rule)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "verdict": self.verdict,
            "protocol": self.protocol,
            "src": self.src,
            "dst": self.dst,
            "sport": self.sport,
            "dport": self.dport,
            "src_endpoint": self.src_endpoint.to_dict() if self.src_endpoint else None,
            "dst_endpoint": self.dst_endpoint.to_dict() if self.dst_endpoint else None,
            "direction": self.direction,
            "rule": self.rule,
            "rule_text": self.rule_text,
            "in_iface": self.in_iface,
            "out_iface": self.out_iface,
            "tcp_flags": list(self.tcp_flags),
            "icmp_type": self.icmp_type,
            "icmp_code": self.icmp_code,
            "source": self.source,
        }

    def summary(self) -> str:
        """One line, `hubble observe` style."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.time))
        stamp += f".{int(self.time * 1000) % 1000:03d}"

        def end(addr: str, port: int | None, ep: EndpointInfo | None) -> str:
            where = f"{addr}:{port}" if port is not None else addr
            return f"{ep.name} ({where})" if ep else where

        flags = f" [{','.join(self.tcp_flags)}]" if self.tcp_flags else ""
        rule = f" by {self.rule_text}" if self.rule_text else ""
        return (
            f"{stamp} {end(self.src, self.sport, self.src_endpoint)} -> "
            f"{end(self.dst, self.dport, self.dst_endpoint)} {self.protocol}{flags} "
            f"{self.verdict.upper()}{rule}"
        )


def describe_rule(rule: Mapping[str, Any] | None) -> str | None:
    """``policy default/deny-81 ingress rule 3`` / ``profile net1 default deny`` / ..."""
    if not rule:
        return None
    if "text" in rule and "kind" not in rule:
        return str(rule["text"])
    kind = rule.get("kind")
    if kind == "unknown":
        return f"NFLOG {rule.get('raw', '')!r}"
    name = rule.get("name", "")
    if rule.get("truncated"):
        name += "…"
    direction = rule.get("direction")
    where = f" {direction}" if direction else ""
    if kind == "default":
        return f"default deny{where} ({name})"
    index = rule.get("rule_index")
    tail = f" rule {index}" if index is not None else " end of chain"
    return f"{kind} {name}{where}{tail}"


@dataclass(slots=True, frozen=True)
class Dropped:
    """Marks `count` records a reader missed because it fell behind the ring."""

    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": "dropped", "count": self.count}


# ---------------------------------------------------------------- the ring


class FlowRing:
    """A bounded ring of records with a global sequence number; readers keep cursors.

    `push` is O(1) under a short lock and never waits for readers.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._slots: list[FlowRecord | None] = [None] * capacity
        self._total = 0  # sequence number of the next record
        self._cond = threading.Condition(threading.Lock())
        self._closed = False

    @property
    def total(self) -> int:
        """How many records were ever pushed (the next record's sequence number)."""
        return self._total

    @property
    def oldest(self) -> int:
        """The sequence number of the oldest record still kept."""
        return max(0, self._total - self.capacity)

    def __len__(self) -> int:
        return self._total - self.oldest

    def push(self, record: FlowRecord) -> None:
        with self._cond:
            self._slots[self._total % self.capacity] = record
            self._total += 1
            self._cond.notify_all()

    def push_many(self, records: Iterable[FlowRecord]) -> None:
        with self._cond:
            slots, cap, n = self._slots, self.capacity, self._total
            for record in records:
                slots[n % cap] = record
                n += 1
            if n != self._total:
                self._total = n
                self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting reader for good (readers then drain and stop)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def snapshot(self) -> tuple[int, list[FlowRecord]]:
        """(sequence number after the last one, the records kept, oldest first)."""
        with self._cond:
            start, end = self.oldest, self._total
            return end, [self._slots[i % self.capacity] for i in range(start, end)]  # type: ignore[misc]

    def read(
        self, cursor: int, max_items: int | None = None, timeout: float | None = 0.0
    ) -> tuple[int, list[FlowRecord | Dropped]]:
        """Records from `cursor` on: (new cursor, items); a Dropped first if some were lost.

        Waits up to `timeout` seconds (None: until something arrives or the ring is closed)
        when there is nothing to read yet.
        """
        with self._cond:
            if cursor >= self._total and timeout != 0.0 and not self._closed:
                self._cond.wait_for(lambda: self._total > cursor or self._closed, timeout)
            items: list[FlowRecord | Dropped] = []
            oldest = self.oldest
            if cursor < oldest:
                items.append(Dropped(oldest - cursor))
                cursor = oldest
            end = self._total if max_items is None else min(self._total, cursor + max_items)
            cap, slots = self.capacity, self._slots
            items.extend(slots[i % cap] for i in range(cursor, end))  # type: ignore[misc]
            return end, items


def iter_items(items: Iterable[FlowRecord | Dropped]) -> Iterator[dict[str, Any]]:
    """Wire form of ring items: ``{"type": "flow", ...}`` / ``{"type": "dropped", ...}``."""
    for item in items:
        if isinstance(item, Dropped):
            yield item.to_dict()
        else:
            yield {"type": "flow", **item.to_dict()}
