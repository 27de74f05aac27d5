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

import datetime
import functools
import ipaddress
import re
import shlex
import time
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
    "since",
    "until",
)
# The time window's fields: one value each, a time (see `parse_time`), never negated.
TIME_FIELDS = ("since", "until")
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


# A filter's terms and a ring's addresses repeat: parsing each once made an address or CIDR
# term about 3x cheaper (45 -> 14 ms for 2,000 records, bench/bench_flow_queries.py), which
# the console pays on every redraw of its 2,000 kept flows and an agent on every record it
# streams.
@functools.lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=256)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


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
        if "/" in value:
            net, addr = _network(value), _address(address)
            if net is not None and addr is not None and addr in net:
                return True
        else:
            addr = _address(value)
            if addr is not None and addr == _address(address):
                return True
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


# ---------------------------------------------------------------- the time window

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?")
# A plain number is a Unix time only from 2001-09-09 on (10 digits): `since:300` is far
# more likely a duration missing its unit than a time in 1970, so that is an error.
_EPOCH_MIN = 1e9


def parse_duration(text: str) -> float | None:
    """``90s``, ``5m``, ``1h30m``, ``2d``, ``250ms`` -> seconds; None if `text` is not one."""
    text = text.strip().lower()
    if not text or _DURATION.sub("", text):
        return None
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))


def parse_time(text: str | float | int, now: float | None = None) -> float:
    """A point in time as `hubble observe --since/--until` take it, as a Unix time.

    A duration means that long before `now` (``5m``); ``now``; a Unix time (10 digits or
    more, fraction allowed: the node API's own form); an ISO 8601 / RFC 3339 stamp
    (``2026-12-02T14:05:00Z``; local time without a zone); or a clock time today, local
    (``14:05``, ``14:05:30``: what the console's TIME column shows). Raises QueryError."""
    now = time.time() if now is None else now
    if isinstance(text, int | float):
        return float(text)
    value = text.strip()
    if value.lower() == "now":
        return now
    ago = parse_duration(value)
    if ago is not None:
        return now - ago
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if number < _EPOCH_MIN:
            raise QueryError(
                f"time {value!r}: a duration needs a unit ({value}s, {value}m) and a Unix "
                "time has 10 digits"
            )
        return number
    clock = _CLOCK.fullmatch(value)
    if clock:
        hh, mm, ss, frac = clock.groups()
        day = datetime.datetime.fromtimestamp(now)
        try:
            at = day.replace(hour=int(hh), minute=int(mm), second=int(ss or 0), microsecond=0)
        except ValueError:
            raise QueryError(f"time {value!r}: not a clock time") from None
        return at.timestamp() + (float(frac) if frac else 0.0)
    try:
        stamp = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(
            f"time {value!r}: use a duration (5m, 1h30m), a clock time (14:05), an ISO "
            "8601 stamp (2026-12-02T14:05:00Z) or a Unix time"
        ) from None
    return stamp.timestamp()  # a naive stamp is local time, as the TIME column shows it


