"""A local endpoint's chains: its own `cali-fw-`/`cali-tw-`, and the program chains it shares.

An endpoint chain (`cali-fw-`/`cali-tw-`) holds what is the endpoint's own, anti-spoofing
(fw only), then goes (-g) to the program chain shared by every endpoint with the same
policies and profiles (`cali-fp-<hash>`/`cali-tp-<hash>`), which runs (for NEW flows:
established ones were accepted at the top of cali-FORWARD): clear the accept/pass bits, then
each applicable policy's chain (`cali-pi-`/`cali-po-`) in Calico order, skipped once the pass
bit is set, returning as soon as the accept bit is set; if policies applied and none allowed
or passed, DROP (end of tier); then each profile's chain (`cali-pri-`/`cali-pro-`) in the
endpoint's order; finally DROP (default deny). Sharing the program keeps the per-endpoint
cost at about five rules (two chains' worth plus dispatch), which matters because every
legacy iptables commit costs time in proportion to the whole table.

The functions here are pure; `agent.calc.calculator.Calculator` memoizes them, so an
endpoint whose inputs did not change costs one lookup per calculation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from agent.calc.model import Chain, IptRule, LocalEndpoint, Route, make_chain
from agent.calc.names import (
    ACCEPT_MARK,
    PASS_MARK,
    SCRATCH_MARK,
    endpoint_chain,
    mark_match,
    profile_chain,
    program_chain,
    set_mark,
)
from agent.calc.origin import RuleOrigin
from agent.calc.rules import DROP, RETURN_IF_ACCEPTED, from_origin, nflog_rule, v4_nets
from calico.policy import EGRESS, INGRESS


class PolicyRefs(NamedTuple):
    """The policies that apply to an endpoint in one direction, in Calico order."""

    chains: tuple[str, ...]  # their chain names (cali-pi-/cali-po-)
    names: tuple[str, ...]  # their names, for the flow log's end-of-tier prefix


class EndpointKey(NamedTuple):
    """Everything an endpoint's chains and routes depend on: the memo key of its block.

    A tuple (not a dataclass) so that hashing and comparing it, once per endpoint per
    calculation, stay in C."""

    iface: str
    ip_networks: tuple[str, ...]
    namespace: str
    name: str
    orchestrator: str
    workload: str
    endpoint: str
    all_profiles: tuple[str, ...]  # as the endpoint lists them (status reports these)
    profiles: tuple[str, ...]  # those that exist: a missing profile decides nothing
    ingress: PolicyRefs
    egress: PolicyRefs


@dataclass(frozen=True)
class EndpointBlock:
    """What one local endpoint contributes to the dataplane."""

    chains: tuple[Chain, ...]
    endpoint: LocalEndpoint
    routes: tuple[tuple[str, Route], ...]


def program(
    direction: str,
    policy_chains: tuple[str, ...],
    profile_chains: tuple[str, ...],
    policy_names: tuple[str, ...] = (),
    profile_names: tuple[str, ...] = (),
) -> Chain:
    """What every endpoint with these policies and profiles runs, after its own checks.

    Endpoints share it: the kernel's cost of any iptables commit grows with the whole
    table, so the per-endpoint part is kept to a rule or two."""
    rules: list[IptRule] = [IptRule((), set_mark(0, ACCEPT_MARK | PASS_MARK))]
    for chain in policy_chains:
        rules.append(IptRule(mark_match(0, PASS_MARK), ("-j", chain)))
        rules.append(RETURN_IF_ACCEPTED)
    if policy_chains:
        tier = RuleOrigin("pol", ",".join(policy_names), direction)
        rules.append(nflog_rule(tier, mark_match(0, PASS_MARK)))
        rules.append(IptRule(mark_match(0, PASS_MARK), ("-j", "DROP"), tier))  # end of tier
    for chain in profile_chains:
        rules.append(IptRule((), ("-j", chain)))
        rules.append(RETURN_IF_ACCEPTED)
    default = RuleOrigin("def", ",".join(profile_names), direction)
    rules.append(nflog_rule(default))
    rules.append(from_origin(DROP, default))  # nothing allowed it
    return make_chain(program_chain(direction, policy_chains, profile_chains), rules)


def own_chain(iface: str, direction: str, nets: tuple[str, ...], program_name: str) -> Chain:
    """The endpoint's own chain: anti-spoofing (egress only), then on to its program."""
    rules: list[IptRule] = []
    if direction == EGRESS:
        # Anti-spoofing: a workload may only send from its own addresses.
        if not nets:
            rules.append(DROP)
        elif len(nets) == 1:
            rules.append(IptRule(("!", "-s", nets[0]), ("-j", "DROP")))
        else:
            rules.append(IptRule((), set_mark(0, SCRATCH_MARK)))
            rules += [IptRule(("-s", n), set_mark(SCRATCH_MARK, SCRATCH_MARK)) for n in nets]
            rules.append(IptRule(mark_match(0, SCRATCH_MARK), ("-j", "DROP")))
    rules.append(IptRule((), ("-g", program_name)))
    return make_chain(endpoint_chain(iface, direction), rules)


def endpoint_block(
    key: EndpointKey,
    *,
    nets_of: Callable[[tuple[str, ...]], tuple[str, ...]] = v4_nets,
    program_of: Callable[..., Chain] = program,
    own_chain_of: Callable[[str, str, tuple[str, ...], str], Chain] = own_chain,
) -> EndpointBlock:
    """Everything one local endpoint contributes; the same key gives the same objects (the
    calculator passes its memoized builders), so a change elsewhere (a profile's rules,
    another endpoint) costs this endpoint a lookup."""
    nets = nets_of(key.ip_networks)
    chains: list[Chain] = []
    for direction, refs in ((INGRESS, key.ingress), (EGRESS, key.egress)):
        prof_chains = tuple(profile_chain(p, direction) for p in key.profiles)
        prog = program_of(direction, refs.chains, prof_chains, refs.names, key.profiles)
        chains += [prog, own_chain_of(key.iface, direction, nets, prog.name)]
    ep = LocalEndpoint(
        namespace=key.namespace,
        name=key.name,
        orchestrator=key.orchestrator,
        workload=key.workload,
        endpoint=key.endpoint,
        iface=key.iface,
        nets=nets,
        profiles=key.all_profiles,
        ingress_policies=key.ingress.names,
        egress_policies=key.egress.names,
    )
    return EndpointBlock(tuple(chains), ep, tuple((n, Route(n, dev=key.iface)) for n in nets))
