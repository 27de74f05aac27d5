"""The lab's address plan, as plain data: which subnets, which node on which, who routes.

Pure functions of the options and one chosen address block; `lab.cluster` builds what the
plan says. Two topologies:

- ``flat``: one /24 (or the pinned --subnet); the root link is .1, the bridge .254, node i
  is .(10 + i). Every node is on one L2 segment.
- ``routed``: a block of 2**m /24s (the smallest holding K + 1 of them). The first /24 is
  the root link's, each of the next K is one node subnet with its own bridge; the router
  has .254 on every one of them. Nodes are dealt round robin (calico-01 on the first
  subnet, calico-02 on the second, ...), so any two consecutive nodes are in different
  subnets; node i keeps the address .(10 + i) of its subnet, unique lab-wide. The root
  link's address carries the whole block's prefix, so its connected route covers every
  node subnet and the router answers ARP for them (proxy ARP on its root port): etcd is
  reached through the router with no other route in the root namespace.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

TOPOLOGIES = ("flat", "routed")
IPIP_MODES = ("Never", "Always", "CrossSubnet")
BACKENDS = ("bird", "direct")  # calicoctl node run --backend
MIN_SUBNETS, MAX_SUBNETS = 2, 8
DEFAULT_SUBNETS = 2
NODE_OFFSET = 10  # node i gets its subnet's address .(10 + i)
TOR_AS = 65000  # the ToR's AS; node i is in AS TOR_AS + i ("AS per compute server")
CLUSTER_AS = 64512  # BGPConfiguration default's asNumber (Calico's default)


class TopologyError(ValueError):
    """Options that cannot make a working lab; the message is one line for the operator."""


@dataclass(frozen=True)
class Options:
    topology: str = "flat"
    subnets: int = DEFAULT_SUBNETS  # routed only
    tor_bgp: bool = False
    ipip_mode: str = "Never"
    backend: str = "bird"

    def check(self, nodes: int) -> None:
        """Refuse, before anything is built, what cannot carry pod traffic."""
        if self.topology not in TOPOLOGIES:
            raise TopologyError(f"--topology must be one of {', '.join(TOPOLOGIES)}")
        if self.ipip_mode not in IPIP_MODES:
            raise TopologyError(f"--ipip-mode must be one of {', '.join(IPIP_MODES)}")
        if self.backend not in BACKENDS:
            raise TopologyError(f"--backend must be one of {', '.join(BACKENDS)}")
        if self.backend == "direct" and self.topology != "flat":
            raise TopologyError(
                "--backend direct routes each remote block via its node's address, which only "
                "works on one L2 segment: use it with --topology flat"
            )
        if self.topology == "flat":
            if self.tor_bgp:
                raise TopologyError("--tor-bgp needs --topology routed (a flat lab has no router)")
            return
        if not MIN_SUBNETS <= self.subnets <= MAX_SUBNETS:
            raise TopologyError(f"--subnets must be between {MIN_SUBNETS} and {MAX_SUBNETS}")
        if nodes < self.subnets:
            raise TopologyError(f"--subnets {self.subnets} needs at least {self.subnets} nodes")
        if not self.tor_bgp and self.ipip_mode == "Never":
            raise TopologyError(
                "a routed lab cannot carry pod traffic between its subnets: its router knows "
                "no pod routes; add --tor-bgp or --ipip-mode CrossSubnet|Always"
            )

    @property
    def block_prefixlen(self) -> int:
        """Prefix length of the whole lab's address block."""
        if self.topology == "flat":
            return 24
        return 24 - math.ceil(math.log2(self.subnets + 1))


@dataclass(frozen=True)
class Subnet:
    cidr: str
    bridge: str  # in the fabric namespace
    router: str  # the fabric namespace's address on it: the nodes' default gateway


@dataclass(frozen=True)
class NodePlan:
    index: int
    address: str
    prefixlen: int
    subnet: int  # index into Plan.subnets


@dataclass(frozen=True)
class Plan:
    topology: str
    block: str  # every lab address is in it
    root_address: str
    root_prefixlen: int  # the root link's: its connected route is the root's only change
    root_peer_address: str | None  # routed: the router's address on the root link
    subnets: tuple[Subnet, ...]
    nodes: tuple[NodePlan, ...] = field(default=())

    def node(self, index: int) -> NodePlan:
        return self.nodes[index - 1]


def plan(options: Options, block: ipaddress.IPv4Network, count: int) -> Plan:
    """Where everything goes, for `count` nodes in `block` (checked against the options)."""
    if options.topology == "flat":
        if count + NODE_OFFSET >= block.num_addresses - 2:
            raise TopologyError(f"{count} nodes do not fit in {block}")
        sub = Subnet(str(block), "br0", str(block[-2]))
        nodes = tuple(
            NodePlan(i, str(block[NODE_OFFSET + i]), block.prefixlen, 0)
            for i in range(1, count + 1)
        )
        return Plan("flat", str(block), str(block[1]), block.prefixlen, None, (sub,), nodes)
    if block.prefixlen > options.block_prefixlen:
        raise TopologyError(
            f"{options.subnets} subnets and the root link need a /{options.block_prefixlen};"
            f" {block} is too small"
        )
    slices = list(block.subnets(new_prefix=24))
    root_net = slices[0]
    subnets = tuple(
        Subnet(str(slices[j + 1]), f"br{j + 1}", str(slices[j + 1][-2]))
        for j in range(options.subnets)
    )
    nodes = []
    for i in range(1, count + 1):
        j = (i - 1) % options.subnets
        net = slices[j + 1]
        nodes.append(NodePlan(i, str(net[NODE_OFFSET + i]), 24, j))
    return Plan(
        "routed",
        str(block),
        str(root_net[1]),
        block.prefixlen,
        str(root_net[-2]),
        subnets,
        tuple(nodes),
    )


def node_as(index: int) -> int:
    """The AS of node `index` in a lab with a ToR: one per node, so that a block's route
    learned through the ToR never carries the receiving node's own AS (eBGP loop check)."""
    return TOR_AS + index
