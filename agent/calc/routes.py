"""The routes a node wants, from the IPAM blocks and the endpoints of other nodes.

Every one of them is programmed with `proto 80` (`agent.calc.names.ROUTE_PROTO`), the only
routes the dataplane ever replaces or deletes. Local endpoints' `/32 dev cali...` routes come
with their endpoint block (`agent.calc.endpoints`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from agent.calc.model import Inputs, Route
from agent.calc.rules import v4_nets
from calico.resources import Node


def node_address(node: Node | None) -> str | None:
    return node.ipv4_address if node is not None else None


def block_routes(
    inputs: Inputs, *, nets_of: Callable[[tuple[str, ...]], tuple[str, ...]] = v4_nets
) -> dict[str, Route]:
    """Blackholes for this node's blocks, a route per remote block via its node, and a /32
    via the hosting node for a remote endpoint whose address lies outside its node's blocks
    (a borrowed address). `nets_of` is the calculator's memoized `v4_nets`."""
    routes: dict[str, Route] = {}
    # bird backend: BIRD programs the routes to remote blocks (and borrowed /32s)
    remote = getattr(inputs, "backend", "direct") == "direct"
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
        via = node_address(inputs.nodes.get(owner))
        if via and remote:
            routes[str(net)] = Route(str(net), via=via)
    for ep in inputs.endpoints if remote else ():
        owner = ep.spec.node
        if owner == inputs.node or not owner:
            continue
        via = node_address(inputs.nodes.get(owner))
        if not via:
            continue
        for text in nets_of(tuple(ep.spec.ip_networks)):
            net = ipaddress.ip_network(text)
            if not any(net.subnet_of(b) for b in own_blocks.get(owner, [])):
                routes[str(net)] = Route(str(net), via=via)
    return routes
