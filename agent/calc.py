"""The desired dataplane of one node, as plain data, from the synced cluster state.

Pure: no I/O, no root. `calculate(inputs)` returns a `Dataplane` (filter-table chains with
hashed rules, ipsets with members, routes, the local endpoints); `agent.dataplane` turns the
difference between that and the kernel into one `iptables-legacy-restore --noflush`, one
`ipset restore` and one `ip -batch`.

Semantics are those of `calico.policy` (the console's truth), rendered in Felix's layout:

    INPUT   -> cali-INPUT   -> (-i cali+) cali-wl-to-host: established, else DROP
    OUTPUT  -> cali-OUTPUT  -> (-o cali+) RETURN: the host may reach its own workloads
    FORWARD -> cali-FORWARD -> clear our mark bits
                            -> cali+ RELATED,ESTABLISHED: ACCEPT; INVALID: DROP
                            -> (-i cali+) cali-from-wl-dispatch -> -g cali-fw-<iface> (egress)
                            -> (-o cali+) cali-to-wl-dispatch   -> -g cali-tw-<iface> (ingress)
                            -> accept mark set: ACCEPT

An endpoint chain (`cali-fw-`/`cali-tw-`) holds what is the endpoint's own, anti-spoofing
(fw only), then goes (-g) to the program chain shared by every endpoint with the same
policies and profiles (`cali-fp-<hash>`/`cali-tp-<hash>`), which runs (for NEW flows:
established ones were accepted at the top of cali-FORWARD): clear the accept/pass bits, then
each applicable
policy's chain (`cali-pi-`/`cali-po-`) in Calico order, skipped once the pass bit is set,
returning as soon as the accept bit is set; if policies applied and none allowed or passed, DROP
(end of tier); then each profile's chain (`cali-pri-`/`cali-pro-`) in the endpoint's order;
finally DROP (default deny). Sharing the program keeps the per-endpoint cost at about five
rules (two chains' worth plus dispatch), which matters because every legacy iptables commit
costs time in proportion to the whole table. Inside a policy chain Allow sets the accept bit and returns,
Deny drops, Pass sets the pass bit and returns, Log logs and carries on; inside a profile chain
Pass just returns, so the next profile runs (as `calico.policy` has it).

Selector membership lives in ipsets (`cali40s:<hash>`, hash:net of the selected endpoints'
addresses, cluster-wide), so one selector is one `-m set` match whatever the number of pods;
lists of several CIDRs become `cali40n:<hash>` sets and named ports `cali40p:<hash>`
(hash:ip,port of every endpoint port with that name). Every rule carries a comment
`cali:<hash>`, the hash chaining the chain name, the previous rule's hash and the rule text,
so comparing hash lists tells exactly which chains changed.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from agent.flows.prefix import NFLOG_GROUP, nflog_prefix
from calico.policy import EGRESS, INGRESS, PolicySet, applicable_policies
from calico.protocols import PORT_PROTOCOLS, iptables_token, protocol_number
from calico.resources import (
    GlobalNetworkPolicy,
    NetworkPolicy,
    Node,
    Profile,
    Rule,
    WorkloadEndpoint,
    parse_port,
)
from calico.selector import Selector, parse

# ---------------------------------------------------------------- constants

CHAIN_PREFIX = "cali-"
IFACE_PREFIX = "cali"
IPSET_PREFIX = "cali4"  # every set the agent owns: cali40s: / cali40n: / cali40p: and temps
TEMP_IPSET_PREFIX = "cali4t"
ROUTE_PROTO = 80  # `ip route ... proto 80`: only routes with this protocol are the agent's

ACCEPT_MARK = 0x10000
PASS_MARK = 0x20000
SCRATCH_MARK = 0x40000  # anti-spoofing with several addresses
ALL_MARKS = ACCEPT_MARK | PASS_MARK | SCRATCH_MARK

MAX_CHAIN_NAME = 28  # iptables: XT_EXTENSION_MAXNAMELEN - 1
MAX_IPSET_NAME = 31  # ipset: IPSET_MAXNAMELEN - 1
MULTIPORT_SLOTS = 15  # a range takes two
DISPATCH_FANOUT = 64  # more endpoints than this in a dispatch chain: split by next character
# Memo sizes bound what pod churn can pin in memory (a few KB per endpoint entry).
MEMO_ENDPOINTS = 20000

CHAIN_FORWARD = "cali-FORWARD"
CHAIN_INPUT = "cali-INPUT"
CHAIN_OUTPUT = "cali-OUTPUT"
CHAIN_FROM_DISPATCH = "cali-from-wl-dispatch"
CHAIN_TO_DISPATCH = "cali-to-wl-dispatch"
CHAIN_WL_TO_HOST = "cali-wl-to-host"
HOOKS = {"INPUT": CHAIN_INPUT, "FORWARD": CHAIN_FORWARD, "OUTPUT": CHAIN_OUTPUT}

LOG_PREFIX = "calico-packet: "

# What a workload may reach on its own node (INPUT from cali+). Nothing: the agent API and
# etcd must stay out of reach of pods, and DHCP/DNS are not served by the node. An entry is
# extra match tokens accepted before the final DROP, e.g. ("-p", "udp", "--dport", "53").
HOST_SERVICES_FROM_WORKLOADS: tuple[tuple[str, ...], ...] = ()

Policy = NetworkPolicy | GlobalNetworkPolicy


def _hash(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:length]


# ---------------------------------------------------------------- output data


@dataclass(frozen=True)
class IptRule:
    """One iptables rule: match tokens and target tokens (the comment is added on render)."""

    match: tuple[str, ...]
    target: tuple[str, ...]

    def spec(self) -> str:
        return " ".join(_quote(t) for t in (*self.match, *self.target))


def _quote(token: str) -> str:
    return f'"{token}"' if (" " in token or not token) else token


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[IptRule, ...]
    hashes: tuple[str, ...]

    def lines(self) -> list[str]:
        """`-A` lines for iptables-restore, each with its `cali:<hash>` comment."""
        out = []
        for rule, h in zip(self.rules, self.hashes, strict=True):
            match = " ".join(_quote(t) for t in rule.match)
            target = " ".join(_quote(t) for t in rule.target)
            parts = [f"-A {self.name}"]
            if match:
                parts.append(match)
            parts.append(f'-m comment --comment "cali:{h}"')
            parts.append(target)
            out.append(" ".join(parts))
        return out


def make_chain(name: str, rules: Iterable[IptRule]) -> Chain:
    rules = tuple(rules)
    return Chain(name, rules, _chain_hashes(name, rules))


def _chain_hashes(name: str, rules: tuple[IptRule, ...]) -> tuple[str, ...]:
    out = []
    prev = ""
    for rule in rules:
        prev = _hash(f"{name}\0{prev}\0{rule.spec()}", 16)
        out.append(prev)
    return tuple(out)


@dataclass(frozen=True)
class IPSet:
    name: str
    type: str  # hash:net | hash:ip,port
    members: frozenset[str]


@dataclass(frozen=True)
class Route:
    """A route the agent wants; `kind` is unicast or blackhole."""

    dst: str
    kind: str = "unicast"
    dev: str | None = None
    via: str | None = None

    def batch_args(self) -> str:
        """Arguments for `ip route replace` (without the protocol)."""
        if self.kind == "blackhole":
            return f"blackhole {self.dst}"
        if self.via:
            return f"{self.dst} via {self.via}"
        return f"{self.dst} dev {self.dev} scope link"


@dataclass(frozen=True)
class LocalEndpoint:
    namespace: str
    name: str
    orchestrator: str
    workload: str
    endpoint: str
    iface: str
    nets: tuple[str, ...]
    profiles: tuple[str, ...]
    ingress_policies: tuple[str, ...]
    egress_policies: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Dataplane:
    """Everything the agent wants the kernel to hold, for one node."""

    chains: dict[str, Chain] = field(default_factory=dict)
    hooks: dict[str, Chain] = field(default_factory=dict)  # built-in chain -> its one jump
    ipsets: dict[str, IPSet] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)  # by dst; agent-owned (proto 80)
    endpoint_routes: dict[str, Route] = field(default_factory=dict)  # /32 dev cali*: any proto
    endpoints: list[LocalEndpoint] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())

    def ipset_members(self) -> int:
        return sum(len(s.members) for s in self.ipsets.values())

    def summary(self) -> dict[str, int]:
        return {
            "endpoints": len(self.endpoints),
            "chains": len(self.chains),
            "rules": self.rule_count(),
            "ipsets": len(self.ipsets),
            "ipset_members": self.ipset_members(),
            "routes": len(self.routes) + len(self.endpoint_routes),
        }


# ---------------------------------------------------------------- input data


@dataclass
class Inputs:
    """The synced cluster state the calculation reads (what `agent.sync` keeps)."""

    node: str
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    policies: Sequence[Policy] = ()
    endpoints: Sequence[WorkloadEndpoint] = ()
    nodes: Mapping[str, Node] = field(default_factory=dict)
    blocks: Mapping[str, str | None] = field(default_factory=dict)  # block CIDR -> node
    # Hosts workloads must never reach, whatever policy says: the datastore's addresses.
    # (A pod that can talk to etcd can rewrite every policy; the node itself is covered by
    # cali-wl-to-host, etcd on another host needs this.)
    protected_hosts: tuple[str, ...] = ()

    def policy_set(self) -> PolicySet:
        return PolicySet(self.profiles.values(), self.policies, self.endpoints)


# ---------------------------------------------------------------- names


def chain_name(prefix: str, name: str) -> str:
    """`prefix + name`, or `prefix + "_" + hash` when that is longer than iptables allows.

    Resource names never start with "_", so a hashed name cannot collide with a plain one.
    """
    full = prefix + name
    if len(full) <= MAX_CHAIN_NAME:
        return full
    return prefix + "_" + _hash(name, MAX_CHAIN_NAME - len(prefix) - 1)


def policy_id(pol: Policy) -> str:
    """`namespace/name` for a NetworkPolicy, the plain name for a global one."""
    if isinstance(pol, NetworkPolicy):
        return f"{pol.metadata.namespace or 'default'}/{pol.metadata.name}"
    return pol.metadata.name


def policy_chain(pol: Policy, direction: str) -> str:
    return chain_name("cali-pi-" if direction == INGRESS else "cali-po-", policy_id(pol))


def profile_chain(name: str, direction: str) -> str:
    return chain_name("cali-pri-" if direction == INGRESS else "cali-pro-", name)


def endpoint_chain(iface: str, direction: str) -> str:
    return chain_name("cali-tw-" if direction == INGRESS else "cali-fw-", iface)


def ipset_name(kind: str, key: str) -> str:
    """`cali40<kind>:<hash of key>`, 31 characters."""
    prefix = f"{IPSET_PREFIX}0{kind}:"
    return prefix + _hash(key, MAX_IPSET_NAME - len(prefix))


def temp_ipset_name(name: str) -> str:
    """The scratch set used to replace `name` atomically (same length, `cali4t` prefix)."""
    return TEMP_IPSET_PREFIX + name[len(TEMP_IPSET_PREFIX) :]


def _mark(value: int, mask: int) -> tuple[str, ...]:
    return ("-m", "mark", "--mark", f"{value:#x}/{mask:#x}")


def _set_mark(value: int, mask: int) -> tuple[str, ...]:
    return ("-j", "MARK", "--set-xmark", f"{value:#x}/{mask:#x}")


def _nflog(
    direction: str, kind: str, name: str, index: int | None, match: tuple[str, ...] = ()
) -> IptRule:
    """Report a denied NEW packet to the flow log before it is dropped (contract in
    agent/flows/nflog.py: the prefix names the direction, policy/profile and rule)."""
    prefix = nflog_prefix("I" if direction == INGRESS else "E", kind, name or "-", index)
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
    )


_CT_ESTABLISHED = IptRule(("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"), ("-j", "ACCEPT"))
_CT_INVALID = IptRule(("-m", "conntrack", "--ctstate", "INVALID"), ("-j", "DROP"))
_DROP = IptRule((), ("-j", "DROP"))
_RETURN_IF_ACCEPTED = IptRule(_mark(ACCEPT_MARK, ACCEPT_MARK), ("-j", "RETURN"))
_RETURN_IF_PASSED = IptRule(_mark(PASS_MARK, PASS_MARK), ("-j", "RETURN"))


# ---------------------------------------------------------------- rule rendering


def _v4_nets(nets: Iterable[str]) -> list[str]:
    return list(_v4_nets_cached(tuple(nets)))


@lru_cache(maxsize=65536)
def _v4_nets_cached(nets: tuple[str, ...]) -> tuple[str, ...]:
    # Parsing addresses was a third of a 1,000-endpoint calculation before this cache.
    out = []
    for text in nets:
        net = ipaddress.ip_network(text, strict=False)
        if net.version == 4:
            out.append(str(net))
    return tuple(sorted(set(out)))


def normalize_member(text: str) -> str:
    """ipset's own spelling of a hash:net member: a /32 without its prefix length."""
    return text[:-3] if text.endswith("/32") else text


