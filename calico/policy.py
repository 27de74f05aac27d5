"""Is this flow allowed, and by which rule? Calico's policy semantics as plain data.

The agent renders exactly this into iptables, and the console's "expected" matrix and
"why denied?" read it, so every verdict carries its own explanation.

Calico's model, as implemented here:
- Egress is evaluated on the source when it is a workload endpoint, ingress on the
  destination when it is one; a flow passes only if every evaluated direction allows it.
  A bare address (not a workload endpoint) has no policy of its own.
- Per direction, the policies that apply (selector matches the endpoint's effective labels,
  defaulted `types` include the direction; a NetworkPolicy only in its own namespace) are
  taken in Calico's order: `order` ascending, no order last, then by name. Within a policy
  rules run in order: Allow and Deny decide, Log records and continues, Pass skips the rest
  of the policies and goes to the profiles. If policies applied and none decided nor passed,
  the flow is dropped at the end of the tier. If no policy applied (or one passed), the
  endpoint's profiles run in order; the first matching Allow/Deny decides; else default deny.

Choices where Calico's behaviour needs a stand-in here (each is also said where it is coded):
- Effective labels: the endpoint's own labels win over its profiles' `labelsToApply`, and an
  earlier profile wins over a later one (Felix's label inheritance does exactly this: an item's
  own labels first, then each parent in order fills only keys not yet set). The implicit
  `projectcalico.org/namespace` / `projectcalico.org/orchestrator` labels are filled from
  metadata when absent, as Calico's datastore layer writes them on every endpoint.
- Namespaces have no resource here: a namespace's labels are `{projectcalico.org/name: ns}`
  (the label Calico puts on namespaces) unless `PolicySet(namespace_labels=...)` says more.
- Named ports resolve against the matched endpoint's `spec.ports` (name + protocol); against
  a bare address a named port never matches.
- Not modelled (rkt has no such things): tiers other than the default one, service accounts
  (a policy with a non-trivial `serviceAccountSelector` applies to nothing), host endpoints
  (`doNotTrack`/`preDNAT` global policies therefore apply to no workload endpoint).
- Pass inside a profile ends that profile; the next profile is evaluated.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import cast

from calico.protocols import protocol_name, protocol_number
from calico.resources import (
    EntityRule,
    GlobalNetworkPolicy,
    NetworkPolicy,
    Profile,
    Resource,
    Rule,
    WorkloadEndpoint,
    parse_port,
    policy_types,
)
from calico.selector import Selector, parse

INGRESS = "Ingress"
EGRESS = "Egress"
DIRECTIONS = (INGRESS, EGRESS)

NAMESPACE_LABEL = "projectcalico.org/namespace"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
NAMESPACE_NAME_LABEL = "projectcalico.org/name"

END_OF_TIER_DENY = "no policy rule matched: end-of-tier deny"
DEFAULT_DENY = "no rule matched: default deny"

Policy = NetworkPolicy | GlobalNetworkPolicy
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_KIND_WORD = {
    "Profile": "profile",
    "NetworkPolicy": "policy",
    "GlobalNetworkPolicy": "global policy",
}

__all__ = [
    "DEFAULT_DENY",
    "EGRESS",
    "END_OF_TIER_DENY",
    "INGRESS",
    "Decision",
    "DirectionResult",
    "Flow",
    "PolicySet",
    "Step",
    "Verdict",
    "applicable_policies",
    "effective_labels",
    "evaluate",
]


# ---------------------------------------------------------------- labels


def effective_labels(
    endpoint: WorkloadEndpoint, profiles_by_name: Mapping[str, Profile]
) -> dict[str, str]:
    """The labels selectors see on an endpoint.

    Precedence, highest first: the endpoint's own `metadata.labels`; the implicit
    namespace/orchestrator labels (filled from metadata when absent, as Calico's datastore
    writes them); then each profile's `labelsToApply` in profile order, an earlier profile
    winning (Felix's inheritance: a parent only fills keys not already set). The endpoint
    winning means an operator can override a network's label on one pod without editing the
    shared profile.
    """
    labels = dict(endpoint.metadata.labels)
    if endpoint.metadata.namespace:
        labels.setdefault(NAMESPACE_LABEL, endpoint.metadata.namespace)
    if endpoint.spec.orchestrator:
        labels.setdefault(ORCHESTRATOR_LABEL, endpoint.spec.orchestrator)
    for name in endpoint.spec.profiles:
        profile = profiles_by_name.get(name)
        if profile is not None:
            for key, value in profile.spec.labels_to_apply.items():
                labels.setdefault(key, value)
    return labels


def _show_labels(labels: Mapping[str, str], used: frozenset[str] = frozenset()) -> str:
    # Calico's implicit labels are noise in an explanation unless the selector reads them.
    shown = {k: v for k, v in labels.items() if not k.startswith("projectcalico.org/") or k in used}
    if not shown:
        return "no labels"
    return "labels {" + ", ".join(f"{k}: {v!r}" for k, v in sorted(shown.items())) + "}"


def _endpoint_name(ep: WorkloadEndpoint) -> str:
    return f"{ep.metadata.namespace or 'default'}/{ep.metadata.name}"


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


# ---------------------------------------------------------------- compiled rules


@dataclass(frozen=True)
class _Entity:
    """A rule's source or destination half, parsed once."""

    role: str  # "source" | "destination"
    nets: tuple[IPNetwork, ...]
    not_nets: tuple[IPNetwork, ...]
    selector: Selector | None
    not_selector: Selector | None
    namespace_selector: Selector | None
    # A namespaced policy's rule selectors only see its own namespace (Calico ANDs in
    # `projectcalico.org/namespace == ns` when the rule has a selector or notSelector and no
    # namespaceSelector).
    scope_namespace: str | None
    ports: tuple[tuple[int, int] | str, ...]
    not_ports: tuple[tuple[int, int] | str, ...]
    raw: EntityRule

    @property
    def wants_endpoint(self) -> bool:
        """True when only a workload endpoint can match (a positive selector of any kind)."""
        return (
            self.selector is not None
            or self.namespace_selector is not None
            or self.scope_namespace is not None
        )


def _compile_entity(raw: EntityRule, role: str, policy_namespace: str | None) -> _Entity:
    selector = None if _blank(raw.selector) else parse(raw.selector or "")
    not_selector = None if _blank(raw.not_selector) else parse(raw.not_selector or "")
    ns_selector = None if _blank(raw.namespace_selector) else parse(raw.namespace_selector or "")
    scope = None
    if policy_namespace and ns_selector is None and (selector or not_selector):
        scope = policy_namespace
    return _Entity(
        role=role,
        nets=tuple(ipaddress.ip_network(n, strict=False) for n in raw.nets),
        not_nets=tuple(ipaddress.ip_network(n, strict=False) for n in raw.not_nets),
        selector=selector,
        not_selector=not_selector,
        namespace_selector=ns_selector,
        scope_namespace=scope,
        ports=tuple(parse_port(p) for p in raw.ports),
        not_ports=tuple(parse_port(p) for p in raw.not_ports),
        raw=raw,
    )


@dataclass(frozen=True)
class _Rule:
    index: int
    action: str
    protocol: int | None
    not_protocol: int | None
    ip_version: int | None
    icmp: tuple[int | None, int | None] | None
    not_icmp: tuple[int | None, int | None] | None
    source: _Entity
    destination: _Entity
    raw: Rule


def _compile_rule(index: int, rule: Rule, policy_namespace: str | None) -> _Rule:
    return _Rule(
        index=index,
        action=rule.action,
        protocol=None if rule.protocol is None else protocol_number(rule.protocol),
        not_protocol=None if rule.not_protocol is None else protocol_number(rule.not_protocol),
        ip_version=rule.ip_version,
        icmp=(rule.icmp.type, rule.icmp.code) if rule.icmp else None,
        not_icmp=(rule.not_icmp.type, rule.not_icmp.code) if rule.not_icmp else None,
        source=_compile_entity(rule.source, "source", policy_namespace),
        destination=_compile_entity(rule.destination, "destination", policy_namespace),
        raw=rule,
    )


@dataclass(frozen=True)
class _Compiled:
    """A policy or profile, ready to evaluate."""

    kind: str
    name: str  # namespace/name for NetworkPolicy, plain name otherwise
    resource: Resource
    namespace: str | None
    order: float
    selector: Selector
    namespace_selector: Selector | None
    types: frozenset[str]
    ingress: tuple[_Rule, ...]
    egress: tuple[_Rule, ...]
    applies_to_workloads: bool

    def rules(self, direction: str) -> tuple[_Rule, ...]:
        return self.ingress if direction == INGRESS else self.egress

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.order, self.name)

    def where(self, direction: str, index: int | None = None) -> str:
        """`profile network1 ingress rule 0`, for messages."""
        text = f"{_KIND_WORD[self.kind]} {self.name} {direction.lower()}"
        return text if index is None else f"{text} rule {index}"


