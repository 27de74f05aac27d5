"""`:dataplane` as plain data: a node's (or one endpoint's) chains and rules as the agent
rendered them, their counters, where each rule came from, the ipsets and the routes.

No Textual and no sockets here. The screen (console/screens/dataplane.py) polls the node
API's `GET /v1/dataplane[?endpoint=]` and hands each answer to `parse_doc`; `table_rows`
makes the table, `moved` says which counters changed since the last answer (highlighted), `find_flow_rule` finds the rule a flow record names (a denied flow's
`rule` is its NFLOG prefix parsed, which equals the rule's `origin` by construction, see
agent/calc/origin.py), and `origin_resources` / `origin_text` say which policy or profile a
rule came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from calico.policy import describe_rule
from calico.resources import GlobalNetworkPolicy, NetworkPolicy, Profile, Resource
from console.model import ClusterState, Row

ORIGIN_KEYS = ("kind", "name", "direction", "rule_index")
_COMMENT_RE = re.compile(r'\s*-m comment --comment "?cali:[A-Za-z0-9_-]+"?')
_SET_RE = re.compile(r"--match-set (\S+)")
_TARGET_RE = re.compile(r"-[jg] (\S+)")
ROUTES_SHOWN = 200  # routes listed in the side pane; the rest are counted
MEMBERS_SHOWN = 50  # members listed per ipset; the rest are counted


@dataclass(frozen=True)
class RuleLine:
    """One rule of one chain, as the kernel holds it. `number` is 1-based, as `iptables -L
    --line-numbers` counts; `text` is the rule without `-A <chain>` and the agent's hash
    comment; `target` the verdict or chain it jumps to; `sets` the ipsets it matches on."""

    chain: str
    number: int
    packets: int
    bytes: int
    text: str
    target: str
    sets: tuple[str, ...] = ()
    origin: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.chain}#{self.number}"


@dataclass
class DataplaneDoc:
    """One answer of GET /v1/dataplane, parsed."""

    node: str
    chains: dict[str, list[RuleLine]] = field(default_factory=dict)
    ipsets: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    endpoint: dict[str, Any] | None = None

    def lines(self) -> Iterable[RuleLine]:
        for rules in self.chains.values():
            yield from rules

    def line(self, key: str) -> RuleLine | None:
        chain, _, number = key.rpartition("#")
        rules = self.chains.get(chain, [])
        n = int(number) if number.isdigit() else 0
        return rules[n - 1] if 0 < n <= len(rules) else None

    def shape(self) -> tuple[tuple[str, str], ...]:
        """What the table is made of (keys and texts): when it is unchanged, only counters
        moved and the screen updates cells instead of redrawing the table."""
        return tuple((r.key, r.text) for r in self.lines())


def parse_doc(data: dict[str, Any], node: str = "") -> DataplaneDoc:
    """A GET /v1/dataplane answer -> DataplaneDoc (a missing part is empty, not an error:
    an agent that has not applied yet has no ipsets)."""
    chains: dict[str, list[RuleLine]] = {}
    for chain, rules in (data.get("chains") or {}).items():
        out = []
        for n, r in enumerate(rules, start=1):
            text = str(r.get("rule", ""))
            text = text.removeprefix(f"-A {chain}").strip()
            text = _COMMENT_RE.sub("", text).strip()
            targets = _TARGET_RE.findall(text)
            out.append(
                RuleLine(
                    chain=chain,
                    number=n,
                    packets=int(r.get("packets") or 0),
                    bytes=int(r.get("bytes") or 0),
                    text=text,
                    target=targets[-1] if targets else "",
                    sets=tuple(dict.fromkeys(_SET_RE.findall(text))),
                    origin=r.get("origin"),
                )
            )
        chains[chain] = out
    return DataplaneDoc(
        node=str(data.get("node") or node),
        chains=chains,
        ipsets=dict(data.get("ipsets") or {}),
        routes=list(data.get("routes") or []),
        summary=dict(data.get("summary") or {}),
        endpoint=data.get("endpoint"),
    )


def human(n: int) -> str:
    """A counter in four characters or so: 999, 1.2K, 34K, 5.6M, 7.8G."""
    for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            value = n / size
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(n)


def origin_text(origin: dict[str, Any] | None) -> str:
    """`policy default/deny-81 ingress rule 1`, `profile network1 egress rule 0`,
    `end of policies ingress (allow-web)`, `default deny ingress (network1)`: the end-of-chain
    drops name every policy of the tier / every profile of the endpoint."""
    if not origin:
        return ""
    kind, name = origin.get("kind", ""), origin.get("name", "")
    direction, index = origin.get("direction", ""), origin.get("rule_index")
    if index is not None:
        return f"{kind} {name} {direction} rule {index}"
    if kind == "policy":
        return f"end of policies {direction} ({name})"
    if kind == "default":
        return f"default deny {direction} ({name or 'no profile'})"
    return f"{kind} {name} {direction}"


COLUMNS = ("#", "PACKETS", "BYTES", "RULE", "FROM")
CHAIN = "chain"  # the state of a chain's heading row (a rule row has none)


def table_rows(doc: DataplaneDoc) -> list[Row]:
    """Each chain (in the API's walk order) as a heading row (its name, its packets, how many
    rules), then its rules; a rule row's
    key is its RuleLine's (`<chain>#<n>`), so DataplaneDoc.line finds it again."""
    rows: list[Row] = []
    for chain, rules in doc.chains.items():
        total = sum(r.packets for r in rules)
        rows.append(
            Row(f"chain:{chain}", ("", human(total), "", chain, plural(len(rules), "rule")), CHAIN)
        )  # fmt: skip
        rows += [rule_row(r) for r in rules]
    return rows