def _multiport_chunks(ranges: list[tuple[int, int]]) -> list[str]:
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
class _Ctx:
    """What rendering needs about the whole cluster, computed once per calculation."""

    policy_set: PolicySet
    labels: list[tuple[WorkloadEndpoint, dict[str, str]]]
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
            members.update(normalize_member(n) for n in _v4_nets(ep.spec.ip_networks))
        self.ipsets[name] = IPSet(name, "hash:net", frozenset(members))
        return name

    def nets_set(self, nets: list[str]) -> str:
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
            addrs = [str(ipaddress.ip_interface(n).ip) for n in _v4_nets(ep.spec.ip_networks)]
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
    ent, role: str, policy_namespace: str | None, ctx: _Ctx
) -> list[tuple[str, ...]] | None:
    """Match tokens for one side of a rule, as alternatives (OR); None: can never match."""
    flag, direction = ("-s", "src") if role == "source" else ("-d", "dst")
    port_flag = "--sports" if role == "source" else "--dports"
    base: list[str] = []

    if ent.nets:
        nets = _v4_nets(ent.nets)
        if not nets:
            return None  # IPv6 nets only: no IPv4 packet matches
        if len(nets) == 1:
            base += [flag, nets[0]]
        else:
            base += ["-m", "set", "--match-set", ctx.nets_set(nets), direction]
    not_nets = _v4_nets(ent.not_nets)
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
        for chunk in _multiport_chunks(numeric):
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
    alts = [(*base, "-m", "multiport", port_flag, chunk) for chunk in _multiport_chunks(numeric)]
    if named:
        name = ctx.named_port_set(named)
        alts.append((*base, "-m", "set", "--match-set", name, f"{direction},{direction}"))
    return alts


