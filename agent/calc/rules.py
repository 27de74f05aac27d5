"""A Calico rule as iptables rules: matches, the verdict targets, the flow-log NFLOG rules.

Semantics are those of `calico.policy` (the console's truth). Inside a policy chain Allow
sets the accept bit and returns, Deny drops, Pass sets the pass bit and returns, Log logs
and carries on; inside a profile chain Pass just returns, so the next profile runs (as
`calico.policy` has it).

Selector membership lives in ipsets (`cali40s:<hash>`, hash:net of the selected endpoints'
addresses, cluster-wide), so one selector is one `-m set` match whatever the number of pods;
lists of several CIDRs become `cali40n:<hash>` sets and named ports `cali40p:<hash>`
(hash:ip,port of every endpoint port with that name).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.calc.model import IPSet, IptRule
from agent.calc.names import ACCEPT_MARK, PASS_MARK, ipset_name, mark_match, set_mark
from agent.calc.origin import RuleOrigin
from agent.flows.prefix import NFLOG_GROUP
from calico.policy import PolicySet
from calico.protocols import PORT_PROTOCOLS, iptables_token, protocol_number
from calico.resources import EntityRule, ICMPFields, Rule, WorkloadEndpoint, parse_port
from calico.selector import Selector, parse

LOG_PREFIX = "calico-packet: "
MULTIPORT_SLOTS = 15  # a range takes two

# Rules every part of the calculation uses.
CT_ESTABLISHED = IptRule(("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"), ("-j", "ACCEPT"))
CT_INVALID = IptRule(("-m", "conntrack", "--ctstate", "INVALID"), ("-j", "DROP"))
DROP = IptRule((), ("-j", "DROP"))
RETURN_IF_ACCEPTED = IptRule(mark_match(ACCEPT_MARK, ACCEPT_MARK), ("-j", "RETURN"))
RETURN_IF_PASSED = IptRule(mark_match(PASS_MARK, PASS_MARK), ("-j", "RETURN"))


def nflog_rule(origin: RuleOrigin, match: tuple[str, ...] = ()) -> IptRule:
    """Report a denied NEW packet to the flow log before it is dropped (contract in
    agent/flows/nflog.py: the prefix names the direction, policy/profile and rule, and is
    made from the rule's origin, so the flow log and the node API name the same rule)."""
    prefix = origin.nflog_prefix()
    return IptRule(
        (*match, "-m", "conntrack", "--ctstate", "NEW"),
        (
            "-j",
            "NFLOG",
            "--nflog-group",
            str(NFLOG_GROUP),
            "--nflog-prefix",
            prefix,
            "--nflog-threshold",
            "1",
        ),
        origin,
    )


def v4_nets(nets: tuple[str, ...]) -> tuple[str, ...]:
    """The IPv4 networks among `nets`, normalised, sorted, without repeats.

    Parsing addresses was a third of a 1,000-endpoint calculation before it was memoized:
    the calculator keeps an LRU of this (`Calculator.v4_nets`) and hands it to rendering."""
    out = []
    for text in nets:
        if _plain_host(text):  # nearly every endpoint: "a.b.c.d/32", already normal
            out.append(text)
            continue
        net = ipaddress.ip_network(text, strict=False)
        if net.version == 4:
            out.append(str(net))
    return tuple(sorted(set(out)))


def _plain_host(text: str) -> bool:
    """`a.b.c.d/32` written as ipaddress would write it (no leading zeros, each octet
    <= 255): 0.3 µs here against 45 µs for parsing and printing it back."""
    addr, slash, plen = text.partition("/")
    if plen != "32":
        return False
    octets = addr.split(".")
    return len(octets) == 4 and all(
        o.isdigit() and o.isascii() and (o == "0" or o[0] != "0") and int(o) <= 255 for o in octets
    )


def normalize_member(text: str) -> str:
    """ipset's own spelling of a hash:net member: a /32 without its prefix length."""
    return text[:-3] if text.endswith("/32") else text


def multiport_chunks(ranges: list[tuple[int, int]]) -> list[str]:
    chunks, current, used = [], [], 0
    for lo, hi in sorted(set(ranges)):
        cost = 1 if lo == hi else 2
        if used + cost > MULTIPORT_SLOTS:
            chunks.append(",".join(current))
            current, used = [], 0
        current.append(str(lo) if lo == hi else f"{lo}:{hi}")
        used += cost
    if current:
        chunks.append(",".join(current))
    return chunks


@dataclass
class RenderContext:
    """What rendering needs about the whole cluster, made once per calculation; it collects
    the ipsets the rendered rules name and the warnings about rules that cannot be rendered."""

    policy_set: PolicySet
    labels: list[tuple[WorkloadEndpoint, dict[str, str]]]
    v4_nets: Callable[[tuple[str, ...]], tuple[str, ...]]  # the calculator's memoized v4_nets
    ipsets: dict[str, IPSet] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def selector_set(
        self,
        selector: Selector | None,
        scope_namespace: str | None,
        namespace_selector: Selector | None,
    ) -> str:
        """The hash:net set of every endpoint address the endpoint-selecting parts match."""
        key = (
            f"sel={selector if selector is not None else '-'}"
            f"|ns={scope_namespace or '-'}"
            f"|nssel={namespace_selector if namespace_selector is not None else '-'}"
        )
        name = ipset_name("s", key)
        if name in self.ipsets:
            return name
        members: set[str] = set()
        ns_cache: dict[str, bool] = {}
        for ep, labels in self.labels:
            namespace = ep.metadata.namespace or "default"
            if scope_namespace is not None and namespace != scope_namespace:
                continue
            if namespace_selector is not None:
                if namespace not in ns_cache:
                    ns_cache[namespace] = namespace_selector.evaluate(
                        self.policy_set.namespace_labels_of(namespace)
                    )
                if not ns_cache[namespace]:
                    continue
            if selector is not None and not selector.evaluate(labels):
                continue
            members.update(normalize_member(n) for n in self.v4_nets(tuple(ep.spec.ip_networks)))
        self.ipsets[name] = IPSet(name, "hash:net", frozenset(members))
        return name

    def nets_set(self, nets: Sequence[str]) -> str:
        name = ipset_name("n", "nets=" + ",".join(nets))
        if name not in self.ipsets:
            members = frozenset(normalize_member(n) for n in nets)
            self.ipsets[name] = IPSet(name, "hash:net", members)
        return name

    def named_port_set(self, names: list[str]) -> str:
        name = ipset_name("p", "ports=" + ",".join(sorted(names)))
        if name in self.ipsets:
            return name
        wanted = set(names)
        members = set()
        for ep, _ in self.labels:
            addrs = [
                str(ipaddress.ip_interface(n).ip) for n in self.v4_nets(tuple(ep.spec.ip_networks))
            ]
            for port in ep.spec.ports:
                if port.name not in wanted:
                    continue
                number = protocol_number(port.protocol or "TCP")
                if number not in PORT_PROTOCOLS:
                    continue
                proto = iptables_token(number)
                members.update(f"{a},{proto}:{port.port}" for a in addrs)
        self.ipsets[name] = IPSet(name, "hash:ip,port", frozenset(members))
        return name


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def _entity_alternatives(
    ent: EntityRule, role: str, policy_namespace: str | None, ctx: RenderContext
) -> list[tuple[str, ...]] | None:
    """Match tokens for one side of a rule, as alternatives (OR); None: can never match."""
    flag, direction = ("-s", "src") if role == "source" else ("-d", "dst")
    port_flag = "--sports" if role == "source" else "--dports"
    base: list[str] = []

    if ent.nets:
        nets = ctx.v4_nets(tuple(ent.nets))
        if not nets:
            return None  # IPv6 nets only: no IPv4 packet matches
        if len(nets) == 1:
            base += [flag, nets[0]]
        else:
            base += ["-m", "set", "--match-set", ctx.nets_set(nets), direction]
    not_nets = ctx.v4_nets(tuple(ent.not_nets))
    if not_nets:
        if len(not_nets) == 1 and not ent.nets:
            base += ["!", flag, not_nets[0]]
        else:
            base += ["-m", "set", "!", "--match-set", ctx.nets_set(not_nets), direction]

    selector = None if _blank(ent.selector) else parse(ent.selector)
    not_selector = None if _blank(ent.not_selector) else parse(ent.not_selector)
    ns_selector = None if _blank(ent.namespace_selector) else parse(ent.namespace_selector)
    # calico.policy: a namespaced policy's selectors only see its own namespace.
    scope = None
    if policy_namespace and ns_selector is None and (selector or not_selector):
        scope = policy_namespace
    if selector is not None or ns_selector is not None or scope is not None:
        name = ctx.selector_set(selector, scope, ns_selector)
        base += ["-m", "set", "--match-set", name, direction]
    if not_selector is not None:
        name = ctx.selector_set(not_selector, None, None)
        base += ["-m", "set", "!", "--match-set", name, direction]

    # notPorts: every chunk must miss (AND of negations).
    if ent.not_ports:
        parsed = [parse_port(p) for p in ent.not_ports]
        numeric = [p for p in parsed if isinstance(p, tuple)]
        named = [p for p in parsed if isinstance(p, str)]
        for chunk in multiport_chunks(numeric):
            base += ["-m", "multiport", "!", port_flag, chunk]
        if named:
            name = ctx.named_port_set(named)
            base += ["-m", "set", "!", "--match-set", name, f"{direction},{direction}"]

    # ports: any chunk may match (OR): one alternative per chunk.
    if not ent.ports:
        return [tuple(base)]
    parsed = [parse_port(p) for p in ent.ports]
    numeric = [p for p in parsed if isinstance(p, tuple)]
    named = [p for p in parsed if isinstance(p, str)]
    alts = [(*base, "-m", "multiport", port_flag, chunk) for chunk in multiport_chunks(numeric)]
    if named:
        name = ctx.named_port_set(named)
        alts.append((*base, "-m", "set", "--match-set", name, f"{direction},{direction}"))
    return alts


def render_rule_matches(
    rule: Rule, policy_namespace: str | None, ctx: RenderContext
) -> list[tuple[str, ...]]:
    """A Calico rule as iptables match alternatives (OR); [] when it can never match IPv4."""
    if rule.ip_version == 6:
        return []
    proto = None if rule.protocol is None else protocol_number(rule.protocol)
    not_proto = None if rule.not_protocol is None else protocol_number(rule.not_protocol)
    icmp = rule.icmp if rule.icmp is not None and rule.icmp.type is not None else None
    if rule.icmp is not None and rule.icmp.type is None and rule.icmp.code is not None:
        ctx.warnings.append("an ICMP code without a type cannot be rendered; rule ignored")
        return []
    if icmp is not None:
        if proto is None:
            proto = 1
        elif proto != 1:
            return []  # an ICMP type on a non-ICMP protocol matches nothing
    if proto is not None and not_proto is not None:
        if proto == not_proto:
            return []
        not_proto = None  # implied by the positive protocol
    not_icmp = rule.not_icmp
    if not_icmp is not None and not_icmp.type is None:
        if not_icmp.code is None:
            return []  # excludes every flow
        ctx.warnings.append("an ICMP code without a type cannot be rendered; notICMP ignored")
        not_icmp = None
    if not_icmp is not None and proto is not None and proto != 1:
        not_icmp = None  # only ICMP packets can be excluded by it

    heads: list[tuple[str, ...]] = []
    if not_icmp is not None and proto is None:
        # "not (ICMP with this type)": either not ICMP at all, or ICMP of another type.
        if not_proto == 1:
            heads.append(("!", "-p", "icmp"))
        elif not_proto is not None:
            ctx.warnings.append("notProtocol with notICMP cannot be rendered; notICMP ignored")
            heads.append(("!", "-p", iptables_token(not_proto)))
        else:
            heads.append(("!", "-p", "icmp"))
            heads.append(("-p", "icmp", "-m", "icmp", "!", "--icmp-type", _icmp_text(not_icmp)))
    else:
        head: list[str] = []
        if proto is not None:
            head += ["-p", iptables_token(proto)]
        elif not_proto is not None:
            head += ["!", "-p", iptables_token(not_proto)]
        if icmp is not None:
            head += ["-m", "icmp", "--icmp-type", _icmp_text(icmp)]
        if not_icmp is not None:
            head += ["-m", "icmp", "!", "--icmp-type", _icmp_text(not_icmp)]
        heads.append(tuple(head))

    src = _entity_alternatives(rule.source, "source", policy_namespace, ctx)
    dst = _entity_alternatives(rule.destination, "destination", policy_namespace, ctx)
    if src is None or dst is None:
        return []
    out = []
    for h in heads:
        for s in src:
            for d in dst:
                out.append((*h, *s, *d))
    return out


def _icmp_text(icmp: ICMPFields) -> str:
    return str(icmp.type) if icmp.code is None else f"{icmp.type}/{icmp.code}"


def render_rules(
    rules: Sequence[Rule],
    ctx: RenderContext,
    *,
    direction: str,
    owner: str,
    policy_namespace: str | None = None,
    in_profile: bool = False,
) -> list[IptRule]:
    """A policy's or profile's rules for one direction, in order. `owner` (the policy's
    `ns/name` or the profile's name) goes into the flow log prefix of its Deny rules."""
    out: list[IptRule] = []
    kind = "pro" if in_profile else "pol"
    for index, rule in enumerate(rules):
        matches = render_rule_matches(rule, policy_namespace, ctx)
        if not matches:
            continue
        origin = RuleOrigin(kind, owner, direction, index)
        if rule.action == "Allow":
            out += [IptRule(m, set_mark(ACCEPT_MARK, ACCEPT_MARK), origin) for m in matches]
            out.append(from_origin(RETURN_IF_ACCEPTED, origin))
        elif rule.action == "Deny":
            for m in matches:
                out.append(nflog_rule(origin, m))
                out.append(IptRule(m, ("-j", "DROP"), origin))
        elif rule.action == "Pass":
            if in_profile:  # ends this profile; the endpoint chain goes on to the next
                out += [IptRule(m, ("-j", "RETURN"), origin) for m in matches]
            else:
                out += [IptRule(m, set_mark(PASS_MARK, PASS_MARK), origin) for m in matches]
                out.append(from_origin(RETURN_IF_PASSED, origin))
        elif rule.action == "Log":
            target = ("-j", "LOG", "--log-prefix", LOG_PREFIX, "--log-level", "5")
            out += [IptRule(m, target, origin) for m in matches]
    return out


def from_origin(rule: IptRule, origin: RuleOrigin | None) -> IptRule:
    """A shared rule (a mark test, a drop) stamped with the origin it serves here."""
    return IptRule(rule.match, rule.target, origin)