def _compile_policy(pol: Policy) -> _Compiled:
    spec = pol.spec
    namespace = (pol.metadata.namespace or "default") if isinstance(pol, NetworkPolicy) else None
    ns_selector = None
    applies = True
    if isinstance(pol, GlobalNetworkPolicy):
        if not _blank(spec.namespace_selector):
            ns_selector = parse(spec.namespace_selector or "")
        # doNotTrack / preDNAT policies are for host endpoints only.
        applies = not (spec.do_not_track or spec.pre_dnat)
    if (
        not _blank(spec.service_account_selector)
        and not parse(spec.service_account_selector or "").is_all()
    ):
        applies = False  # no service accounts in rkt: such a policy selects nothing
    return _Compiled(
        kind=pol.KIND,
        name=f"{namespace}/{pol.metadata.name}" if namespace else pol.metadata.name,
        resource=pol,
        namespace=namespace,
        order=math.inf if spec.order is None else float(spec.order),
        selector=parse(spec.selector or ""),
        namespace_selector=ns_selector,
        types=frozenset(policy_types(spec)),
        ingress=tuple(_compile_rule(i, r, namespace) for i, r in enumerate(spec.ingress)),
        egress=tuple(_compile_rule(i, r, namespace) for i, r in enumerate(spec.egress)),
        applies_to_workloads=applies,
    )