def clock_text(when: float, now: float | None = None) -> str:
    """A time as the console and calicoctl show a window's end or a group's first and last
    seen: the time of day, with the date when it is not the day of `now`."""
    at = datetime.datetime.fromtimestamp(when)
    today = datetime.datetime.fromtimestamp(time.time() if now is None else now).date()
    if at.date() == today:
        return at.strftime("%H:%M:%S")
    return at.strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class FlowFilter:
    """Fields AND'ed, values of one field OR'ed, like `hubble observe`; empty matches all.

    `from_`/`to` terms name an end (see `match_end`); `endpoint` either end, `port` either
    port (like hubble's ``--port``), `network` either end's network; `from_port`/`to_port`
    one side's port; `rule` a substring of the deciding rule's name or text. `node` (the
    node that sent the record) and `words` (bare words, each somewhere in the row) need the
    console's view of a record (see `matches`). `text` is what was typed, for showing it
    again; it is not part of the filter (two filters that match alike are equal).

    `since`/`until` are the time window, Unix times (inclusive; None: open). `exclude` is
    the negated part (hubble's ``--not``, or ``!`` before a term): one single-field filter
    per negated field, its values OR'ed; a flow any of them matches is not kept, so
    ``--not --verdict ALLOWED --not --to-port 53`` keeps denied flows to any port but 53.
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
    since: float | None = None
    until: float | None = None
    exclude: tuple[FlowFilter, ...] = ()
    text: str = field(default="", compare=False)

    # ------------------------------------------------------------ from text

    @classmethod
    def parse(cls, text: str, now: float | None = None) -> FlowFilter:
        """From what an operator types: ``key:value``, ``key=value``, hubble's ``--key value``
        / ``--key=value`` (``--from-pod X`` is ``from:pod:X``, ``--pod X`` is
        ``endpoint:pod:X``), comma lists, and bare words. ``--not`` (hubble's) or a ``!``
        in front of a term negates that one term (see `exclude`); ``since:``/``until:``
        (``--since 5m``) bound the window, resolved against `now` once, here, as hubble
        resolves ``--since 5m`` when it starts. Raises QueryError."""
        try:
            tokens = shlex.split(text)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        got: dict[str, list[str]] = {k: [] for k in (*FIELDS, "words")}
        negated: dict[str, list[str]] = {}
        negate = ""  # the token that negates the next term, until that term comes
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            i += 1
            if tok == "--not":
                if negate:
                    raise QueryError(f"{negate} {tok}: negate a filter once")
                negate = tok
                continue
            if tok.startswith("!") and len(tok) > 1:
                if negate:
                    raise QueryError(f"{negate} {tok}: negate a filter once")
                negate, tok = "!", tok[1:]
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
            book = got
            if negate:
                if key in TIME_FIELDS:
                    raise QueryError(f"{negate} {key}: a window is not negated (use the other end)")
                book = negated
                negate = ""
            if not key:
                book.setdefault("words", []).append(value.lower())
                continue
            if key not in FIELDS:
                raise QueryError(f"unknown filter {key!r} (use {', '.join(FIELDS)}, --not)")
            values = [v for v in value.split(",") if v]
            if not values:
                raise QueryError(f"{key} needs a value")
            book.setdefault(key, []).extend(values)
        if negate:
            raise QueryError(f"{negate} needs a filter after it")
        window: dict[str, float | None] = {}
        for key in TIME_FIELDS:
            if len(got[key]) > 1:
                raise QueryError(f"{key}: give one time, not {', '.join(got[key])}")
            window[key] = parse_time(got[key][0], now) if got[key] else None
        exclude = tuple(cls._from_text(dict(((k, v),))) for k, v in sorted(negated.items()))
        return replace(cls._from_text(got), exclude=exclude, text=text.strip(), **window)

    @classmethod
    def _from_text(cls, got: Mapping[str, list[str]]) -> FlowFilter:
        """The typed terms of each field (window aside) as a filter; values checked."""

        def terms(key: str) -> list[str]:
            return list(got.get(key) or ())

        verdicts = []
        for v in terms("verdict"):
            if v.lower() not in VERDICT_WORDS:
                raise QueryError(f"verdict {v!r}: use allowed or denied")
            verdicts.append(VERDICT_WORDS[v.lower()])
        return cls(
            verdict=tuple(verdicts),
            from_=tuple(terms("from")),
            to=tuple(terms("to")),
            endpoint=tuple(terms("endpoint")),
            port=_text_ports(terms("port")),
            from_port=_text_ports(terms("from-port")),
            to_port=_text_ports(terms("to-port")),
            network=tuple(terms("network")),
            node=tuple(terms("node")),
            protocol=tuple(p.lower() for p in terms("protocol")),
            rule=tuple(terms("rule")),
            words=tuple(terms("words")),
        )

    # ------------------------------------------------------------ the node API's query

    @classmethod
    def from_query(cls, query: Mapping[str, Any], now: float | None = None) -> FlowFilter:
        """From the node API's query parameters (``verdict``, ``from``, ``to``,
        ``endpoint``/``pod``, ``port``, ``from-port``, ``to-port``, ``network``,
        ``protocol``, ``rule``; ``since``/``until``, a time as `parse_time` reads it;
        ``not-<field>`` for a negated field); each a string, a comma list or a list. Other
        parameters are not the filter's and are ignored. Raises QueryError naming the bad
        parameter."""

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
        window: dict[str, float | None] = {}
        for key in TIME_FIELDS:
            values = get(key)
            if len(values) > 1:
                raise QueryError(f"{key}: one time, not {len(values)}")
            try:
                window[key] = parse_time(values[0], now) if values else None
            except QueryError as exc:
                raise QueryError(f"{key}: {exc}") from None
        exclude = []
        for name in sorted(query):
            if not name.startswith("not-"):
                continue
            key = name[len("not-") :]
            negatable = set(FIELDS) - set(TIME_FIELDS) - set(VIEW_FIELDS)
            if key.replace("_", "-") not in negatable | {"pod"}:
                raise QueryError(f"{name}: not a field the agent can negate")
            part = cls.from_query({key: query[name]})
            if not part.is_empty():
                exclude.append(part)
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
            exclude=tuple(exclude),
            **window,
        )

    def to_query(self) -> dict[str, str]:
        """The node API's query for this filter, empty fields left out, values comma-joined
        (no term holds a comma: both parsers split on them); the window as Unix times, each
        negated field as ``not-<field>``. `node` and `words` are left out (see
        `VIEW_FIELDS`), negated or not: `from_query(f.to_query()) == f.for_agent()`."""
        out: dict[str, str] = {}
        for f in fields(self):
            if f.name in (*VIEW_FIELDS, *TIME_FIELDS, "exclude", "text"):
                continue
            values = getattr(self, f.name)
            if values:
                out[f.name.rstrip("_").replace("_", "-")] = ",".join(str(v) for v in values)
        for key in TIME_FIELDS:
            when = getattr(self, key)
            if when is not None:
                out[key] = repr(float(when))
        for part in self.for_agent().exclude:
            for key, value in part.to_query().items():
                out[f"not-{key}"] = value
        return out

    def for_agent(self) -> FlowFilter:
        """The part of this filter a node's agent can apply: all but `node` and `words`, and
        but negations of those (the agent then sends more, never less, and the console
        applies the whole filter to what comes)."""
        exclude = tuple(x for x in self.exclude if not (x.node or x.words))
        return replace(self, node=(), words=(), exclude=exclude, text="")

    def window_text(self, now: float | None = None) -> str:
        """The window in words (``since 14:02:11``, ``14:00:00 → 14:05:00``), or ""."""
        if self.since is None and self.until is None:
            return ""
        if self.until is None:
            return f"since {clock_text(self.since, now)}"  # type: ignore[arg-type]
        if self.since is None:
            return f"until {clock_text(self.until, now)}"
        return f"{clock_text(self.since, now)} → {clock_text(self.until, now)}"

    # ------------------------------------------------------------ matching

    def is_empty(self) -> bool:
        return not any(
            getattr(self, f.name) not in (None, ()) for f in fields(self) if f.name != "text"
        )

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
        if self.since is not None or self.until is not None:
            when = _get(r, "time")
            if not isinstance(when, int | float):
                return False
            if self.since is not None and when < self.since:
                return False
            if self.until is not None and when > self.until:
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
        return not any(x.matches(flow) for x in self.exclude)


def matches_any(filters: FlowFilter | Iterable[FlowFilter] | None, flow: Any) -> bool:
    """True when there is no filter or any one of them matches (hubble's allow-list: several
    ``--filter`` flags are alternatives)."""
    if filters is None:
        return True
    if isinstance(filters, FlowFilter):
        return filters.matches(flow)
    flist = list(filters)
    return not flist or any(f.matches(flow) for f in flist)
