"""This node's BIRD 2 configuration, rendered from plain data (no I/O, no datastore).

    inputs = bird_inputs("calico-01", resources, blocks)   # from the agent's cache
    text = render_bird_config(inputs)

What the text makes BIRD do:

- router id = this node's IPv4 address; `protocol device` to know the interfaces.
- `protocol static`: a blackhole per IPAM block affine to this node: what it advertises.
- `protocol direct` (the node's own interfaces, not cali*/tunl*) and the kernel protocol's
  `learn` feed BIRD the connected and kernel routes, so a BGP next hop resolves
  (`gateway recursive`) whether the peer shares the node's subnet or sits behind a router.
  The kernel protocol learns, inside the pools, only /32s on cali* interfaces (a borrowed
  address of a local pod), so they are advertised too.
- BGP sessions: the full node-to-node mesh (when `nodeToNodeMeshEnabled`), then BGPPeers
  that apply to this node (global, `node`, `nodeSelector`). A BGPPeer whose peerIP is a
  Node's address is a node-to-node peering and so works both ways: the node it names
  peers back with every node the BGPPeer applies to; when that node has a
  `routeReflectorClusterID`, those peers are its `rr client`s.
- Filters: only routes inside the IP pools are imported from or exported to peers; the
  kernel gets only BGP-learned pool routes (`proto bird`). A route in an IPIP pool
  (ipipMode Always, or CrossSubnet with the next hop outside this node's subnet) whose
  next hop is a node goes `via <next hop> dev tunl0 onlink`.
- Graceful restart on every session: when a node's BIRD dies and calico-node starts it
  again, its peers keep the routes they had from it (stale, for up to 120 s) until it
  has sent them again, so pod traffic does not stop for the restart.
- `logSeverityScreen` picks the log classes written to stderr, and Debug turns on
  protocol debugging.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from calico.bgp import PEER_TYPES  # the protocol name's prefix -> peer type
from calico.resources import (
    DEFAULT_AS_NUMBER,
    BGPConfiguration,
    BGPPeer,
    IPPool,
    Node,
    Resource,
    parse_as_number,
)
from calico.selector import SelectorError, parse

TUNNEL_DEVICE = "tunl0"
CLUSTER_CONFIG = "default"  # the BGPConfiguration every node reads
# Seconds a restarted BIRD (-R) waits for its peers' End-of-RIB before it exports and
# prunes anyway: a mesh peer answers within a second or two, and a peer that never answers
# must not hold the node's routes back for BIRD's default of 240 s.
GR_RECOVERY_WAIT = 10


LOG_CLASSES = {
    "Debug": "all",
    "Info": "{ info, remote, warning, error, auth, fatal, bug }",
    "Warning": "{ warning, error, auth, fatal, bug }",
    "Error": "{ error, auth, fatal, bug }",
    "Fatal": "{ fatal, bug }",
}


@dataclass(frozen=True)
class BGPNode:
    name: str
    address: str  # IPv4, no prefix
    prefixlen: int
    as_number: int | None = None  # None: the cluster's
    rr_cluster_id: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PeerSpec:
    name: str
    peer_ip: str
    as_number: int
    node: str | None = None
    node_selector: str | None = None


@dataclass(frozen=True)
class PoolSpec:
    cidr: str
    ipip_mode: str = "Never"  # Never | Always | CrossSubnet
    disabled: bool = False


@dataclass(frozen=True)
class BirdInputs:
    node: str
    nodes: tuple[BGPNode, ...] = ()
    blocks: tuple[str, ...] = ()  # this node's affine blocks
    pools: tuple[PoolSpec, ...] = ()
    peers: tuple[PeerSpec, ...] = ()
    as_number: int = DEFAULT_AS_NUMBER  # the cluster's (BGPConfiguration default)
    mesh: bool = True
    log_severity: str = "Info"

    def me(self) -> BGPNode | None:
        return next((n for n in self.nodes if n.name == self.node), None)


@dataclass(frozen=True)
class Peering:
    """One BGP session of this node."""

    protocol: str  # BIRD protocol name: <type prefix>_<address with _>
    address: str
    as_number: int
    peer_type: str  # a key of PEER_TYPES
    rr_client: bool = False
    multihop: bool = False


class RenderError(ValueError):
    """The inputs cannot make a configuration (this node has no address)."""


# ---------------------------------------------------------------- from resources


def bird_inputs(
    node: str, resources: Iterable[Resource], blocks: Mapping[str, str | None]
) -> BirdInputs:
    """The renderer's inputs from the agent's synced resources and block affinities."""
    nodes: list[BGPNode] = []
    pools: list[PoolSpec] = []
    peers: list[PeerSpec] = []
    config: BGPConfiguration | None = None
    for res in resources:
        if isinstance(res, Node):
            bgp = res.spec.bgp
            if not bgp or not bgp.ipv4_address:
                continue
            iface = ipaddress.ip_interface(bgp.ipv4_address)
            if iface.version != 4:
                continue
            nodes.append(
                BGPNode(
                    name=res.name,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    as_number=res.as_number,
                    rr_cluster_id=res.rr_cluster_id,
                    labels=tuple(sorted(res.metadata.labels.items())),
                )
            )
        elif isinstance(res, IPPool):
            net = ipaddress.ip_network(res.spec.cidr, strict=False)
            if net.version == 4:
                pools.append(
                    PoolSpec(str(net), res.spec.ipip_mode or "Never", bool(res.spec.disabled))
                )
        elif isinstance(res, BGPPeer):
            peers.append(
                PeerSpec(
                    name=res.name,
                    peer_ip=str(res.spec.peer_ip),
                    as_number=parse_as_number(res.spec.as_number),
                    node=res.spec.node or None,
                    node_selector=res.spec.node_selector or None,
                )
            )
        elif isinstance(res, BGPConfiguration) and res.name == CLUSTER_CONFIG:
            config = res
    mine = sorted(
        str(ipaddress.ip_network(cidr, strict=False))
        for cidr, owner in blocks.items()
        if owner == node and ipaddress.ip_network(cidr, strict=False).version == 4
    )
    return BirdInputs(
        node=node,
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        blocks=tuple(mine),
        pools=tuple(sorted(pools, key=lambda p: p.cidr)),
        peers=tuple(sorted(peers, key=lambda p: p.name)),
        as_number=config.as_number if config else DEFAULT_AS_NUMBER,
        mesh=config.mesh_enabled if config else True,
        log_severity=config.log_severity if config else "Info",
    )


# ---------------------------------------------------------------- who peers with whom


def _applies(peer: PeerSpec, node: BGPNode) -> bool:
    if peer.node:
        return peer.node == node.name
    if peer.node_selector:
        try:
            return parse(peer.node_selector).evaluate(dict(node.labels))
        except SelectorError:
            return False
    return True


def _subnet(node: BGPNode) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Interface(f"{node.address}/{node.prefixlen}").network


def peerings(inputs: BirdInputs) -> list[Peering]:
    """This node's BGP sessions, one per peer address (an explicit BGPPeer wins over the
    mesh for the same address), sorted by protocol name."""
    me = inputs.me()
    if me is None:
        return []
    by_address = {n.address: n for n in inputs.nodes}
    my_as = me.as_number or inputs.as_number

    def node_as(n: BGPNode) -> int:
        return n.as_number or inputs.as_number

    chosen: dict[str, Peering] = {}

    def add(address: str, asn: int, peer_type: str, peer_node: BGPNode | None) -> None:
        if address == me.address:
            return
        if address in chosen and peer_type == "mesh":
            return
        rr_client = bool(
            me.rr_cluster_id
            and peer_node is not None
            and peer_node.rr_cluster_id != me.rr_cluster_id
            and asn == my_as
        )
        if rr_client:
            peer_type = "rrc"
        multihop = ipaddress.IPv4Address(address) not in _subnet(me)
        chosen[address] = Peering(
            protocol=f"{peer_type}_{address.replace('.', '_')}",
            address=address,
            as_number=asn,
            peer_type=peer_type,
            rr_client=rr_client,
            multihop=multihop,
        )

    for peer in inputs.peers:
        target = by_address.get(peer.peer_ip)
        kind = "node" if (peer.node or peer.node_selector) else "global"
        if _applies(peer, me):
            add(peer.peer_ip, peer.as_number, kind, target)
        if target is not None and target.name == me.name:
            # A peering with this node's own address: the other end of every node it
            # applies to.
            for other in inputs.nodes:
                if other.name != me.name and _applies(peer, other):
                    add(other.address, node_as(other), kind, other)
    if inputs.mesh:
        for other in inputs.nodes:
            if other.name != me.name:
                add(other.address, node_as(other), "mesh", other)
    return sorted(chosen.values(), key=lambda p: p.protocol)


# ---------------------------------------------------------------- the text


def _prefix_set(nets: Iterable[str], more_specific: bool = True) -> str:
    suffix = "+" if more_specific else ""
    return "[ " + ", ".join(f"{n}{suffix}" for n in nets) + " ]"


def _pool_match(pools: Iterable[PoolSpec]) -> str:
    """A BIRD boolean: the route is inside one of `pools` (false when there are none)."""
    nets = [p.cidr for p in pools]
    return f"net ~ {_prefix_set(nets)}" if nets else "false"


def render_bird_config(inputs: BirdInputs) -> str:
    """The whole bird.conf for `inputs.node`. RenderError when the node has no address."""
    me = inputs.me()
    if me is None:
        raise RenderError(f"node {inputs.node} has no IPv4 address (spec.bgp.ipv4Address)")
    my_as = me.as_number or inputs.as_number
    subnet = _subnet(me)
    severity = inputs.log_severity if inputs.log_severity in LOG_CLASSES else "Info"
    pools = [p for p in inputs.pools]
    node_hosts = sorted(
        {n.address for n in inputs.nodes if n.name != me.name}, key=ipaddress.IPv4Address
    )
    always = [p for p in pools if p.ipip_mode == "Always"]
    cross = [p for p in pools if p.ipip_mode == "CrossSubnet"]
    sessions = peerings(inputs)

    out: list[str] = []
    w = out.append
    w(f"# BIRD configuration of node {me.name}, written by calico-agent: edits are replaced.")
    w(f"# {len(sessions)} BGP session(s); {len(inputs.blocks)} local block(s).")
    w(f"router id {me.address};")
    w(f"log stderr {LOG_CLASSES[severity]};")
    w("debug protocols all;" if severity == "Debug" else "debug protocols { states };")
    w(f"graceful restart wait {GR_RECOVERY_WAIT};")
    w("")
    w("function calico_pool_route() {")
    w(f"  return {_pool_match(pools)};")
    w("}")
    w("")
    # Where BGP-learned pool routes go through the tunnel.
    w("function calico_via_tunnel(ip nh) {")
    if node_hosts and (always or cross):
        w(f"  if !(nh ~ [ {', '.join(node_hosts)} ]) then return false;")
        if always:
            w(f"  if {_pool_match(always)} then return true;")
        if cross:
            w(f"  if ({_pool_match(cross)}) && !(nh ~ {subnet}) then return true;")
    w("  return false;")
    w("}")
    w("")
    w("filter calico_from_peers {")
    w("  if calico_pool_route() then accept;")
    w("  reject;")
    w("}")
    w("")
    w("filter calico_to_peers {")
    w("  if calico_pool_route() then accept;")
    w("  reject;")
    w("}")
    w("")
    w("filter calico_from_kernel {")
    w("  # inside the pools, only a local pod's /32 (a borrowed address) is worth learning")
    w('  if calico_pool_route() then { if ifname ~ "cali*" then accept; reject; }')
    w("  accept;  # the rest resolves BGP next hops")
    w("}")
    w("")
    # (declared before the body: BIRD 2.0.12 fails at run time on a declaration inside it)
    w("filter calico_to_kernel")
    w("ip nh;")
    w("{")
    w("  if source != RTS_BGP then reject;")
    w("  if !calico_pool_route() then reject;")
    w("  nh = bgp_next_hop;")
    w("  if calico_via_tunnel(nh) then {")
    w("    onlink = true;")
    w(f'    ifname = "{TUNNEL_DEVICE}";')
    w("    gw = nh;")
    w("  }")
    w("  accept;")
    w("}")
    w("")
    w("protocol device {")
    w("  scan time 10;")
    w("}")
    w("")
    w("protocol direct {")
    w("  ipv4;")
    w(f'  interface -"cali*", -"{TUNNEL_DEVICE}", -"lo", "*";')
    w("}")
    w("")
    w("protocol kernel {")
    w("  learn;")
    w("  persist;  # routes stay while BIRD restarts, as the agent's do")
    w("  graceful restart on;  # after a restart (-R): prune nothing until relearned")
    w("  scan time 10;")
    w("  ipv4 {")
    w("    import filter calico_from_kernel;")
    w("    export filter calico_to_kernel;")
    w("  };")
    w("}")
    w("")
    w("protocol static calico_blocks {")
    w("  ipv4;")
    for block in inputs.blocks:
        w(f"  route {block} blackhole;")
    w("}")
    for s in sessions:
        w("")
        w(f"# {PEER_TYPES[s.peer_type]}")
        w(f"protocol bgp {s.protocol} {{")
        w(f"  local {me.address} as {my_as};")
        w(f"  neighbor {s.address} as {s.as_number};")
        w("  multihop;" if s.multihop else "  direct;")
        if s.rr_client:
            w("  rr client;")
            w(f"  rr cluster id {me.rr_cluster_id};")
        w("  graceful restart on;  # a peer's BIRD restarting (kill -9 too): its routes stay")
        w("  connect delay time 1;")
        w("  connect retry time 5;")
        w("  error wait time 1, 10;")
        w("  ipv4 {")
        w("    gateway recursive;")
        w("    import filter calico_from_peers;")
        w("    export filter calico_to_peers;")
        w("  };")
        w("}")
    return "\n".join(out) + "\n"


def render_bootstrap(node: str, address: str) -> str:
    """What BIRD starts with before the agent has rendered anything: its router id and the
    device protocol, no peers."""
    return render_bird_config(
        BirdInputs(node=node, nodes=(BGPNode(node, address, 32),), mesh=False)
    )