def _compile_profile(prof: Profile) -> _Compiled:
    return _Compiled(
        kind="Profile",
        name=prof.metadata.name,
        resource=prof,
        namespace=None,
        order=math.inf,
        selector=parse(""),
        namespace_selector=None,
        types=frozenset(DIRECTIONS),
        ingress=tuple(_compile_rule(i, r, None) for i, r in enumerate(prof.spec.ingress)),
        egress=tuple(_compile_rule(i, r, None) for i, r in enumerate(prof.spec.egress)),
        applies_to_workloads=True,
    )


# ---------------------------------------------------------------- the policy set


class PolicySet:
    """A snapshot of everything that decides flows; selectors and CIDRs are parsed once.

    Build a new one when the datastore changes (building is cheap next to evaluating a
    matrix). `policies` takes NetworkPolicy and GlobalNetworkPolicy alike.
    """

    def __init__(
        self,
        profiles: Iterable[Profile] = (),
        policies: Iterable[Policy] = (),
        endpoints: Iterable[WorkloadEndpoint] = (),
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    ):
        self.profiles: dict[str, Profile] = {p.metadata.name: p for p in profiles}
        self.endpoints: list[WorkloadEndpoint] = list(endpoints)
        self._namespace_labels = {k: dict(v) for k, v in (namespace_labels or {}).items()}
        self._profiles = {name: _compile_profile(p) for name, p in self.profiles.items()}
        # Sorted once into Calico's order, so every per-endpoint filter keeps that order.
        self._policies = sorted((_compile_policy(p) for p in policies), key=lambda c: c.sort_key)
        # Built on first use: the agent's calculation never asks, and parsing every
        # endpoint's addresses was a quarter of a 10,000-endpoint calculation.
        self._by_ip: dict[IPAddress, WorkloadEndpoint] | None = None

    @classmethod
    def from_resources(
        cls,
        resources: Iterable[Resource],
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> PolicySet:
        """From a mixed list (e.g. everything read from the datastore); other kinds ignored."""
        items = list(resources)
        return cls(
            profiles=[r for r in items if isinstance(r, Profile)],
            policies=[r for r in items if isinstance(r, NetworkPolicy | GlobalNetworkPolicy)],
            endpoints=[r for r in items if isinstance(r, WorkloadEndpoint)],
            namespace_labels=namespace_labels,
        )

    @property
    def policies(self) -> list[Policy]:
        """All policies in Calico's evaluation order."""
        return [cast(Policy, c.resource) for c in self._policies]

    def labels_of(self, endpoint: WorkloadEndpoint) -> dict[str, str]:
        return effective_labels(endpoint, self.profiles)

    def namespace_labels_of(self, namespace: str) -> dict[str, str]:
        labels = dict(self._namespace_labels.get(namespace, {}))
        labels.setdefault(NAMESPACE_NAME_LABEL, namespace)
        return labels

    def endpoint_for_ip(self, address: str) -> WorkloadEndpoint | None:
        """The workload endpoint holding `address`, if any (to turn a bare IP into a pod)."""
        try:
            wanted = ipaddress.ip_address(address)
        except ValueError:
            return None
        if self._by_ip is None:
            self._by_ip = {}
            for ep in self.endpoints:
                for addr in _addresses(ep):
                    self._by_ip.setdefault(addr, ep)
        return self._by_ip.get(wanted)

    def _applicable(
        self, endpoint: WorkloadEndpoint, labels: Mapping[str, str], direction: str
    ) -> list[_Compiled]:
        namespace = endpoint.metadata.namespace or "default"
        ns_labels: dict[str, str] | None = None
        out = []
        for pol in self._policies:
            if direction not in pol.types or not pol.applies_to_workloads:
                continue
            if pol.namespace is not None and pol.namespace != namespace:
                continue
            if pol.namespace_selector is not None:
                if ns_labels is None:
                    ns_labels = self.namespace_labels_of(namespace)
                if not pol.namespace_selector.evaluate(ns_labels):
                    continue
            if pol.selector.evaluate(labels):
                out.append(pol)
        return out


def applicable_policies(
    policy_set: PolicySet, endpoint: WorkloadEndpoint, direction: str
) -> list[Policy]:
    """Policies that apply to `endpoint` in `direction` ("Ingress"/"Egress"), in Calico order."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be Ingress or Egress, not {direction!r}")
    labels = policy_set.labels_of(endpoint)
    return [cast(Policy, c.resource) for c in policy_set._applicable(endpoint, labels, direction)]


# ---------------------------------------------------------------- flows


@dataclass
class Flow:
    """One connection attempt. Either end is a WorkloadEndpoint or a bare IP address.

    `src_ip`/`dst_ip` pick which of an endpoint's addresses is used (default: the one of
    the same IP version as the other end, else its first IPv4, else its first address).
    """

    source: WorkloadEndpoint | str
    destination: WorkloadEndpoint | str
    protocol: int | str = "TCP"
    dst_port: int | None = None
    src_port: int | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    def describe(self) -> str:
        proto = protocol_name(protocol_number(self.protocol))
        port = f"/{self.dst_port}" if self.dst_port is not None else ""
        return f"{_describe_end(self.source, self.src_ip)} -> {_describe_end(self.destination, self.dst_ip)} {proto}{port}"


def _describe_end(end: WorkloadEndpoint | str, ip: str | None) -> str:
    if isinstance(end, WorkloadEndpoint):
        addrs = [str(a) for a in _addresses(end)]
        shown = ip or (addrs[0] if addrs else "no address")
        return f"{_endpoint_name(end)} ({shown})"
    return str(end)


@lru_cache(maxsize=65536)
def _ip(text: str) -> IPAddress:
    # Parsing addresses dominated evaluate() before this cache; the same few hundred
    # endpoint addresses recur in every flow of a matrix.
    return ipaddress.ip_interface(text).ip


def _addresses(ep: WorkloadEndpoint) -> list[IPAddress]:
    out = []
    for net in ep.spec.ip_networks:
        try:
            out.append(_ip(net))
        except ValueError:
            continue
    return out


@dataclass
class _Side:
    """One end of a flow, resolved: what rules match against."""

    role: str
    endpoint: WorkloadEndpoint | None
    address: IPAddress | None
    labels: dict[str, str] | None
    namespace: str | None
    port: int | None
    name: str


@dataclass
class _Ctx:
    protocol: int
    version: int | None
    icmp: tuple[int | None, int | None]
    source: _Side
    destination: _Side
    policy_set: PolicySet

    def side(self, role: str) -> _Side:
        return self.source if role == "source" else self.destination


def _pick_address(
    end: WorkloadEndpoint | str, explicit: str | None, other_version: int | None
) -> IPAddress | None:
    if explicit:
        return _ip(explicit)
    if not isinstance(end, WorkloadEndpoint):
        return _ip(end)
    addrs = _addresses(end)
    for wanted in (other_version, 4):
        for a in addrs:
            if a.version == wanted:
                return a
    return addrs[0] if addrs else None


def _resolve(policy_set: PolicySet, flow: Flow) -> _Ctx:
    def fixed_version(end: WorkloadEndpoint | str, explicit: str | None) -> int | None:
        if explicit:
            return _ip(explicit).version
        if isinstance(end, str):
            return _ip(end).version
        return None

    src_v = fixed_version(flow.source, flow.src_ip)
    dst_v = fixed_version(flow.destination, flow.dst_ip)
    src_addr = _pick_address(flow.source, flow.src_ip, dst_v)
    dst_addr = _pick_address(
        flow.destination, flow.dst_ip, src_v or (src_addr.version if src_addr else None)
    )

    def side(
        role: str, end: WorkloadEndpoint | str, addr: IPAddress | None, port: int | None
    ) -> _Side:
        if isinstance(end, WorkloadEndpoint):
            return _Side(
                role=role,
                endpoint=end,
                address=addr,
                labels=policy_set.labels_of(end),
                namespace=end.metadata.namespace or "default",
                port=port,
                name=_endpoint_name(end),
            )
        return _Side(role, None, addr, None, None, port, str(addr))

    version = src_addr.version if src_addr else (dst_addr.version if dst_addr else None)
    return _Ctx(
        protocol=protocol_number(flow.protocol),
        version=version,
        icmp=(flow.icmp_type, flow.icmp_code),
        source=side("source", flow.source, src_addr, flow.src_port),
        destination=side("destination", flow.destination, dst_addr, flow.dst_port),
        policy_set=policy_set,
    )


# ---------------------------------------------------------------- rule matching


def _port_in(
    port: int, specs: tuple[tuple[int, int] | str, ...], side: _Side, protocol: int
) -> bool:
    for spec in specs:
        if isinstance(spec, tuple):
            if spec[0] <= port <= spec[1]:
                return True
        elif side.endpoint is not None:
            # A named port means "the port the matched endpoint calls this name".
            for ep_port in side.endpoint.spec.ports:
                if (
                    ep_port.name == spec
                    and ep_port.port == port
                    and protocol_number(ep_port.protocol or "TCP") == protocol
                ):
                    return True
    return False


def _list_text(raw: list[int | str] | list[str]) -> str:
    return "[" + ", ".join(str(p) for p in raw) + "]"


def _entity_reasons(ent: _Entity, ctx: _Ctx, out: list[str], every: bool) -> None:
    """Append why `ent` does not match its side of the flow; stop at one unless `every`."""
    side = ctx.side(ent.role)
    role = ent.role
    if ent.nets:
        if side.address is None:
            out.append(f"{role} has no address to match nets")
        elif not any(side.address in net for net in ent.nets):
            out.append(f"{role} {side.address} not in nets {_list_text(ent.raw.nets)}")
        if out and not every:
            return
    if ent.not_nets and side.address is not None:
        hit = next((net for net in ent.not_nets if side.address in net), None)
        if hit is not None:
            out.append(f"{role} {side.address} is in notNets {hit}")
            if not every:
                return
    if ent.wants_endpoint:
        why = _endpoint_mismatch(ent, side, ctx)
        if why:
            out.append(why)
            if not every:
                return
    if (
        ent.not_selector is not None
        and side.labels is not None
        and ent.not_selector.evaluate(side.labels)
    ):
        out.append(
            f"{role} matches notSelector {ent.not_selector.text.strip()}: {role} has "
            + _show_labels(side.labels, ent.not_selector.labels_used())
        )
        if not every:
            return
    if ent.ports:
        if side.port is None:
            out.append(
                f"flow has no {role} port; rule wants {role} ports {_list_text(ent.raw.ports)}"
            )
        elif not _port_in(side.port, ent.ports, side, ctx.protocol):
            out.append(f"{role} port {side.port} not in ports {_list_text(ent.raw.ports)}")
        if out and not every:
            return
    if (
        ent.not_ports
        and side.port is not None
        and _port_in(side.port, ent.not_ports, side, ctx.protocol)
    ):
        out.append(f"{role} port {side.port} is in notPorts {_list_text(ent.raw.not_ports)}")


def _endpoint_mismatch(ent: _Entity, side: _Side, ctx: _Ctx) -> str | None:
    role = ent.role
    wanted = ent.selector.text.strip() if ent.selector else "an endpoint"
    if side.endpoint is None or side.labels is None:
        return (
            f"{role} {side.name} is not a workload endpoint, so selector {wanted} cannot match it"
        )
    if ent.scope_namespace is not None and side.namespace != ent.scope_namespace:
        return (
            f"{role} is in namespace {side.namespace}; this namespaced policy's selectors only "
            f"match namespace {ent.scope_namespace}"
        )
    if ent.namespace_selector is not None:
        ns_labels = ctx.policy_set.namespace_labels_of(side.namespace or "default")
        if not ent.namespace_selector.evaluate(ns_labels):
            return (
                f"{role} namespace {side.namespace} does not match namespaceSelector "
                f"{ent.namespace_selector.text.strip()}"
            )
    if ent.selector is not None and not ent.selector.evaluate(side.labels):
        return f"{role} selector {wanted} does not match: {role} has " + _show_labels(
            side.labels, ent.selector.labels_used()
        )
    return None


def _rule_reasons(rule: _Rule, ctx: _Ctx, every: bool = False) -> list[str]:
    """Why `rule` does not match the flow: [] means it matches. One reason unless `every`."""
    out: list[str] = []
    if rule.ip_version is not None and ctx.version is not None and rule.ip_version != ctx.version:
        out.append(f"rule is for IPv{rule.ip_version}, flow is IPv{ctx.version}")
        if not every:
            return out
    if rule.protocol is not None and rule.protocol != ctx.protocol:
        out.append(
            f"protocol is {protocol_name(ctx.protocol)}, rule wants {protocol_name(rule.protocol)}"
        )
        if not every:
            return out
    if rule.not_protocol is not None and rule.not_protocol == ctx.protocol:
        out.append(
            f"protocol is {protocol_name(ctx.protocol)}, which the rule excludes (notProtocol)"
        )
        if not every:
            return out
    if rule.icmp is not None and not _icmp_matches(rule.icmp, ctx.icmp):
        out.append(f"ICMP type/code {_icmp_text(ctx.icmp)} is not {_icmp_text(rule.icmp)}")
        if not every:
            return out
    if rule.not_icmp is not None and _icmp_matches(rule.not_icmp, ctx.icmp):
        out.append(f"ICMP type/code {_icmp_text(ctx.icmp)} is excluded by notICMP")
        if not every:
            return out
    _entity_reasons(rule.source, ctx, out, every)
    if out and not every:
        return out
    _entity_reasons(rule.destination, ctx, out, every)
    return out


def _icmp_matches(want: tuple[int | None, int | None], got: tuple[int | None, int | None]) -> bool:
    return (want[0] is None or want[0] == got[0]) and (want[1] is None or want[1] == got[1])


def _icmp_text(icmp: tuple[int | None, int | None]) -> str:
    return f"{'any' if icmp[0] is None else icmp[0]}/{'any' if icmp[1] is None else icmp[1]}"


def describe_rule(rule: Rule) -> str:
    """A rule in words: `Allow TCP from sources with has(network1) to ports [80]`."""
    parts = [rule.action]
    if rule.ip_version:
        parts.append(f"IPv{rule.ip_version}")
    if rule.protocol is not None:
        parts.append(protocol_name(protocol_number(rule.protocol)))
    if rule.not_protocol is not None:
        parts.append(f"not {protocol_name(protocol_number(rule.not_protocol))}")
    for word, ent in (("from", rule.source), ("to", rule.destination)):
        noun = "sources" if word == "from" else "destinations"
        bits = []
        if not _blank(ent.selector):
            bits.append(f"{noun} with {(ent.selector or '').strip()}")
        if not _blank(ent.not_selector):
            bits.append(f"{noun} without {(ent.not_selector or '').strip()}")
        if not _blank(ent.namespace_selector):
            bits.append(f"namespaces with {(ent.namespace_selector or '').strip()}")
        if ent.nets:
            bits.append(f"{noun} in {', '.join(ent.nets)}")
        if ent.not_nets:
            bits.append(f"{noun} not in {', '.join(ent.not_nets)}")
        if ent.ports:
            bits.append(f"ports {_list_text(ent.ports)}")
        if ent.not_ports:
            bits.append(f"ports not in {_list_text(ent.not_ports)}")
        if bits:
            parts.append(f"{word} {' and '.join(bits)}")
    if len(parts) == 1:
        parts.append("all traffic")
    return " ".join(parts)


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Step:
    """One rule looked at (or one policy/profile that had nothing to look at)."""

    direction: str
    kind: str  # Profile | NetworkPolicy | GlobalNetworkPolicy
    name: str
    rule_index: int | None  # None: the policy/profile had no rules here, or is missing
    action: str | None
    matched: bool
    reason: str  # "matched" or why not

    def __str__(self) -> str:
        where = f"{_KIND_WORD[self.kind]} {self.name} {self.direction.lower()}"
        if self.rule_index is None:
            return f"{where}: {self.reason}"
        head = f"{where} rule {self.rule_index} ({self.action})"
        return f"{head}: matched" if self.matched else f"{head}: no match, {self.reason}"


@dataclass(frozen=True)
class Decision:
    """What decided one direction: a rule, or a default deny."""

    direction: str
    allowed: bool
    action: str  # Allow | Deny
    kind: str | None  # None for a default (end-of-tier or no-rule) deny
    name: str | None
    rule_index: int | None
    reason: str  # "rule matched", END_OF_TIER_DENY or DEFAULT_DENY
    considered: tuple[str, ...] = ()  # for a default deny: what was evaluated, in order

    @property
    def is_default(self) -> bool:
        return self.kind is None

    def __str__(self) -> str:
        if self.kind is not None:
            return (
                f"{_KIND_WORD[self.kind]} {self.name} {self.direction.lower()} "
                f"rule {self.rule_index} ({self.action})"
            )
        if not self.considered:
            return f"{self.reason} (no policy or profile applies)"
        return f"{self.reason} (after {', '.join(self.considered)})"


@dataclass
class DirectionResult:
    direction: str
    endpoint: str  # namespace/name of the endpoint this direction ran on
    policies: list[str]  # applicable policies, in evaluation order
    profiles: list[str]
    steps: list[Step]
    decision: Decision
    would_allow: str | None = None  # for a deny: the nearest Allow rule and what it lacks

    @property
    def allowed(self) -> bool:
        return self.decision.allowed


@dataclass
class Verdict:
    allowed: bool
    flow: Flow
    directions: list[DirectionResult] = field(default_factory=list)  # egress first

    @property
    def decision(self) -> Decision | None:
        """The deciding decision: the first denying direction's, else the last allowing one."""
        for d in self.directions:
            if not d.allowed:
                return d.decision
        return self.directions[-1].decision if self.directions else None

    @property
    def would_allow(self) -> str | None:
        return next((d.would_allow for d in self.directions if not d.allowed), None)

    def explain(self) -> list[str]:
        """Human text, one line per fact, for the console's "why denied?"."""
        lines = [f"{'ALLOWED' if self.allowed else 'DENIED'}: {self.flow.describe()}"]
        evaluated = {d.direction for d in self.directions}
        if EGRESS not in evaluated:
            lines.append(
                f"egress: source {_describe_end(self.flow.source, self.flow.src_ip)} is not a "
                "workload endpoint, no egress policy"
            )
        for d in self.directions:
            on = "from" if d.direction == EGRESS else "to"
            verdict = "allowed" if d.allowed else "DENIED"
            how = (
                f"{verdict}, {d.decision}"
                if d.decision.is_default
                else f"{verdict} by {d.decision}"
            )
            lines.append(f"{d.direction.lower()} {on} {d.endpoint}: {how}")
            lines.append(
                f"  policies: {', '.join(d.policies) or 'none apply'}; "
                f"profiles: {', '.join(d.profiles) or 'none'}"
            )
            lines.extend(f"  {step}" for step in d.steps)
            if d.would_allow:
                lines.append(f"  hint: {d.would_allow}")
        if INGRESS not in evaluated:
            lines.append(
                f"ingress: destination {_describe_end(self.flow.destination, self.flow.dst_ip)} "
                "is not a workload endpoint, no ingress policy"
            )
        return lines


