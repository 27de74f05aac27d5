"""The etcd key layout, Calico's own, shared by every program that reads or writes etcd.

    /calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>   typed resources
    /calico/ipam/v2/assignment/ipv4/block/<a.b.c.d-nn>                    IPAM blocks
    /calico/ipam/v2/handle/<handle id>                                    IPAM handles
    /calico/ipam/v2/host/<node>/ipv4/block/<a.b.c.d-nn>                   block affinities
    /calico/felix/v2/no-region/host/<node>/status                         agent status
    /calico/felix/v2/no-region/host/<node>/workload/<orch>/<wep>/endpoint/<if>

A `/` in a CIDR would add a level to the key, so blocks are spelled `10.0.0.0-26`. Every
prefix ends with `/` so that a prefix read of one never matches a sibling (`ippools/` and
not `ippools-x/`).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from calico.resources import Resource

# A kind: its name as typed, a calico.resources class, or a calico.kinds.KindInfo (what
# `calicoctl get` uses, so that a read never imports the resource classes: ~23 ms).
Kind = Any


def _kind(kind: Kind) -> Any:
    if isinstance(kind, str):
        from calico.resources import kind_class

        return kind_class(kind)
    return kind


ROOT = "/calico/"
RESOURCE_ROOT = "/calico/resources/v3/projectcalico.org/"
IPAM_ROOT = "/calico/ipam/v2/"
BLOCK_PREFIX = IPAM_ROOT + "assignment/ipv4/block/"
HANDLE_PREFIX = IPAM_ROOT + "handle/"
HOST_PREFIX = IPAM_ROOT + "host/"
FELIX_ROOT = "/calico/felix/v2/"
FELIX_REGION = "no-region"

# ---------------------------------------------------------------- resources


def kind_prefix(kind: Kind, namespace: str | None = None) -> str:
    """The prefix under which every resource of a kind (in a namespace) lives."""
    cls = _kind(kind)
    prefix = f"{RESOURCE_ROOT}{cls.PLURAL}/"
    if cls.NAMESPACED and namespace:
        prefix += f"{namespace}/"
    return prefix


def resource_key(kind: Kind, name: str, namespace: str | None = None) -> str:
    cls = _kind(kind)
    if cls.NAMESPACED:
        return f"{kind_prefix(cls, namespace or 'default')}{name}"
    return f"{kind_prefix(cls)}{name}"


def key_of(res: Resource) -> str:
    return resource_key(type(res), res.metadata.name, res.metadata.namespace)


def plural_of_key(key: str) -> str | None:
    """'/calico/resources/v3/projectcalico.org/profiles/p1' -> 'profiles'; None elsewhere."""
    if not key.startswith(RESOURCE_ROOT):
        return None
    return key[len(RESOURCE_ROOT) :].split("/", 1)[0]


# ---------------------------------------------------------------- IPAM


def cidr_key_part(cidr: ipaddress.IPv4Network | str) -> str:
    """'10.0.0.0/26' -> '10.0.0.0-26'."""
    return str(cidr).replace("/", "-")


def cidr_from_key_part(part: str) -> ipaddress.IPv4Network:
    addr, sep, prefix = part.rpartition("-")
    if not sep:
        raise ValueError(f"not a block key part: {part!r}")
    return ipaddress.IPv4Network(f"{addr}/{prefix}")


def block_key(cidr: ipaddress.IPv4Network | str) -> str:
    return BLOCK_PREFIX + cidr_key_part(cidr)


def cidr_from_block_key(key: str) -> ipaddress.IPv4Network:
    if not key.startswith(BLOCK_PREFIX):
        raise ValueError(f"not a block key: {key!r}")
    return cidr_from_key_part(key[len(BLOCK_PREFIX) :])


def handle_key(handle_id: str) -> str:
    return HANDLE_PREFIX + handle_id


TUNNEL_HANDLE_PREFIX = "ipip-tunnel-addr-"  # Calico's IPAM handle of a node's tunl0 address


def tunnel_handle_id(node: str) -> str:
    """The IPAM handle holding `node`'s IPIP tunnel address."""
    return TUNNEL_HANDLE_PREFIX + node


def affinity_prefix(node: str) -> str:
    return f"{HOST_PREFIX}{node}/ipv4/block/"


def affinity_key(node: str, cidr: ipaddress.IPv4Network | str) -> str:
    return affinity_prefix(node) + cidr_key_part(cidr)


def parse_affinity_key(key: str) -> tuple[str, ipaddress.IPv4Network]:
    """'/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26' -> ('n1', 10.0.0.0/26)."""
    if not key.startswith(HOST_PREFIX):
        raise ValueError(f"not an affinity key: {key!r}")
    node, sep, rest = key[len(HOST_PREFIX) :].partition("/ipv4/block/")
    if not sep or not node:
        raise ValueError(f"not an IPv4 affinity key: {key!r}")
    return node, cidr_from_key_part(rest)


# ---------------------------------------------------------------- agent status


def host_prefix(node: str) -> str:
    return f"{FELIX_ROOT}{FELIX_REGION}/host/{node}/"


def host_status_key(node: str) -> str:
    return host_prefix(node) + "status"


def endpoint_status_key(node: str, orchestrator: str, wep_name: str, endpoint: str) -> str:
    return f"{host_prefix(node)}workload/{orchestrator}/{wep_name}/endpoint/{endpoint}"


class EndpointStatusKey(NamedTuple):
    node: str
    orchestrator: str
    wep_name: str
    endpoint: str


def parse_endpoint_status_key(key: str) -> EndpointStatusKey | None:
    """The parts of an endpoint status key; None for any other key."""
    head = f"{FELIX_ROOT}{FELIX_REGION}/host/"
    if not key.startswith(head):
        return None
    parts = key[len(head) :].split("/")
    if len(parts) != 6 or parts[1] != "workload" or parts[4] != "endpoint":
        return None
    return EndpointStatusKey(parts[0], parts[2], parts[3], parts[5])
