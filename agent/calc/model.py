"""The calculation's data: what it reads (`Inputs`) and what it produces (`Dataplane`).

Plain frozen values, so equal inputs give equal (and, through the calculator's memo tables,
often identical) objects, and the dataplane can compare desired against cached state with
`==`. A chain carries one hash per rule (`cali:<hash>` in the rule's comment), chaining the
chain name, the previous rule's hash and the rule text, so comparing hash lists tells
exactly which chains changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.calc.names import hash_text
from agent.calc.origin import RuleOrigin
from calico.policy import PolicySet
from calico.resources import (
    GlobalNetworkPolicy,
    IPPool,
    NetworkPolicy,
    Node,
    Profile,
    WorkloadEndpoint,
)

Policy = NetworkPolicy | GlobalNetworkPolicy


@dataclass(frozen=True)
class IptRule:
    """One iptables rule: match tokens and target tokens (the comment is added on render).

    `origin`: the policy/profile rule it was rendered from (agent.calc.origin), None for the
    agent's own plumbing. Not compared: the kernel never sees it, and rule text, hashes and
    the memo tables' equality stay what they were."""

    match: tuple[str, ...]
    target: tuple[str, ...]
    origin: RuleOrigin | None = field(default=None, compare=False)

    def spec(self) -> str:
        return _join(self.match + self.target)


def _quote(token: str) -> str:
    return f'"{token}"' if (" " in token or not token) else token


def _join(tokens: tuple[str, ...]) -> str:
    """The tokens as iptables reads them: quoted where a token is empty or has a space
    (rare: a comment), tested in C first (at 10,000 endpoints: 100,000 joins a calculation
    and its restore, where a Python call per token cost ~60 ms)."""
    text = " ".join(tokens)
    if text.count(" ") == len(tokens) - 1 and "" not in tokens:
        return text
    return " ".join(_quote(t) for t in tokens)


@dataclass(frozen=True)
class Chain:
    """A chain as the agent writes it: its rules and, per rule, the hash in its comment."""

    name: str
    rules: tuple[IptRule, ...]
    hashes: tuple[str, ...]

    def lines(self) -> list[str]:
        """`-A` lines for iptables-restore, each with its `cali:<hash>` comment."""
        head = f"-A {self.name} "
        out = []
        for rule, h in zip(self.rules, self.hashes, strict=True):
            comment = f'-m comment --comment "cali:{h}" '
            if rule.match:
                out.append(f"{head}{_join(rule.match)} {comment}{_join(rule.target)}")
            else:
                out.append(f"{head}{comment}{_join(rule.target)}")
        return out


def make_chain(name: str, rules: Iterable[IptRule]) -> Chain:
    """A chain with its rule hashes: each chains the name, the previous hash and the rule."""
    rules = tuple(rules)
    return Chain(name, rules, _chain_hashes(name, rules))


def _chain_hashes(name: str, rules: tuple[IptRule, ...]) -> tuple[str, ...]:
    out = []
    prev = ""
    for rule in rules:
        prev = hash_text(f"{name}\0{prev}\0{rule.spec()}", 16)
        out.append(prev)
    return tuple(out)


@dataclass(frozen=True)
class IPSet:
    """An ipset the agent owns and its members, in ipset's own spelling."""

    name: str
    type: str  # hash:net | hash:ip,port
    members: frozenset[str]


@dataclass(frozen=True)
class Route:
    """A route the agent wants; `kind` is unicast or blackhole. `onlink` (with `via` and
    `dev`): the gateway is taken as reachable through `dev` whatever its subnet, which is
    how a route through tunl0 names the remote node (the relay and the kernel's ipip
    device send to that gateway)."""

    dst: str
    kind: str = "unicast"
    dev: str | None = None
    via: str | None = None
    onlink: bool = False

    def batch_args(self) -> str:
        """Arguments for `ip route replace` (without the protocol)."""
        if self.kind == "blackhole":
            return f"blackhole {self.dst}"
        if self.via and self.onlink:
            return f"{self.dst} via {self.via} dev {self.dev} onlink"
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
    # IPIP: tunl0 is wanted (an IPIP pool exists), with this node's tunnel address (/32).
    ipip: bool = False
    tunnel_address: str | None = None

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
    pools: Sequence[IPPool] = ()
    # "bird": BIRD programs the routes to remote blocks (the agent writes only its own
    # blocks' blackholes); "direct": the agent routes each remote block via its node.
    backend: str = "direct"

    def policy_set(self) -> PolicySet:
        return PolicySet(self.profiles.values(), self.policies, self.endpoints)