def evaluate(policy_set: PolicySet, flow: Flow) -> Verdict:
    """Allowed or not, with the full trace. Egress on a workload source, ingress on a
    workload destination; both must allow."""
    ctx = _resolve(policy_set, flow)
    results = []
    if ctx.source.endpoint is not None:
        results.append(_evaluate_direction(policy_set, ctx, EGRESS, ctx.source))
    if ctx.destination.endpoint is not None:
        results.append(_evaluate_direction(policy_set, ctx, INGRESS, ctx.destination))
    return Verdict(allowed=all(r.allowed for r in results), flow=flow, directions=results)


def _evaluate_direction(
    policy_set: PolicySet, ctx: _Ctx, direction: str, side: _Side
) -> DirectionResult:
    if side.endpoint is None or side.labels is None:
        raise ValueError(f"{direction} is only evaluated on a workload endpoint")
    endpoint = side.endpoint
    policies = policy_set._applicable(endpoint, side.labels, direction)
    steps: list[Step] = []
    decision: Decision | None = None
    passed = False

    def run(item: _Compiled) -> str | None:
        """Run one policy/profile's rules; returns the deciding action (Pass included)."""
        rules = item.rules(direction)
        if not rules:
            steps.append(
                Step(
                    direction,
                    item.kind,
                    item.name,
                    None,
                    None,
                    False,
                    f"no {direction.lower()} rules",
                )
            )
        for rule in rules:
            reasons = _rule_reasons(rule, ctx)
            if reasons:
                steps.append(
                    Step(
                        direction, item.kind, item.name, rule.index, rule.action, False, reasons[0]
                    )
                )
                continue
            steps.append(
                Step(direction, item.kind, item.name, rule.index, rule.action, True, "matched")
            )
            if rule.action != "Log":  # Log records the packet and carries on
                nonlocal decision
                if rule.action in ("Allow", "Deny"):
                    decision = Decision(
                        direction,
                        rule.action == "Allow",
                        rule.action,
                        item.kind,
                        item.name,
                        rule.index,
                        "rule matched",
                    )
                return rule.action
        return None

    for pol in policies:
        action = run(pol)
        if action == "Pass":
            passed = True  # skip the remaining policies: straight to the profiles
            break
        if decision is not None:
            break

    considered = [f"{_KIND_WORD[p.kind]} {p.name}" for p in policies]
    if decision is None and policies and not passed:
        decision = Decision(
            direction, False, "Deny", None, None, None, END_OF_TIER_DENY, tuple(considered)
        )
    profiles = list(endpoint.spec.profiles)
    if decision is None:
        for name in profiles:
            considered.append(f"profile {name}")
            prof = policy_set._profiles.get(name)
            if prof is None:
                steps.append(
                    Step(direction, "Profile", name, None, None, False, "profile does not exist")
                )
                continue
            run(prof)  # a Pass inside a profile just ends that profile
            if decision is not None:
                break
    if decision is None:
        decision = Decision(
            direction, False, "Deny", None, None, None, DEFAULT_DENY, tuple(considered)
        )

    result = DirectionResult(
        direction=direction,
        endpoint=side.name,
        policies=[p.name for p in policies],
        profiles=profiles,
        steps=steps,
        decision=decision,
    )
    if not decision.allowed:
        result.would_allow = _would_allow(policy_set, ctx, direction, policies, profiles, decision)
    return result


