"""Flows grouped as people ask about them, and a flow's parts as text.

`aggregate` groups flow records (the node API's wire dicts) by source address, destination
address, protocol and destination port, and verdict, with how many records each group has,
when it was first and last seen, the nodes that reported it and the rule that decided its
newest record. The source port is not part of the key: it changes with every connection,
so grouping by it would be no grouping at all; `connections` counts the distinct ones.

One owner for both readers: the console's `:flows` (press `a`) and `calicoctl flows
--aggregate` group the same way and word a flow's ends and deciding rule the same way.

`count` is records, not connections: a connection crossing two nodes is reported by the
agent of each (both see it in conntrack), and each retried SYN of a denied connection is a
record of its own (NFLOG logs every packet it drops); `connections` and `nodes` say which.

Pure: plain data in, plain data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GroupKey = tuple[str, str, str, int | None, str]


def end_text(address: Any, port: Any, endpoint: Mapping[str, Any] | None) -> str:
    """`192.168.0.66:40001 network2`: the address (and port), and the network when it is
    a workload (the pod and endpoint are in the record's details)."""
    where = f"{address}:{port}" if port not in (None, "") else str(address)
    if not endpoint:
        return where
    net = endpoint.get("network") or ""
    return f"{where} {net}" if net else where


def deciding_rule_text(r: Mapping[str, Any]) -> str:
    """Which rule of which policy or profile the agent says decided the flow (`profile
    network1 ingress rule 0`), not the rule's words (calico.policy.describe_rule phrases
    those); "-" when the agent named none."""
    if r.get("rule_text"):
        return str(r["rule_text"])
    rule = r.get("rule")
    if not rule:
        return "-"
    if isinstance(rule, Mapping):
        kind, name = rule.get("kind", ""), rule.get("name", "")
        idx = rule.get("rule_index")
        tail = f" rule {idx}" if idx is not None else ""
        return f"{kind} {name}{tail}".strip() or "-"
    return str(rule)


def group_key(r: Mapping[str, Any]) -> GroupKey:
    """(source, destination, protocol, destination port, verdict) of one record."""
    dport = r.get("dport")
    return (
        str(r.get("src", "?")),
        str(r.get("dst", "?")),
        str(r.get("protocol") or "").lower(),
        dport if isinstance(dport, int) else None,
        str(r.get("verdict", "?")),
    )


@dataclass
class FlowGroup:
    """Every record of one (source, destination, protocol, port, verdict).

    `latest` is the newest record's item as it was given to `aggregate` (a wire dict, or
    whatever object carried it, e.g. the console's FlowEntry), so a reader can act on a
    group as on that flow (why?, details)."""

    src: str
    dst: str
    protocol: str
    dport: int | None
    verdict: str
    count: int = 0
    first: float = float("inf")
    last: float = float("-inf")
    nodes: set[str] = field(default_factory=set)
    sports: set[Any] = field(default_factory=set)
    record: Mapping[str, Any] = field(default_factory=dict)  # the newest record
    latest: Any = None

    @property
    def connections(self) -> int:
        """Distinct source ports seen (an ICMP flow, which has none, counts as one)."""
        return len(self.sports)

    @property
    def key(self) -> GroupKey:
        return (self.src, self.dst, self.protocol, self.dport, self.verdict)

    def add(self, node: str | None, r: Mapping[str, Any], item: Any = None) -> None:
        when = r.get("time")
        when = float(when) if isinstance(when, int | float) else None
        self.count += 1
        if node:
            self.nodes.add(node)
        self.sports.add(r.get("sport"))
        if when is not None:
            self.first = min(self.first, when)
        if when is None or when >= self.last or not self.record:
            if when is not None:
                self.last = max(self.last, when)
            self.record = r
            self.latest = r if item is None else item

    def source_text(self) -> str:
        return end_text(self.src, None, self.record.get("src_endpoint"))

    def destination_text(self) -> str:
        where = end_text(self.dst, self.dport, self.record.get("dst_endpoint"))
        if not self.protocol:
            return where
        address, _, net = where.partition(" ")
        return f"{address}/{self.protocol.upper()}" + (f" {net}" if net else "")

    def rule_text(self) -> str:
        return deciding_rule_text(self.record)

    def to_dict(self) -> dict[str, Any]:
        """The group as `calicoctl flows --aggregate -o json` prints it (one per line)."""
        return {
            "type": "group",
            "src": self.src,
            "dst": self.dst,
            "protocol": self.protocol,
            "dport": self.dport,
            "verdict": self.verdict,
            "count": self.count,
            "connections": self.connections,
            "first_seen": self.first if self.count and self.first != float("inf") else None,
            "last_seen": self.last if self.count and self.last != float("-inf") else None,
            "nodes": sorted(self.nodes),
            "src_endpoint": self.record.get("src_endpoint"),
            "dst_endpoint": self.record.get("dst_endpoint"),
            "rule_text": self.rule_text(),
        }


def _parts(item: Any) -> tuple[str | None, Mapping[str, Any]]:
    """(node, record) of an item: a (node, record) pair, an object with `node` and `record`
    (the console's FlowEntry), or a bare record (its `node` key, if any)."""
    if isinstance(item, tuple):
        return item[0], item[1]
    if hasattr(item, "record"):
        return getattr(item, "node", None), item.record
    return item.get("node"), item


def aggregate(items: Iterable[Any]) -> list[FlowGroup]:
    """Group records (see `_parts` for the item shapes; non-flow wire items are skipped),
    newest-seen group first, a tie broken by the larger count."""
    groups: dict[GroupKey, FlowGroup] = {}
    for item in items:
        node, r = _parts(item)
        if r.get("type", "flow") != "flow":
            continue
        key = group_key(r)
        group = groups.get(key)
        if group is None:
            group = groups[key] = FlowGroup(*key)
        group.add(node, r, item)
    return sorted(
        groups.values(),
        key=lambda g: (
            -g.last,
            -g.count,
            g.src,
            g.dst,
            g.protocol,
            -1 if g.dport is None else g.dport,
            g.verdict,
        ),
    )
