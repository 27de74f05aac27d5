"""The routes a node wants, from the IPAM blocks, the IP pools and the endpoints of other
nodes.

Every one of them is programmed with `proto 80` (`agent.calc.names.ROUTE_PROTO`), the only
routes the dataplane ever replaces or deletes. Local endpoints' `/32 dev cali...` routes come
with their endpoint block (`agent.calc.endpoints`).

A remote block (or borrowed address) in a pool whose `ipipMode` asks for it goes through
the tunnel: `<block> via <node address> dev tunl0 onlink`. `Always` tunnels every remote
block of the pool; `CrossSubnet` only those whose node lies outside this node's subnet
(the prefix of this node's `spec.bgp.ipv4Address`; unknown counts as outside); `Never`
(or no pool) keeps the plain route via the node. In the `bird` backend BIRD programs all
of those routes and this module gives only the blackholes of this node's blocks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from agent.calc.model import Inputs, Route
from agent.calc.rules import v4_nets
from calico.resources import IPPool, Node

TUNNEL_DEVICE = "tunl0"
IPIP_MODES = ("Always", "CrossSubnet")


def node_address(node: Node | None) -> str | None:
    return node.ipv4_address if node is not None else None


def node_subnet(node: Node | None) -> ipaddress.IPv4Network | None:
    """The subnet of a node's `spec.bgp.ipv4Address` (`10.0.0.5/24` -> 10.0.0.0/24)."""
    if node is None or not node.spec.bgp or not node.spec.bgp.ipv4_address:
        return None
    iface = ipaddress.ip_interface(node.spec.bgp.ipv4_address)
    return iface.network if iface.version == 4 else None


def _v4_pool_nets(pools: Iterable[IPPool]) -> list[tuple[ipaddress.IPv4Network, IPPool]]:
    out = []
    for pool in pools:
        try:
            net = ipaddress.ip_network(pool.spec.cidr, strict=False)
        except ValueError:
            continue
        if net.version == 4:
            out.append((net, pool))
    # Most specific first: overlapping pools are resolved as IPAM resolves them.
    return sorted(out, key=lambda item: -item[0].prefixlen)


def ipip_pools(pools: Iterable[IPPool]) -> list[IPPool]:
    """The enabled IPv4 pools that ask for IPIP: the node then needs tunl0 and an address."""
    return [p for _, p in _v4_pool_nets(pools) if not p.spec.disabled and ipip_mode(p) != "Never"]


def ipip_mode(pool: IPPool | None) -> str:
    mode = pool.spec.ipip_mode if pool is not None else None
    return mode if mode in IPIP_MODES else "Never"


def block_routes(
    inputs: Inputs, *, nets_of: Callable[[tuple[str, ...]], tuple[str, ...]] = v4_nets
) -> dict[str, Route]:
    """Blackholes for this node's blocks, a route per remote block via its node, and a /32
    via the hosting node for a remote endpoint whose address lies outside its node's blocks
    (a borrowed address); through tunl0 where the pool's ipipMode says so; only the
    blackholes in the `bird` backend. `nets_of` is the calculator's memoized `v4_nets`."""
    routes: dict[str, Route] = {}
    own_blocks: dict[str, list[ipaddress.IPv4Network]] = {}
    remote = inputs.backend != "bird"
    pool_nets = _v4_pool_nets(inputs.pools)
    here = node_subnet(inputs.nodes.get(inputs.node))

    def route(net: ipaddress.IPv4Network, via: str) -> Route:
        pool = next((p for pn, p in pool_nets if net.subnet_of(pn)), None)
        mode = ipip_mode(pool)
        tunnel = mode == "Always" or (
            mode == "CrossSubnet" and (here is None or ipaddress.ip_address(via) not in here)
        )
        if tunnel:
            return Route(str(net), via=via, dev=TUNNEL_DEVICE, onlink=True)
        return Route(str(net), via=via)

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
            routes[str(net)] = route(net, via)
    if not remote:
        return routes
    for ep in inputs.endpoints:
        owner = ep.spec.node
        if owner == inputs.node or not owner:
            continue
        via = node_address(inputs.nodes.get(owner))
        if not via:
            continue
        for text in nets_of(tuple(ep.spec.ip_networks)):
            net = ipaddress.ip_network(text)
            if not any(net.subnet_of(b) for b in own_blocks.get(owner, [])):
                routes[str(net)] = route(net, via)
    return routes


def tunnel_address(inputs: Inputs) -> str | None:
    """This node's tunnel address (Node.spec.bgp.ipv4IPIPTunnelAddr), when IPIP is wanted."""
    node = inputs.nodes.get(inputs.node)
    if node is None or not node.spec.bgp or not ipip_pools(inputs.pools):
        return None
    addr = node.spec.bgp.ipv4_ipip_tunnel_addr
    if not addr:
        return None
    try:
        return str(ipaddress.ip_interface(addr).ip)
    except ValueError:
        return None
