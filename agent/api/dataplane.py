"""GET /v1/dataplane as data (pure): the kernel's chains with their counters, each rule joined
to the policy/profile rule it was rendered from, the ipsets and the routes; for one endpoint
(`?endpoint=`), only what its packets can walk through.

The kernel's save (agent/api/counters.py) is the truth about what is there and what it
counted; the agent's desired dataplane knows where each rule came from (`IptRule.origin`,
agent/calc/origin.py). The two meet on the `cali:<hash>` comment every agent rule carries,
so a rule edited by hand (a hash the agent did not write) shows with no origin rather than
with a wrong one.

Chains come in walk order: from the roots (cali-FORWARD, cali-INPUT, cali-OUTPUT; for an
endpoint its cali-tw-/cali-fw-) depth first through every `-j`/`-g` to a cali- chain, as a
packet would go, then whatever no root reaches. At 1,000 endpoints that is about 5,500 rules;
the join and the walk cost a few ms beside the save itself (bench/bench_dataplane_view.py).
"""

from __future__ import annotations

import re
from typing import Any

from agent.calc.model import Dataplane, LocalEndpoint
from agent.calc.names import CHAIN_FORWARD, CHAIN_INPUT, CHAIN_OUTPUT, endpoint_chain
from agent.dataplane.iptables import rule_hash
from calico.policy import EGRESS, INGRESS

KernelChains = dict[str, list[dict[str, Any]]]  # agent.api.counters.chain_counters

NODE_ROOTS = (CHAIN_FORWARD, CHAIN_INPUT, CHAIN_OUTPUT)
_JUMP_RE = re.compile(r"-[jg] (cali-[^\s\"]+)")
_SET_RE = re.compile(r"--match-set (\S+)")


class UnknownEndpoint(LookupError):
    """`?endpoint=` names no endpoint this agent programs (the API answers 404)."""


def origins_by_hash(desired: Dataplane | None) -> dict[str, dict[str, Any]]:
    """`cali:<hash>` -> the origin's dict, for every rule the agent rendered from one."""
    out: dict[str, dict[str, Any]] = {}
    if desired is None:
        return out
    for chain in desired.chains.values():
        for rule, h in zip(chain.rules, chain.hashes, strict=True):
            if rule.origin is not None:
                out[h] = rule.origin.to_dict()
    return out


def find_endpoint(desired: Dataplane | None, endpoint: str) -> LocalEndpoint:
    """The local endpoint by its WorkloadEndpoint name, `namespace/name` or interface."""
    for ep in desired.endpoints if desired is not None else ():
        if endpoint in (ep.name, ep.key, ep.iface):
            return ep
    raise UnknownEndpoint(f"no endpoint {endpoint!r} is programmed on this node")


def jumps(rules: list[dict[str, Any]]) -> list[str]:
    """The cali- chains these rules jump or go to, in rule order, without repeats."""
    seen: dict[str, None] = {}
    for r in rules:
        for m in _JUMP_RE.finditer(r["rule"]):
            seen.setdefault(m.group(1), None)
    return list(seen)


def walk(chains: KernelChains, roots: tuple[str, ...], *, rest: bool) -> list[str]:
    """Chain names depth first from `roots` through their jumps; with `rest`, then every
    chain not reached (sorted), so nothing the kernel holds is hidden."""
    order: dict[str, None] = {}
    stack = [r for r in reversed(roots) if r in chains]
    while stack:
        name = stack.pop()
        if name in order:
            continue
        order[name] = None
        stack += [t for t in reversed(jumps(chains[name])) if t in chains and t not in order]
    if rest:
        for name in sorted(chains):
            order.setdefault(name, None)
    return list(order)


def dataplane_view(
    desired: Dataplane | None, kernel: KernelChains, endpoint: str | None = None
) -> dict[str, Any]:
    """The document GET /v1/dataplane answers. Without `endpoint`: the node's every cali
    chain, ipset and route. With it: that endpoint's chains and what they reach, the ipsets
    those rules match on, its routes, and the endpoint itself (name, interface, addresses,
    profiles, policies). Raises UnknownEndpoint."""
    origins = origins_by_hash(desired)
    ep = find_endpoint(desired, endpoint) if endpoint else None
    if ep is None:
        names = walk(kernel, NODE_ROOTS, rest=True)
    else:
        roots = (endpoint_chain(ep.iface, INGRESS), endpoint_chain(ep.iface, EGRESS))
        names = walk(kernel, roots, rest=False)
    chains: KernelChains = {}
    for name in names:
        out = []
        for r in kernel[name]:
            origin = origins.get(rule_hash(r["rule"]) or "")
            out.append({**r, "origin": origin} if origin else r)
        chains[name] = out

    ipsets: dict[str, Any] = {}
    routes: list[dict[str, Any]] = []
    if desired is not None:
        wanted = None
        if ep is not None:
            wanted = {m.group(1) for rules in chains.values() for r in rules
                      for m in _SET_RE.finditer(r["rule"])}  # fmt: skip
        ipsets = {
            name: {"type": s.type, "members": sorted(s.members)}
            for name, s in desired.ipsets.items()
            if wanted is None or name in wanted
        }
        for r in [*desired.routes.values(), *desired.endpoint_routes.values()]:
            if ep is None or r.dev == ep.iface:
                routes.append({"dst": r.dst, "kind": r.kind, "dev": r.dev, "via": r.via})
    doc: dict[str, Any] = {
        "chains": chains,
        "ipsets": ipsets,
        "routes": routes,
        "summary": desired.summary() if desired else {},
    }
    if ep is not None:
        doc["endpoint"] = {
            "name": ep.name,
            "namespace": ep.namespace,
            "interface": ep.iface,
            "ipNetworks": list(ep.nets),
            "profiles": list(ep.profiles),
            "ingressPolicies": list(ep.ingress_policies),
            "egressPolicies": list(ep.egress_policies),
        }
    return doc
