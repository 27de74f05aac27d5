"""Live flows as plain data: `hubble observe`-style queries, rows, and per-network rates.

No Textual and no sockets here. The `:flows` screen feeds wire records from the agents'
streams (`{"type": "flow", ...}`, see the node API) into a `FlowStore`, which keeps the
newest N, filters them with a `FlowQuery`, and counts allowed/denied per network per
second for the sparklines.
"""

from __future__ import annotations

import ipaddress
import shlex
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from calico.flowwords import DENIED, VERDICT_WORDS

FIELDS = ("verdict", "from", "to", "port", "network", "node", "protocol")
HOST = "(host)"  # the network of a flow whose ends are not workload endpoints


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class FlowQuery:
    """Fields AND'ed, values of one field OR'ed, like `hubble observe`.

    Written as `verdict:denied from:network2 to:192.168.0.100 port:80`, or hubble's own
    `--verdict DROPPED --from-pod X --to-ip Y --port 80`, or key=value. `from`/`to` terms
    match an endpoint name, pod (uuid prefix), network, profile, address or CIDR; prefix a
    term with pod:, ep:, net:, ip: or profile: to say which. Bare words match anywhere.
    """

    verdict: tuple[str, ...] = ()
    from_: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    port: tuple[int, ...] = ()
    network: tuple[str, ...] = ()
    node: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> FlowQuery:
        try:
            tokens = shlex.split(text)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        got: dict[str, list[str]] = {k: [] for k in (*FIELDS, "words")}
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            i += 1
            key, value = "", ""
            if tok.startswith("--"):
                key = tok[2:]
                if "=" in key:
                    key, value = key.split("=", 1)
                else:
                    if i >= len(tokens):
                        raise QueryError(f"{tok} needs a value")
                    value, i = tokens[i], i + 1
                # hubble's --from-pod X / --to-ip Y: the kind goes in front of the value
                for side in ("from", "to"):
                    if key.startswith(side + "-") and key != side:
                        kind = key[len(side) + 1 :]
                        kind = {"namespace": "ns", "endpoint": "ep", "label": "net"}.get(kind, kind)
                        key, value = side, f"{kind}:{value}"
            elif ":" in tok or "=" in tok:
                sep = min(p for p in (tok.find(":"), tok.find("=")) if p >= 0)
                key, value = tok[:sep], tok[sep + 1 :]
                if key not in FIELDS:
                    key, value = "", tok
            else:
                value = tok
            if not key:
                got["words"].append(value.lower())
                continue
            if key not in FIELDS:
                raise QueryError(f"unknown filter {key!r} (use {', '.join(FIELDS)})")
            values = [v for v in value.split(",") if v]
            if not values:
                raise QueryError(f"{key} needs a value")
            got[key].extend(values)
        verdicts = []
        for v in got["verdict"]:
            if v.lower() not in VERDICT_WORDS:
                raise QueryError(f"verdict {v!r}: use allowed or denied")
            verdicts.append(VERDICT_WORDS[v.lower()])
        ports = []
        for p in got["port"]:
            if not p.isdigit() or not 0 < int(p) < 65536:
                raise QueryError(f"port {p!r}: use a number 1-65535")
            ports.append(int(p))
        return cls(
            verdict=tuple(verdicts),
            from_=tuple(got["from"]),
            to=tuple(got["to"]),
            port=tuple(ports),
            network=tuple(got["network"]),
            node=tuple(got["node"]),
            protocol=tuple(p.lower() for p in got["protocol"]),
            words=tuple(got["words"]),
            text=text.strip(),
        )

    def is_empty(self) -> bool:
        return not (
            self.verdict
            or self.from_
            or self.to
            or self.port
            or self.network
            or self.node
            or self.protocol
            or self.words
        )

    def matches(self, rec: FlowEntry) -> bool:
        r = rec.record
        if self.verdict and r.get("verdict") not in self.verdict:
            return False
        if self.protocol and str(r.get("protocol", "")).lower() not in self.protocol:
            return False
        if self.port and r.get("dport") not in self.port and r.get("sport") not in self.port:
            return False
        if self.node and rec.node not in self.node:
            return False
        if self.network and not set(self.network) & set(flow_networks(r)):
            return False
        if self.from_ and not any(
            match_end(t, r.get("src", ""), r.get("src_endpoint")) for t in self.from_
        ):
            return False
        if self.to and not any(
            match_end(t, r.get("dst", ""), r.get("dst_endpoint")) for t in self.to
        ):
            return False
        if self.words:
            line = " ".join(rec.cells).lower()
            if not all(w in line for w in self.words):
                return False
        return True