def render_rule_matches(
    rule: Rule, policy_namespace: str | None, ctx: _Ctx
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


def _icmp_text(icmp) -> str:
    return str(icmp.type) if icmp.code is None else f"{icmp.type}/{icmp.code}"


def render_rules(
    rules: Sequence[Rule],
    policy_namespace: str | None,
    in_profile: bool,
    ctx: _Ctx,
    direction: str = INGRESS,
    owner: str = "",
) -> list[IptRule]:
    """A policy's or profile's rules for one direction, in order. `owner` (the policy's
    `ns/name` or the profile's name) goes into the flow log prefix of its Deny rules."""
    out: list[IptRule] = []
    kind = "pro" if in_profile else "pol"
    for index, rule in enumerate(rules):
        matches = render_rule_matches(rule, policy_namespace, ctx)
        if not matches:
            continue
        if rule.action == "Allow":
            out += [IptRule(m, _set_mark(ACCEPT_MARK, ACCEPT_MARK)) for m in matches]
            out.append(_RETURN_IF_ACCEPTED)
        elif rule.action == "Deny":
            for m in matches:
                out.append(_nflog(direction, kind, owner, index, m))
                out.append(IptRule(m, ("-j", "DROP")))
        elif rule.action == "Pass":
            if in_profile:  # ends this profile; the endpoint chain goes on to the next
                out += [IptRule(m, ("-j", "RETURN")) for m in matches]
            else:
                out += [IptRule(m, _set_mark(PASS_MARK, PASS_MARK)) for m in matches]
                out.append(_RETURN_IF_PASSED)
        elif rule.action == "Log":
            target = ("-j", "LOG", "--log-prefix", LOG_PREFIX, "--log-level", "5")
            out += [IptRule(m, target) for m in matches]
    return out


# ---------------------------------------------------------------- endpoint chains


def program_chain(
    direction: str, policy_chains: tuple[str, ...], profile_chains: tuple[str, ...]
) -> str:
    """The shared chain for one sequence of policies and profiles (`cali-tp-`/`cali-fp-`)."""
    prefix = "cali-tp-" if direction == INGRESS else "cali-fp-"
    key = "|".join((direction, ",".join(policy_chains), ",".join(profile_chains)))
    return prefix + _hash(key, MAX_CHAIN_NAME - len(prefix))


@lru_cache(maxsize=4096)
def _program(
    direction: str,
    policy_chains: tuple[str, ...],
    profile_chains: tuple[str, ...],
    policy_names: tuple[str, ...] = (),
    profile_names: tuple[str, ...] = (),
) -> Chain:
    """What every endpoint with these policies and profiles runs, after its own checks.

    Endpoints share it: the kernel's cost of any iptables commit grows with the whole
    table, so the per-endpoint part is kept to a rule or two."""
    rules: list[IptRule] = [IptRule((), _set_mark(0, ACCEPT_MARK | PASS_MARK))]
    for chain in policy_chains:
        rules.append(IptRule(_mark(0, PASS_MARK), ("-j", chain)))
        rules.append(_RETURN_IF_ACCEPTED)
    if policy_chains:
        rules.append(_nflog(direction, "pol", ",".join(policy_names), None, _mark(0, PASS_MARK)))
        rules.append(IptRule(_mark(0, PASS_MARK), ("-j", "DROP")))  # end of tier
    for chain in profile_chains:
        rules.append(IptRule((), ("-j", chain)))
        rules.append(_RETURN_IF_ACCEPTED)
    rules.append(_nflog(direction, "def", ",".join(profile_names), None))
    rules.append(_DROP)  # nothing allowed it
    return make_chain(program_chain(direction, policy_chains, profile_chains), rules)


@lru_cache(maxsize=MEMO_ENDPOINTS)
def _endpoint_chain(iface: str, direction: str, nets: tuple[str, ...], program: str) -> Chain:
    rules: list[IptRule] = []
    if direction == EGRESS:
        # Anti-spoofing: a workload may only send from its own addresses.
        if not nets:
            rules.append(_DROP)
        elif len(nets) == 1:
            rules.append(IptRule(("!", "-s", nets[0]), ("-j", "DROP")))
        else:
            rules.append(IptRule((), _set_mark(0, SCRATCH_MARK)))
            rules += [IptRule(("-s", n), _set_mark(SCRATCH_MARK, SCRATCH_MARK)) for n in nets]
            rules.append(IptRule(_mark(0, SCRATCH_MARK), ("-j", "DROP")))
    rules.append(IptRule((), ("-g", program)))
    return make_chain(endpoint_chain(iface, direction), rules)


@lru_cache(maxsize=16384)
def _flat_dispatch(name: str, flag: str, pairs: tuple[tuple[str, str], ...]) -> Chain:
    rules = [IptRule((flag, iface), ("-g", target)) for iface, target in pairs]
    rules.append(_DROP)  # a cali* interface with no endpoint: nothing gets through
    return make_chain(name, rules)


@dataclass(frozen=True)
class _Block:
    chains: tuple[Chain, ...]
    endpoint: LocalEndpoint
    routes: tuple[tuple[str, Route], ...]


@lru_cache(maxsize=MEMO_ENDPOINTS)
def _endpoint_block(
    iface: str,
    ip_networks: tuple[str, ...],
    namespace: str,
    name: str,
    orchestrator: str,
    workload: str,
    endpoint: str,
    all_profiles: tuple[str, ...],
    profiles: tuple[str, ...],
    ingress: tuple[tuple[str, ...], tuple[str, ...]],
    egress: tuple[tuple[str, ...], tuple[str, ...]],
) -> _Block:
    """Everything one local endpoint contributes; the same inputs give the same objects, so
    a change elsewhere (a profile's rules, another endpoint) costs this endpoint a lookup."""
    nets = _v4_nets_cached(ip_networks)
    chains = []
    for direction, (policy_chains, policy_names) in ((INGRESS, ingress), (EGRESS, egress)):
        prof_chains = tuple(profile_chain(p, direction) for p in profiles)
        program = _program(direction, policy_chains, prof_chains, policy_names, profiles)
        chains += [program, _endpoint_chain(iface, direction, nets, program.name)]
    ep = LocalEndpoint(
        namespace=namespace,
        name=name,
        orchestrator=orchestrator,
        workload=workload,
        endpoint=endpoint,
        iface=iface,
        nets=nets,
        profiles=all_profiles,
        ingress_policies=ingress[1],
        egress_policies=egress[1],
    )
    return _Block(tuple(chains), ep, tuple((n, Route(n, dev=iface)) for n in nets))


@lru_cache(maxsize=4)  # the current endpoint set (and the one before): each can be large
def _dispatch_chains(root: str, flag: str, pairs: tuple[tuple[str, str], ...]) -> tuple[Chain, ...]:
    """`root` sends each interface to its chain (-g); unknown cali* interfaces are dropped.

    With many endpoints the chain splits by the next character of the interface name
    (`-i cali3+ -g cali-from-wl-dispatch-3`), so a packet walks a few short chains instead
    of one long one, and the rule count stays endpoints plus a few per level.
    """
    targets = dict(pairs)
    chains: list[Chain] = []

    def build(name: str, prefix: str, ifaces: list[str]) -> None:
        rules: list[IptRule] = []
        suffix_room = MAX_CHAIN_NAME - len(root) - 1
        if len(ifaces) <= DISPATCH_FANOUT or len(prefix) - len(IFACE_PREFIX) >= suffix_room:
            chains.append(_flat_dispatch(name, flag, tuple((i, targets[i]) for i in ifaces)))
            return
        else:
            groups: dict[str, list[str]] = {}
            exact: list[str] = []
            for iface in ifaces:
                if len(iface) == len(prefix):
                    exact.append(iface)
                else:
                    groups.setdefault(iface[: len(prefix) + 1], []).append(iface)
            rules = [IptRule((flag, i), ("-g", targets[i])) for i in exact]
            for sub_prefix, members in sorted(groups.items()):
                if len(members) == 1:
                    rules.append(IptRule((flag, members[0]), ("-g", targets[members[0]])))
                    continue
                sub = f"{root}-{sub_prefix[len(IFACE_PREFIX) :]}"
                rules.append(IptRule((flag, sub_prefix + "+"), ("-g", sub)))
                build(sub, sub_prefix, members)
        rules.append(_DROP)  # a cali* interface with no endpoint: nothing gets through
        chains.append(make_chain(name, rules))

    build(root, IFACE_PREFIX, sorted(targets))
    return tuple(chains)


# ---------------------------------------------------------------- the calculation


def _static_chains(protected_hosts: tuple[str, ...] = ()) -> list[Chain]:
    wl = IFACE_PREFIX + "+"
    forward = [
        IptRule((), _set_mark(0, ALL_MARKS)),
        # Datastore protection first: no verdict of any policy applies to these.
        *(IptRule(("-i", wl, "-d", f"{host}/32"), ("-j", "DROP")) for host in protected_hosts),
        # Established flows of workloads skip the dispatch tree: most packets stop here.
        # Safe ahead of anti-spoofing: strict rp_filter on every cali interface drops a
        # forged source in routing, before FORWARD; the fw chain's own check covers NEW.
        IptRule(("-i", wl, *_CT_ESTABLISHED.match), _CT_ESTABLISHED.target),
        IptRule(("-o", wl, *_CT_ESTABLISHED.match), _CT_ESTABLISHED.target),
        IptRule(("-i", wl, *_CT_INVALID.match), _CT_INVALID.target),
        IptRule(("-o", wl, *_CT_INVALID.match), _CT_INVALID.target),
        IptRule(("-i", IFACE_PREFIX + "+"), ("-j", CHAIN_FROM_DISPATCH)),
        IptRule(("-o", IFACE_PREFIX + "+"), ("-j", CHAIN_TO_DISPATCH)),
        IptRule(_mark(ACCEPT_MARK, ACCEPT_MARK), ("-j", "ACCEPT")),
    ]
    wl_to_host = [_CT_ESTABLISHED, _CT_INVALID]
    wl_to_host += [IptRule(m, ("-j", "ACCEPT")) for m in HOST_SERVICES_FROM_WORKLOADS]
    wl_to_host.append(_DROP)
    return [
        make_chain(CHAIN_FORWARD, forward),
        make_chain(CHAIN_INPUT, [IptRule(("-i", IFACE_PREFIX + "+"), ("-g", CHAIN_WL_TO_HOST))]),
        make_chain(CHAIN_WL_TO_HOST, wl_to_host),
        # Calico lets a host reach its own workloads (health checks, probes).
        make_chain(CHAIN_OUTPUT, [IptRule(("-o", IFACE_PREFIX + "+"), ("-j", "RETURN"))]),
    ]


def hook_chains() -> dict[str, Chain]:
    """The one jump each built-in chain gets, hashed like any other rule."""
    return {b: make_chain(b, [IptRule((), ("-j", target))]) for b, target in HOOKS.items()}


def _node_address(node: Node | None) -> str | None:
    return node.ipv4_address if node is not None else None


def calculate(inputs: Inputs) -> Dataplane:
    """The desired dataplane for `inputs.node`."""
    policy_set = inputs.policy_set()
    dp = Dataplane()
    labelled = [(ep, policy_set.labels_of(ep)) for ep in inputs.endpoints]
    labels_by_ep = {id(ep): labels for ep, labels in labelled}
    ctx = _Ctx(policy_set, labelled)

    # Local endpoints, one per interface (a duplicate interface keeps the first by key).
    local: dict[str, WorkloadEndpoint] = {}
    for ep in sorted(
        (e for e in inputs.endpoints if e.spec.node == inputs.node),
        key=lambda e: (e.metadata.namespace or "default", e.metadata.name),
    ):
        iface = ep.spec.interface_name
        if not iface:
            dp.warnings.append(f"endpoint {ep.metadata.name} has no interfaceName; skipped")
            continue
        if not iface.startswith(IFACE_PREFIX):
            dp.warnings.append(f"endpoint {ep.metadata.name}: interface {iface} lacks 'cali'")
            continue
        if iface in local:
            dp.warnings.append(f"endpoint {ep.metadata.name}: interface {iface} already used")
            continue
        local[iface] = ep

    policy_chains: dict[str, Chain] = {}
    profile_chains: dict[str, Chain] = {}

    def policy_chains_for(pols: list[Policy], direction: str) -> tuple[tuple[str, ...], ...]:
        names = []
        for pol in pols:
            cname = policy_chain(pol, direction)
            names.append(cname)
            if cname not in policy_chains:
                spec_rules = pol.spec.ingress if direction == INGRESS else pol.spec.egress
                ns = (
                    (pol.metadata.namespace or "default")
                    if isinstance(pol, NetworkPolicy)
                    else None
                )
                owner = f"{ns}/{pol.metadata.name}" if ns else pol.metadata.name
                policy_chains[cname] = make_chain(
                    cname, render_rules(spec_rules, ns, False, ctx, direction, owner)
                )
        return tuple(names), tuple(p.metadata.name for p in pols)

    # Which policies apply depends only on an endpoint's namespace and effective labels,
    # and most endpoints share those with many others: ask once per distinct pair.
    groups: dict[tuple, tuple] = {}

    def policies_for(ep: WorkloadEndpoint) -> tuple:
        key = (ep.metadata.namespace or "default", tuple(sorted(labels_by_ep[id(ep)].items())))
        if key not in groups:
            groups[key] = (
                policy_chains_for(applicable_policies(policy_set, ep, INGRESS), INGRESS),
                policy_chains_for(applicable_policies(policy_set, ep, EGRESS), EGRESS),
            )
        return groups[key]

    for iface, ep in local.items():
        (in_chains, in_names), (eg_chains, eg_names) = policies_for(ep)
        profiles = tuple(p for p in ep.spec.profiles if p in inputs.profiles)
        for prof_name in profiles:  # a missing profile decides nothing (calico.policy)
            for direction in (INGRESS, EGRESS):
                cname = profile_chain(prof_name, direction)
                if cname not in profile_chains:
                    prof = inputs.profiles[prof_name]
                    spec_rules = prof.spec.ingress if direction == INGRESS else prof.spec.egress
                    profile_chains[cname] = make_chain(
                        cname, render_rules(spec_rules, None, True, ctx, direction, prof_name)
                    )
        block = _endpoint_block(
            iface,
            tuple(ep.spec.ip_networks),
            ep.metadata.namespace or "default",
            ep.metadata.name,
            ep.spec.orchestrator or "cni",
            ep.spec.workload or ep.spec.container_id,
            ep.spec.endpoint or iface,
            tuple(ep.spec.profiles),
            profiles,
            (in_chains, in_names),
            (eg_chains, eg_names),
        )
        for chain in block.chains:
            dp.chains[chain.name] = chain
        dp.endpoints.append(block.endpoint)
        dp.endpoint_routes.update(block.routes)

    pairs_to = tuple((i, endpoint_chain(i, INGRESS)) for i in local)
    pairs_from = tuple((i, endpoint_chain(i, EGRESS)) for i in local)
    dp.chains.update(policy_chains)
    dp.chains.update(profile_chains)
    for chain in _dispatch_chains(CHAIN_FROM_DISPATCH, "-i", tuple(sorted(pairs_from))):
        dp.chains[chain.name] = chain
    for chain in _dispatch_chains(CHAIN_TO_DISPATCH, "-o", tuple(sorted(pairs_to))):
        dp.chains[chain.name] = chain
    for chain in _static_chains(tuple(inputs.protected_hosts)):
        dp.chains[chain.name] = chain
    dp.hooks = hook_chains()
    dp.ipsets = ctx.ipsets
    dp.warnings += ctx.warnings
    dp.routes = _routes(inputs)
    return dp


def _routes(inputs: Inputs) -> dict[str, Route]:
    """Blackholes for this node's blocks, a route per remote block via its node, and a /32
    via the hosting node for a remote endpoint whose address lies outside its node's blocks
    (a borrowed address)."""
    routes: dict[str, Route] = {}
    own_blocks: dict[str, list[ipaddress.IPv4Network]] = {}
    for cidr, owner in sorted(inputs.blocks.items()):
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if net.version != 4 or not owner:
            continue
        own_blocks.setdefault(owner, []).append(net)
        if owner == inputs.node:
            routes[str(net)] = Route(str(net), kind="blackhole")
            continue
        via = _node_address(inputs.nodes.get(owner))
        if via:
            routes[str(net)] = Route(str(net), via=via)
    for ep in inputs.endpoints:
        owner = ep.spec.node
        if owner == inputs.node or not owner:
            continue
        via = _node_address(inputs.nodes.get(owner))
        if not via:
            continue
        for text in _v4_nets(ep.spec.ip_networks):
            net = ipaddress.ip_network(text)
            if not any(net.subnet_of(b) for b in own_blocks.get(owner, [])):
                routes[str(net)] = Route(str(net), via=via)
    return routes
