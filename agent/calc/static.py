"""The chains every node has whatever its endpoints: the hooks, cali-FORWARD, host protection.

INPUT   -> cali-INPUT   -> (IPIP pools only) protocol 4 not from a node's address: DROP
                        -> (-i cali+) cali-wl-to-host: established, else DROP
OUTPUT  -> cali-OUTPUT  -> (-o cali+) RETURN: the host may reach its own workloads
FORWARD -> cali-FORWARD -> clear our mark bits
                        -> (-i cali+) -d <datastore host>: DROP
                        -> cali+ RELATED,ESTABLISHED: ACCEPT; INVALID: DROP
                        -> (-i cali+) cali-from-wl-dispatch -> -g cali-fw-<iface> (egress)
                        -> (-o cali+) cali-to-wl-dispatch   -> -g cali-tw-<iface> (ingress)
                        -> accept mark set: ACCEPT
"""

from __future__ import annotations

from agent.calc.model import Chain, Inputs, IPSet, IptRule, make_chain
from agent.calc.names import (
    ACCEPT_MARK,
    ALL_MARKS,
    CHAIN_FORWARD,
    CHAIN_FROM_DISPATCH,
    CHAIN_INPUT,
    CHAIN_OUTPUT,
    CHAIN_TO_DISPATCH,
    CHAIN_WL_TO_HOST,
    IFACE_PREFIX,
    mark_match,
    set_mark,
)
from agent.calc.rules import CT_ESTABLISHED, CT_INVALID, DROP

# Felix's set of every node's address: IPIP is accepted only from these (cali-INPUT).
ALL_HOSTS_IPSET = "cali40all-hosts-net"
IPPROTO_IPIP = "4"

HOOKS = {"INPUT": CHAIN_INPUT, "FORWARD": CHAIN_FORWARD, "OUTPUT": CHAIN_OUTPUT}

# What a workload may reach on its own node (INPUT from cali+). Nothing: the agent API and
# etcd must stay out of reach of pods, and DHCP/DNS are not served by the node. An entry is
# extra match tokens accepted before the final DROP, e.g. ("-p", "udp", "--dport", "53").
HOST_SERVICES_FROM_WORKLOADS: tuple[tuple[str, ...], ...] = ()


def static_chains(protected_hosts: tuple[str, ...] = (), ipip_guard: bool = False) -> list[Chain]:
    """cali-FORWARD, cali-INPUT, cali-wl-to-host, cali-OUTPUT; `protected_hosts` (the
    datastore's addresses) are dropped from workloads ahead of any policy verdict;
    `ipip_guard`: IPIP to this host is dropped unless it comes from a node (the
    `ALL_HOSTS_IPSET`), as Felix does when IPIP is on, so nobody else can inject packets
    into tunl0 (they would arrive as if from a remote pod)."""
    wl = IFACE_PREFIX + "+"
    forward = [
        IptRule((), set_mark(0, ALL_MARKS)),
        # Datastore protection first: no verdict of any policy applies to these.
        *(IptRule(("-i", wl, "-d", f"{host}/32"), ("-j", "DROP")) for host in protected_hosts),
        # Established flows of workloads skip the dispatch tree: most packets stop here.
        # Safe ahead of anti-spoofing: strict rp_filter on every cali interface drops a
        # forged source in routing, before FORWARD; the fw chain's own check covers NEW.
        IptRule(("-i", wl, *CT_ESTABLISHED.match), CT_ESTABLISHED.target),
        IptRule(("-o", wl, *CT_ESTABLISHED.match), CT_ESTABLISHED.target),
        IptRule(("-i", wl, *CT_INVALID.match), CT_INVALID.target),
        IptRule(("-o", wl, *CT_INVALID.match), CT_INVALID.target),
        IptRule(("-i", IFACE_PREFIX + "+"), ("-j", CHAIN_FROM_DISPATCH)),
        IptRule(("-o", IFACE_PREFIX + "+"), ("-j", CHAIN_TO_DISPATCH)),
        IptRule(mark_match(ACCEPT_MARK, ACCEPT_MARK), ("-j", "ACCEPT")),
    ]
    wl_to_host = [CT_ESTABLISHED, CT_INVALID]
    wl_to_host += [IptRule(m, ("-j", "ACCEPT")) for m in HOST_SERVICES_FROM_WORKLOADS]
    wl_to_host.append(DROP)
    return [
        make_chain(CHAIN_FORWARD, forward),
        make_chain(
            CHAIN_INPUT, [*_ipip_guard(ipip_guard), IptRule(("-i", wl), ("-g", CHAIN_WL_TO_HOST))]
        ),
        make_chain(CHAIN_WL_TO_HOST, wl_to_host),
        # Calico lets a host reach its own workloads (health checks, probes).
        make_chain(CHAIN_OUTPUT, [IptRule(("-o", IFACE_PREFIX + "+"), ("-j", "RETURN"))]),
    ]


def _ipip_guard(on: bool) -> list[IptRule]:
    if not on:
        return []
    match = ("-p", IPPROTO_IPIP, "-m", "set", "!", "--match-set", ALL_HOSTS_IPSET, "src")
    return [IptRule(match, ("-j", "DROP"))]


def all_hosts_ipset(inputs: Inputs) -> IPSet:
    """Every node's IPv4 address (hash:net, ipset's spelling of a /32: the bare address)."""
    members = {n.ipv4_address for n in inputs.nodes.values() if n.ipv4_address}
    return IPSet(ALL_HOSTS_IPSET, "hash:net", frozenset(m for m in members if m))


def hook_chains() -> dict[str, Chain]:
    """The one jump each built-in chain gets, hashed like any other rule."""
    return {b: make_chain(b, [IptRule((), ("-j", target))]) for b, target in HOOKS.items()}
