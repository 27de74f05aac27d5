"""The Hubble-style flow filter: fields AND'ed, values of one field OR'ed, like `hubble observe`.

One definition for both ends of the flow stream. The console parses what an operator types
(`verdict:denied from:network2 to:192.168.0.100 port:80`, hubble's own `--verdict DROPPED
--from-pod X --to-ip Y --port 80`, or key=value) and can send it as the node API's
``/v1/flows`` query (`to_query`); the agent reads that query back (`from_query`) and applies
the very same matcher to its ring. Had the two ends their own filters, the agent would drop
records the console would have shown, so there is one.

A field's name is the same everywhere: the text key, the query parameter and, with ``-``
written ``_``, the attribute (``from`` is ``from_``, a Python keyword).

Pure: no project imports besides the verdict words, no sockets.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from calico.flowwords import VERDICT_WORDS

# What the text syntax knows, in the order the error message and the console's help list them.
FIELDS = (
    "verdict",
    "from",
    "to",
    "endpoint",
    "port",
    "from-port",
    "to-port",
    "network",
    "node",
    "protocol",
    "rule",
)
# Fields only the console's view can answer: which node sent a record, and the row's text.
# The agent holds only its own records and renders no rows, so these are never sent to it.
VIEW_FIELDS = ("node", "words")

# An end's term prefix -> the kind it names; the long spellings are the node API's.
_KINDS = {
    "pod": "pod",
    "ep": "ep",
    "endpoint": "ep",
    "net": "net",
    "network": "net",
    "ip": "ip",
    "profile": "profile",
    "ns": "ns",
}
# hubble's --from-<kind>/--to-<kind> flags, spelled as our prefixes
_HUBBLE_KINDS = {"namespace": "ns", "endpoint": "ep", "label": "net"}
# hubble's either-side flags (--pod X, --ip Y, --namespace Z) -> endpoint with that kind
_HUBBLE_EITHER = {"pod": "pod", "ip": "ip", "namespace": "ns"}


class QueryError(ValueError):
    """A filter that cannot be parsed; the message says which value and why.

    A ValueError, so callers that only know "bad input" (the node API answers 400) need not
    know this type."""


def _get(obj: Any, key: str) -> Any:
    """One field of a record or endpoint: the wire dict (``FlowRecord.to_dict``'s shape) or
    an object with those attributes (the agent's FlowRecord / EndpointInfo), so the agent
    can match its ring without making a dict of every record first."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def match_end(term: str, address: str, endpoint: Any) -> bool:
    """Does one `from`/`to`/`endpoint` term name this end of a flow?

    A bare term matches the address (exactly, or inside a CIDR), the endpoint's name (a
    substring: names are long), its pod (a uuid prefix, as rkt abbreviates them), a network
    or a profile; ``ip:``, ``ep:``/``endpoint:``, ``pod:``, ``net:``/``network:``,
    ``profile:`` and ``ns:`` say which. An unknown prefix (an IPv6 address) is a bare term.
    """
    kind, sep, value = term.partition(":")
    kind = _KINDS.get(kind, "") if sep else ""
    if not kind:
        value = term
    if kind in ("", "ip"):
        if value == address:
            return True
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
    if endpoint is None:
        return False
    pod = _get(endpoint, "pod")
    if kind in ("", "pod") and pod and str(pod).startswith(value):
        return True
    if kind in ("", "ep") and value in str(_get(endpoint, "name") or ""):
        return True
    if kind in ("", "net") and value in (
        _get(endpoint, "network"),
        *(_get(endpoint, "networks") or ()),
    ):
        return True
    if kind in ("", "profile") and value in (_get(endpoint, "profiles") or ()):
        return True
    return kind == "ns" and value == _get(endpoint, "namespace")


def flow_networks(record: Any) -> list[str]:
    """Every network of either end of a flow, each once, source first."""
    nets: list[str] = []
    for side in ("src_endpoint", "dst_endpoint"):
        ep = _get(record, side)
        for n in (_get(ep, "network"), *(_get(ep, "networks") or ())):
            if n and n not in nets:
                nets.append(n)
    return nets


def _split(value: Any) -> tuple[str, ...]:
    """A query value (a string, a number, a comma list, or a list of those) as its terms."""
    if value is None:
        return ()
    if isinstance(value, str | int):
        value = [value]
    out: list[str] = []
    for item in value:
        out.extend(part.strip() for part in str(item).split(",") if part.strip())
    return tuple(out)


def _port(item: str) -> int | None:
    return int(item) if item.isdigit() and int(item) <= 65535 else None


def _query_ports(value: Any, what: str) -> tuple[int, ...]:
    out = []
    for item in _split(value):
        port = _port(item)
        if port is None:
            raise QueryError(f"{what}: {item!r} is not a port number")
        out.append(port)
    return tuple(out)


def _text_ports(items: Iterable[str]) -> tuple[int, ...]:
    # typed by a person: port 0 is a slip, not a port anyone filters on
    out = []
    for p in items:
        port = _port(p)
        if not port:
            raise QueryError(f"port {p!r}: use a number 1-65535")
        out.append(port)
    return tuple(out)


@dataclass(frozen=True)
class FlowFilter:
    """Fields AND'ed, values of one field OR'ed, like `hubble observe`; empty matches all.

    `from_`/`to` terms name an end (see `match_end`); `endpoint` either end, `port` either
    port (like hubble's ``--port``), `network` either end's network; `from_port`/`to_port`
    one side's port; `rule` a substring of the deciding rule's name or text. `node` (the
    node that sent the record) and `words` (bare words, each somewhere in the row) need the
    console's view of a record (see `matches`). `text` is what was typed, for showing it
    again; it is not part of the filter (two filters that match alike are equal).
    """

    verdict: tuple[str, ...] = ()
    from_: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    endpoint: tuple[str, ...] = ()
    port: tuple[int, ...] = ()
    from_port: tuple[int, ...] = ()
    to_port: tuple[int, ...] = ()
    network: tuple[str, ...] = ()
    node: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()
    rule: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    text: str = field(default="", compare=False)

    # ------------------------------------------------------------ from text

    @classmethod
    def parse(cls, text: str) -> FlowFilter:
        """From what an operator types: ``key:value``, ``key=value``, hubble's ``--key value``
        / ``--key=value`` (``--from-pod X`` is ``from:pod:X``, ``--pod X`` is
        ``endpoint:pod:X``), comma lists, and bare words. Raises QueryError."""
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
                    if key.startswith(side + "-") and key not in FIELDS:
                        kind = key[len(side) + 1 :]
                        key, value = side, f"{_HUBBLE_KINDS.get(kind, kind)}:{value}"
                if key in _HUBBLE_EITHER:
                    key, value = "endpoint", f"{_HUBBLE_EITHER[key]}:{value}"
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
        return cls(
            verdict=tuple(verdicts),
            from_=tuple(got["from"]),
            to=tuple(got["to"]),
            endpoint=tuple(got["endpoint"]),
            port=_text_ports(got["port"]),
            from_port=_text_ports(got["from-port"]),
            to_port=_text_ports(got["to-port"]),
            network=tuple(got["network"]),
            node=tuple(got["node"]),
            protocol=tuple(p.lower() for p in got["protocol"]),
            rule=tuple(got["rule"]),
            words=tuple(got["words"]),
            text=text.strip(),
        )

    # ------------------------------------------------------------ the node API's query

    @classmethod
    def from_query(cls, query: Mapping[str, Any]) -> FlowFilter:
        """From the node API's query parameters (``verdict``, ``from``, ``to``,
        ``endpoint``/``pod``, ``port``, ``from-port``, ``to-port``, ``network``,
        ``protocol``, ``rule``); each a string, a comma list or a list. Other parameters are
        not the filter's and are ignored. Raises QueryError naming the bad parameter."""

        def get(*names: str) -> tuple[str, ...]:
            out: tuple[str, ...] = ()
            for name in names:
                out += _split(query.get(name))
            return out

        verdicts = []
        for v in get("verdict"):
            if v.lower() not in VERDICT_WORDS:
                raise QueryError(f"verdict: {v!r} is not one of allowed, denied")
            verdicts.append(VERDICT_WORDS[v.lower()])
        return cls(
            verdict=tuple(verdicts),
            from_=get("from", "from_"),
            to=get("to"),
            endpoint=get("endpoint", "pod"),
            port=_query_ports(query.get("port"), "port"),
            from_port=_query_ports(query.get("from-port", query.get("from_port")), "from-port"),
            to_port=_query_ports(query.get("to-port", query.get("to_port")), "to-port"),
            network=get("network"),
            protocol=tuple(p.lower() for p in get("protocol")),
            rule=get("rule"),
        )

    def to_query(self) -> dict[str, str]:
        """The node API's query for this filter, empty fields left out, values comma-joined
        (no term holds a comma: both parsers split on them). `node` and `words` are left
        out (see `VIEW_FIELDS`): `from_query(f.to_query()) == f.for_agent()`."""
        out: dict[str, str] = {}
        for f in fields(self):
            if f.name in (*VIEW_FIELDS, "text"):
                continue
            values = getattr(self, f.name)
            if values:
                out[f.name.rstrip("_").replace("_", "-")] = ",".join(str(v) for v in values)
        return out

    def for_agent(self) -> FlowFilter:
        """The part of this filter a node's agent can apply: all but `node` and `words`."""
        return replace(self, node=(), words=(), text="")

    # ------------------------------------------------------------ matching

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self) if f.name != "text")

    def matches(self, flow: Any) -> bool:
        """Does this filter keep `flow`?

        `flow` is one record, the wire dict (``FlowRecord.to_dict``'s shape) or an object
        with those attributes (the agent's FlowRecord), or the console's view of one: an
        object with `record`, `node` and `cells` (the row's text, for `words`). A bare
        record has no node and no row, so a filter with `node` or `words` keeps none.
        """
        if hasattr(flow, "record") and hasattr(flow, "cells"):
            r, node, line = flow.record, getattr(flow, "node", None), " ".join(flow.cells)
        else:
            r, node, line = flow, None, None
        if self.verdict and _get(r, "verdict") not in self.verdict:
            return False
        if self.protocol and str(_get(r, "protocol") or "").lower() not in self.protocol:
            return False
        sport, dport = _get(r, "sport"), _get(r, "dport")
        if self.port and dport not in self.port and sport not in self.port:
            return False
        if self.from_port and sport not in self.from_port:
            return False
        if self.to_port and dport not in self.to_port:
            return False
        if self.node and node not in self.node:
            return False
        if self.network and not set(self.network) & set(flow_networks(r)):
            return False
        src, src_ep = _get(r, "src") or "", _get(r, "src_endpoint")
        dst, dst_ep = _get(r, "dst") or "", _get(r, "dst_endpoint")
        if self.from_ and not any(match_end(t, src, src_ep) for t in self.from_):
            return False
        if self.to and not any(match_end(t, dst, dst_ep) for t in self.to):
            return False
        if self.endpoint and not any(
            match_end(t, src, src_ep) or match_end(t, dst, dst_ep) for t in self.endpoint
        ):
            return False
        if self.rule:
            rule = _get(r, "rule")
            name = str(rule.get("name", "")) if isinstance(rule, Mapping) else ""
            text = str(_get(r, "rule_text") or "")
            if not any(t in name or t in text for t in self.rule):
                return False
        if self.words:
            if line is None:
                return False
            line = line.lower()
            if not all(w in line for w in self.words):
                return False
        return True


def matches_any(filters: FlowFilter | Iterable[FlowFilter] | None, flow: Any) -> bool:
    """True when there is no filter or any one of them matches (hubble's allow-list: several
    ``--filter`` flags are alternatives)."""
    if filters is None:
        return True
    if isinstance(filters, FlowFilter):
        return filters.matches(flow)
    flist = list(filters)
    return not flist or any(f.matches(flow) for f in flist)