def match_end(term: str, address: str, endpoint: dict[str, Any] | None) -> bool:
    """Does one `from`/`to` term name this end of a flow?"""
    kind, _, value = term.partition(":") if ":" in term else ("", "", term)
    if kind not in ("", "pod", "ep", "net", "ip", "profile", "ns"):
        kind, value = "", term  # e.g. an IPv6 address
    ep = endpoint or {}
    if kind in ("", "ip"):
        try:
            if "/" in value:
                if ipaddress.ip_address(address) in ipaddress.ip_network(value, strict=False):
                    return True
            elif ipaddress.ip_address(value) == ipaddress.ip_address(address):
                return True
        except ValueError:
            pass
        if kind == "ip":
            return False
    if kind in ("", "pod") and ep.get("pod") and str(ep["pod"]).startswith(value):
        return True
    if kind in ("", "ep") and value in str(ep.get("name") or ""):
        return True
    if kind in ("", "net") and value in (ep.get("network"), *(ep.get("networks") or ())):
        return True
    if kind in ("", "profile") and value in (ep.get("profiles") or ()):
        return True
    return kind == "ns" and value == ep.get("namespace")


def flow_networks(r: dict[str, Any]) -> list[str]:
    nets = []
    for side in ("src_endpoint", "dst_endpoint"):
        ep = r.get(side) or {}
        for n in (ep.get("network"), *(ep.get("networks") or ())):
            if n and n not in nets:
                nets.append(n)
    return nets


def flow_network(r: dict[str, Any]) -> str:
    """The one network a flow is counted under: the destination's, else the source's."""
    for side in ("dst_endpoint", "src_endpoint"):
        ep = r.get(side) or {}
        if ep.get("network"):
            return str(ep["network"])
    return HOST


def end_text(address: str, port: Any, endpoint: dict[str, Any] | None) -> str:
    """`192.168.0.66:40001 network2`: the address, and the network when it is a workload
    (the pod and endpoint are in the record's details)."""
    where = f"{address}:{port}" if port not in (None, "") else str(address)
    if not endpoint:
        return where
    net = endpoint.get("network") or ""
    return f"{where} {net}" if net else where


def deciding_rule_text(r: dict[str, Any]) -> str:
    """The DECIDED BY cell: which rule of which policy or profile the agent says decided the
    flow (`profile network1 ingress rule 0`), not the rule's words (calico.policy.describe_rule
    phrases those)."""
    if r.get("rule_text"):
        return str(r["rule_text"])
    rule = r.get("rule")
    if not rule:
        return "-"
    if isinstance(rule, dict):
        kind, name = rule.get("kind", ""), rule.get("name", "")
        idx = rule.get("rule_index")
        tail = f" rule {idx}" if idx is not None else ""
        return f"{kind} {name}{tail}".strip() or "-"
    return str(rule)


@dataclass
class FlowEntry:
    """One flow record as received, from one node, with its table cells made once."""

    seq: int
    node: str
    record: dict[str, Any]
    cells: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        return str(self.record.get("verdict", ""))


COLUMNS = ("TIME", "SOURCE", "DESTINATION", "VERDICT", "DECIDED BY", "NODE")


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

    def newest_first(self, query: FlowQuery | None = None) -> Iterator[FlowEntry]:
        for entry in reversed(self.entries):
            if query is None or query.matches(entry):
                yield entry

    def networks(self) -> list[str]:
        return sorted(self.rates, key=lambda n: (n == HOST, n))
