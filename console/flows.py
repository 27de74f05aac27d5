"""Live flows as plain data: rows, the kept history, and per-network rates.

No Textual and no sockets here. The `:flows` screen feeds wire records from the agents'
streams (`{"type": "flow", ...}`, see the node API) into a `FlowStore`, which keeps the
newest N, filters them with a `calico.flowfilter.FlowFilter` (the agent's own filter, so a
filter typed here means what it means in the node API's query), and counts allowed/denied
per network per second for the sparklines.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from calico.flowagg import FlowGroup, aggregate, deciding_rule_text, end_text
from calico.flowfilter import FlowFilter, clock_text
from calico.flowwords import DENIED

HOST = "(host)"  # the network of a flow whose ends are not workload endpoints


def flow_network(r: dict[str, Any]) -> str:
    """The one network a flow is counted under: the destination's, else the source's."""
    for side in ("dst_endpoint", "src_endpoint"):
        ep = r.get(side) or {}
        if ep.get("network"):
            return str(ep["network"])
    return HOST


@dataclass
class FlowEntry:
    """One flow record as received, from one node, with its table cells made once.

    The console's view of a record as `FlowFilter.matches` takes it: `node` answers a
    filter's `node:` and `cells` its bare words."""

    seq: int
    node: str
    record: dict[str, Any]
    cells: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        return str(self.record.get("verdict", ""))


COLUMNS = ("TIME", "SOURCE", "DESTINATION", "VERDICT", "DECIDED BY", "NODE")
# The aggregated view (calico.flowagg): one row per source, destination, port and verdict.
# NODES last: the rule says more, and the table scrolls sideways for the rest.
GROUP_COLUMNS = ("SOURCE", "DESTINATION", "VERDICT", "COUNT", "FIRST", "LAST", "DECIDED BY", "NODES")  # fmt: skip


def make_cells(node: str, r: dict[str, Any]) -> tuple[str, ...]:
    """TIME, SOURCE, DESTINATION (with the protocol), VERDICT, DECIDED BY, NODE."""
    t = r.get("time")
    stamp = time.strftime("%H:%M:%S", time.localtime(t)) if isinstance(t, int | float) else "?"
    proto = str(r.get("protocol", "")).upper()
    dst = end_text(r.get("dst", "?"), r.get("dport"), r.get("dst_endpoint"))
    if proto:
        where, _, net = dst.partition(" ")
        dst = f"{where}/{proto}" + (f" {net}" if net else "")
    return (
        stamp,
        end_text(r.get("src", "?"), r.get("sport"), r.get("src_endpoint")),
        dst,
        str(r.get("verdict", "?")).upper(),
        deciding_rule_text(r),
        node,
    )


def group_cells(group: FlowGroup, now: float | None = None) -> tuple[str, ...]:
    """SOURCE, DESTINATION (with the protocol), VERDICT, COUNT, FIRST, LAST, DECIDED BY,
    NODES of one group: the newest record's rule, first and last seen as times of day (with
    the date when not on the day of `now`)."""

    def at(when: float) -> str:
        return clock_text(when, now) if when not in (float("inf"), float("-inf")) else "?"

    return (
        group.source_text(),
        group.destination_text(),
        group.verdict.upper(),
        str(group.count),
        at(group.first),
        at(group.last),
        group.rule_text(),
        ",".join(sorted(group.nodes)),
    )


@dataclass
class Rates:
    """Allowed and denied flows per second for one network, over the last `span` seconds."""

    span: int = 60
    allowed: dict[int, int] = field(default_factory=dict)
    denied: dict[int, int] = field(default_factory=dict)

    def add(self, verdict: str, when: float) -> None:
        book = self.denied if verdict == DENIED else self.allowed
        second = int(when)
        book[second] = book.get(second, 0) + 1

    def series(self, now: float) -> tuple[list[int], list[int]]:
        end = int(now)
        start = end - self.span + 1
        for book in (self.allowed, self.denied):
            for s in [s for s in book if s < start]:
                del book[s]
        seconds = range(start, end + 1)
        return [self.allowed.get(s, 0) for s in seconds], [self.denied.get(s, 0) for s in seconds]


class FlowStore:
    """The newest `capacity` flows from every node (bounded memory), plus rates per network."""

    def __init__(self, capacity: int = 2000, span: int = 60):
        self.capacity = capacity
        self.entries: deque[FlowEntry] = deque(maxlen=capacity)
        self.rates: dict[str, Rates] = {}
        self.span = span
        self.seq = 0
        self.dropped: dict[str, int] = {}  # node -> records the agent said this reader missed
        self.total = 0

    def add(self, node: str, items: Iterable[dict[str, Any]]) -> int:
        """Wire items from one node's stream; returns how many flows were added."""
        added = 0
        for item in items:
            kind = item.get("type", "flow")
            if kind == "dropped":
                self.dropped[node] = self.dropped.get(node, 0) + int(item.get("count", 0))
                continue
            if kind != "flow":
                continue
            self.seq += 1
            self.total += 1
            entry = FlowEntry(self.seq, node, item, make_cells(node, item))
            self.entries.append(entry)
            when = item.get("time")
            self.rates.setdefault(flow_network(item), Rates(self.span)).add(
                entry.verdict, when if isinstance(when, int | float) else time.time()
            )
            added += 1
        return added

    def newest_first(self, query: FlowFilter | None = None) -> Iterator[FlowEntry]:
        for entry in reversed(self.entries):
            if query is None or query.matches(entry):
                yield entry

    def groups(self, query: FlowFilter | None = None) -> list[FlowGroup]:
        """The kept flows that match, grouped (calico.flowagg), newest-seen group first."""
        return aggregate(self.newest_first(query))

    def networks(self) -> list[str]:
        return sorted(self.rates, key=lambda n: (n == HOST, n))
