"""The dispatch trees: from a `cali*` interface to its endpoint chain, in a few short hops.

    cali-from-wl-dispatch (-i cali+, from cali-FORWARD) -> -g cali-fw-<iface> (egress)
    cali-to-wl-dispatch   (-o cali+, from cali-FORWARD) -> -g cali-tw-<iface> (ingress)

A `cali*` interface with no endpoint is dropped at the end of each chain: nothing gets
through an interface the agent does not know.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.calc.model import Chain, IptRule, make_chain
from agent.calc.names import IFACE_PREFIX, MAX_CHAIN_NAME
from agent.calc.rules import DROP

DISPATCH_FANOUT = 64  # more endpoints than this in a dispatch chain: split by next character

Pairs = tuple[tuple[str, str], ...]  # (interface, its endpoint chain), sorted by interface


def flat_dispatch(name: str, flag: str, pairs: Pairs) -> Chain:
    """One chain with a rule per interface: a leaf of the tree (or the whole of a small one)."""
    rules = [IptRule((flag, iface), ("-g", target)) for iface, target in pairs]
    rules.append(DROP)  # a cali* interface with no endpoint: nothing gets through
    return make_chain(name, rules)


def dispatch_chains(
    root: str, flag: str, pairs: Pairs, *, leaf: Callable[[str, str, Pairs], Chain] = flat_dispatch
) -> tuple[Chain, ...]:
    """`root` sends each interface to its chain (-g); unknown cali* interfaces are dropped.

    With many endpoints the chain splits by the next character of the interface name
    (`-i cali3+ -g cali-from-wl-dispatch-3`), so a packet walks a few short chains instead
    of one long one, and the rule count stays endpoints plus a few per level. `leaf` builds
    the flat chains (the calculator passes its memoized `flat_dispatch`: one endpoint more
    or less rebuilds one leaf, not the tree's every chain).
    """
    targets = dict(pairs)
    chains: list[Chain] = []

    def build(name: str, prefix: str, ifaces: list[str]) -> None:
        suffix_room = MAX_CHAIN_NAME - len(root) - 1
        if len(ifaces) <= DISPATCH_FANOUT or len(prefix) - len(IFACE_PREFIX) >= suffix_room:
            chains.append(leaf(name, flag, tuple((i, targets[i]) for i in ifaces)))
            return
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
        rules.append(DROP)  # a cali* interface with no endpoint: nothing gets through
        chains.append(make_chain(name, rules))

    build(root, IFACE_PREFIX, sorted(targets))
    return tuple(chains)