def rule_row(r: RuleLine) -> Row:
    return Row(r.key, (*counter_cells(r), r.text, origin_text(r.origin)))


def counter_cells(r: RuleLine) -> tuple[str, ...]:
    return (str(r.number), human(r.packets), human(r.bytes))


def moved(old: DataplaneDoc | None, new: DataplaneDoc) -> set[str]:
    """Keys of the rules whose packet counter changed since `old`."""
    if old is None:
        return set()
    before = {r.key: r.packets for r in old.lines()}
    return {r.key for r in new.lines() if before.get(r.key, r.packets) != r.packets}


def _flow_rule(rule: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(rule, dict) or not all(k in rule for k in ORIGIN_KEYS):
        return None
    return {k: rule[k] for k in ORIGIN_KEYS}


def flow_endpoint(record: dict[str, Any]) -> str | None:
    """The endpoint whose chains decided a flow: the destination's for ingress, the
    source's for egress (the node that logged it is the one that holds those chains)."""
    rule = record.get("rule") if isinstance(record.get("rule"), dict) else {}
    direction = record.get("direction") or rule.get("direction")
    side = "src_endpoint" if direction == "egress" else "dst_endpoint"
    ep = record.get(side) or {}
    return str(ep["name"]) if ep.get("name") else None


def _same_origin(origin: dict[str, Any], wanted: dict[str, Any], rule: dict[str, Any]) -> bool:
    """Equal, or, for a name the 63-byte NFLOG prefix had to cut (`truncated`), the same
    kind, direction and index on a name that starts with the part the prefix kept."""
    have = _flow_rule(origin)
    if have == wanted:
        return True
    if not rule.get("truncated") or have is None:
        return False
    same_rest = all(have[k] == wanted[k] for k in ORIGIN_KEYS if k != "name")
    return same_rest and str(have["name"]).startswith(str(wanted["name"]))


def find_flow_rule(doc: DataplaneDoc, rule: dict[str, Any] | None) -> RuleLine | None:
    """The rule a flow record's `rule` names: for a deny the DROP (the NFLOG rule before it
    has the same origin and only logs), else the first rule of that origin that is not a
    log. None when the record names no rule, or no rule of that origin is there any more."""
    wanted = _flow_rule(rule)
    if wanted is None:
        return None
    same = [r for r in doc.lines() if r.origin and _same_origin(r.origin, wanted, rule)]
    for r in same:
        if r.target == "DROP":
            return r
    return next((r for r in same if r.target not in ("NFLOG", "LOG")), same[0] if same else None)


def origin_resources(state: ClusterState, origin: dict[str, Any] | None) -> list[Resource]:
    """The policy or profile(s) a rule came from, as the console has them: a policy's
    `ns/name` is a NetworkPolicy, a bare name a GlobalNetworkPolicy; an end-of-tier drop
    names every policy of the tier, a default deny every profile of the endpoint."""
    if not origin:
        return []
    kind, names = origin.get("kind"), [n for n in str(origin.get("name", "")).split(",") if n]
    out: list[Resource] = []
    for name in names:
        if kind == "policy":
            ns, _, plain = name.rpartition("/")
            for cls in (NetworkPolicy,) if ns else (GlobalNetworkPolicy, NetworkPolicy):
                found = [r for r in state.of_kind(cls) if r.metadata.name == plain
                         and (not ns or (r.metadata.namespace or "default") == ns)]  # fmt: skip
                if found:
                    out.append(found[0])
                    break
        else:
            out += [r for r in state.of_kind(Profile) if r.metadata.name == name]
    return out


def origin_details(line: RuleLine, resources: list[Resource]) -> str:
    """What opening a rule shows: where it came from, then each policy/profile's rules of
    that direction in words, the rule itself marked ▶."""
    origin = line.origin or {}
    text = [f"{line.chain} #{line.number}: {line.text}", f"from {origin_text(origin)}", ""]
    if not resources:
        text.append(
            f"{origin.get('kind', 'it')} {origin.get('name', '')} is not in the datastore "
            "(deleted since the agent rendered it?)"
        )
    direction = str(origin.get("direction", "ingress"))
    for res in resources:
        rules = getattr(res.spec, direction, [])
        ns = res.metadata.namespace if isinstance(res, NetworkPolicy) else None
        ident = f"{ns or 'default'}/{res.metadata.name}" if ns is not None else res.metadata.name
        text.append(f"{res.KIND} {ident}: {direction} rules ({len(rules)})")
        for i, rule in enumerate(rules):
            mark = "▶" if i == origin.get("rule_index") else " "
            text.append(f" {mark} {i}: {describe_rule(rule)}")
        if origin.get("rule_index") is None:
            text.append("   ▶ (end of chain): none of these rules decided, so the packet drops")
        text.append("")
    return "\n".join(text).rstrip() + "\n"


def detail_lines(doc: DataplaneDoc, line: RuleLine | None) -> list[tuple[str, str]]:
    """The side pane, as (text, style) lines: the selected rule, its origin, the ipsets it
    matches on with their members, then the routes (the endpoint's, or the node's)."""
    out: list[tuple[str, str]] = []
    ep = doc.endpoint
    if ep:
        out.append((f"endpoint {ep.get('name', '')}", "bold"))
        out.append((f"  {ep.get('interface', '')}  {', '.join(ep.get('ipNetworks', []))}", ""))
        out.append((f"  profiles {', '.join(ep.get('profiles', [])) or '-'}", ""))
        pols = [*ep.get("ingressPolicies", []), *ep.get("egressPolicies", [])]
        out.append((f"  policies {', '.join(dict.fromkeys(pols)) or '-'}", ""))
        out.append(("", ""))
    if line is not None:
        out.append((f"{line.chain} #{line.number}", "bold"))
        out.append((f"  {line.packets} packets, {line.bytes} bytes", ""))
        out.append((f"  {line.text}", ""))
        if line.origin:
            out.append((f"  from {origin_text(line.origin)}  (enter opens it)", "cyan"))
        for name in line.sets:
            s = doc.ipsets.get(name)
            if s is None:
                out.append((f"  ipset {name}: not the agent's", "yellow"))
                continue
            members = s.get("members", [])
            out.append((f"  ipset {name} ({s.get('type', '')}, {len(members)} members)", "bold"))
            out += [(f"    {m}", "") for m in members[:MEMBERS_SHOWN]]
            if len(members) > MEMBERS_SHOWN:
                out.append((f"    … {len(members) - MEMBERS_SHOWN} more", "dim"))
        out.append(("", ""))
    out.append((f"Routes ({len(doc.routes)})", "bold"))
    for r in doc.routes[:ROUTES_SHOWN]:
        out.append((f"  {route_text(r)}", ""))
    if len(doc.routes) > ROUTES_SHOWN:
        out.append((f"  … {len(doc.routes) - ROUTES_SHOWN} more", "dim"))
    return out


def route_text(r: dict[str, Any]) -> str:
    if r.get("kind") == "blackhole":
        return f"blackhole {r.get('dst')}"
    via = f" via {r['via']}" if r.get("via") else ""
    dev = f" dev {r['dev']}" if r.get("dev") else ""
    return f"{r.get('dst')}{via}{dev}"


def title_text(doc: DataplaneDoc | None, node: str, endpoint: str | None) -> str:
    what = f"endpoint {endpoint} on {node}" if endpoint else f"node {node}"
    if doc is None:
        return f"Dataplane of {what}"
    rules = sum(len(r) for r in doc.chains.values())
    counts = ((len(doc.chains), "chain"), (rules, "rule"), (len(doc.ipsets), "ipset"),
              (len(doc.routes), "route"))  # fmt: skip
    return f"Dataplane of {what}: " + ", ".join(plural(n, word) for n, word in counts)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