def _would_allow(
    policy_set: PolicySet,
    ctx: _Ctx,
    direction: str,
    policies: list[_Compiled],
    profiles: list[str],
    decision: Decision,
) -> str | None:
    """The Allow rule nearest to matching (fewest failed conditions, first on a tie)."""
    items = list(policies) + [
        policy_set._profiles[n] for n in profiles if n in policy_set._profiles
    ]
    best: tuple[int, _Compiled, _Rule, list[str]] | None = None
    for item in items:
        for rule in item.rules(direction):
            if rule.action != "Allow":
                continue
            reasons = _rule_reasons(rule, ctx, every=True)
            if best is None or len(reasons) < best[0]:
                best = (len(reasons), item, rule, reasons)
    if best is None:
        return (
            f"no Allow rule for {direction.lower()} in any applicable policy or profile: "
            "add one (for example to a profile of this endpoint)"
        )
    _, item, rule, reasons = best
    where = item.where(direction, rule.index)
    allows = describe_rule(rule.raw).removeprefix("Allow ")
    if not reasons:
        if decision.reason == END_OF_TIER_DENY and item.kind == "Profile":
            # The classic surprise: any applicable policy hides the profiles.
            return (
                f"{where} would allow this flow ({allows}), but profiles are only reached when "
                f"no policy applies or one passes: the policies end in an end-of-tier deny "
                f"(add a Pass rule to let the profiles decide)"
            )
        return f"{where} would allow this flow ({allows}), but {decision} decides first"
    return f"{where} allows {allows}; here {'; '.join(reasons)}"
