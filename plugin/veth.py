"""Calico's node plumbing for one pod interface (see ARCHITECTURE.md, "A pod's plumbing").

    node namespace (where this code runs)        pod namespace
    caliXXXXXXXXXXX  ee:ee:ee:ee:ee:ee  <-veth->  eth0  ip/32
      proxy_arp=1, neigh proxy_delay=0             169.254.1.1 dev eth0 scope link
      forwarding=1, rp_filter=1                    default via 169.254.1.1 dev eth0
    ip/32 dev caliX scope link

The host name is `cali` + 11 hex digits of sha1(`<containerID>.<ifname>`): one veth per
(container, interface), so a pod on two networks (eth0, eth1) has two, and two IDs that
share a prefix never meet.

The first interface of a pod (no default route in the pod yet) owns the main table. Any
later one (a pod on several networks) gets its own table, `route_table(ifname)`, holding
the same two routes through it, and a rule `from ip/32 lookup <table>` per address, so
replies leave by the interface that owns their source address: the node's strict
rp_filter and the interface's policy chains see them where they belong. DEL removes the
rule (the table's routes go with the link).

The pod's gateway 169.254.1.1 exists nowhere: the host side answers ARP for every
address (proxy ARP) with its all-`ee` MAC, so the node routes all pod traffic and its
policy sees every packet. Proxy ARP only answers for destinations the node itself has a
route to, hence the check that the node can route 169.254.1.1 (a default route does).

The host side is always made in the namespace this process (thread) is in: the CNI
server runs inside its node, and tests run the plugin inside a node namespace they made.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from kernel import ns
from kernel.netlink import NetlinkError
from kernel.rtnetlink import RT_SCOPE_LINK, RT_TABLE_MAIN, Netlink, netlink_in
from plugin.phases import phase

HOST_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY = ipaddress.IPv4Address("169.254.1.1")
GATEWAY_NET = ipaddress.IPv4Network("169.254.1.1/32")
DEFAULT_NET = ipaddress.IPv4Network("0.0.0.0/0")
HOST_PREFIX = "cali"
IFNAME_HASH_LEN = 11  # 4 + 11 = 15 characters, the kernel's limit (IFNAMSIZ - 1)
RULE_PRIORITY = 100  # a secondary interface's `from ip lookup T` rules: before main (32766)
ETH_TABLE_BASE = 100  # eth<N> -> table 100+N, readable in `ip rule`
HASH_TABLE_BASE = 0x10000  # any other interface name -> a table above every eth<N> one

# Host-side sysctls, as Calico sets them: answer ARP for the pod's gateway immediately,
# route the pod's traffic, and drop packets whose source the node would not route back
# to this interface (IPv4 anti-spoofing).
HOST_SYSCTLS = (
    ("ipv4/conf/{}/proxy_arp", "1"),
    ("ipv4/neigh/{}/proxy_delay", "0"),
    ("ipv4/conf/{}/forwarding", "1"),
    ("ipv4/conf/{}/rp_filter", "1"),
)


class PlumbingError(Exception):
    """A kernel step failed; the message names the step."""


class CheckFailed(Exception):
    """CHECK found the pod's interface not as ADD left it."""


def random_mac() -> str:
    """A locally administered unicast MAC for the pod side. Chosen here rather than by the
    kernel so the endpoint (which records it) can be written while the veth is made."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def host_ifname(container_id: str, ifname: str) -> str:
    """The host side of (container, interface): `cali` + the first 11 hex digits of
    sha1(`<containerID>.<ifname>`), as Calico derives its names from a hash of the
    endpoint's identity (15 characters: the kernel's limit). Unique per interface, so a
    pod's second network or an ID sharing a prefix with another never takes its name."""
    digest = hashlib.sha1(f"{container_id}.{ifname}".encode()).hexdigest()
    return HOST_PREFIX + digest[:IFNAME_HASH_LEN]


def route_table(ifname: str) -> int:
    """The routing table of a pod's secondary interface: `eth<N>` -> 100+N, any other
    name a stable hash above those (never main, local or default)."""
    m = re.fullmatch(r"eth(\d{1,4})", ifname)
    if m:
        return ETH_TABLE_BASE + int(m.group(1))
    return HASH_TABLE_BASE + zlib.crc32(ifname.encode()) % 0x7FFF0000


@dataclass
class Plumbed:
    host_ifname: str
    pod_ifname: str
    pod_mac: str
    host_mac: str = HOST_MAC
    table: int = RT_TABLE_MAIN  # the pod-side table of its routes (main: the first network)


def _write_sysctl(rel: str, value: str) -> None:
    with open(f"/proc/sys/net/{rel}", "w") as fh:
        fh.write(value)


def _step(what: str, exc: Exception) -> PlumbingError:
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return PlumbingError(f"{what}: {detail}")


def check_node_routes_gateway(node: Netlink) -> None:
    if node.route_get(GATEWAY) is None:
        raise PlumbingError(
            f"the node has no route to {GATEWAY}, so proxy ARP would not answer for the pod's "
            "gateway (give the node a default route)"
        )


@dataclass
class Pending:
    """A veth made and brought up by `create`, waiting for its addresses (`finish`) or
    for removal (`abort`). Holds the node's and the pod's netlink sockets."""

    host: str
    host_index: int
    ifname: str
    pod_index: int
    pod_mac: str
    node: Netlink
    pod: Netlink
    table: int = RT_TABLE_MAIN  # set by `finish` once it knows; `abort` undoes its rules

    def close(self) -> None:
        self.node.close()
        self.pod.close()


def create(netns_path: str, container_id: str, ifname: str, mtu: int, pod_mac: str = "") -> Pending:
    """The part of the plumbing that does not need the address: the veth pair (pod side
    MAC `pod_mac`, else the kernel's), the host-side sysctls, both ends up. It can run
    while IPAM talks to etcd. On failure nothing is left and PlumbingError (or
    ns.NamespaceError) is raised."""
    host = host_ifname(container_id, ifname)
    pod_fd = ns.open_netns(netns_path)
    node = Netlink()
    pod: Netlink | None = None
    made = False
    try:
        if ns.same_netns(pod_fd):
            raise PlumbingError(f"{netns_path} is the node's own namespace, not a pod's")
        with phase("veth.gateway_check"):
            check_node_routes_gateway(node)
        # A host side left over by a crashed ADD for this interface would block the
        # name; Calico removes it too. It cannot belong to another pod or interface: the
        # name is a hash of both.
        try:
            with phase("veth.stale_del"):
                node.link_del(host)
        except NetlinkError as exc:
            raise _step(f"removing stale {host}", exc) from None
        try:
            with phase("veth.add"):
                node.veth_add(host, ifname, pod_fd, mtu, mac=HOST_MAC, peer_mac=pod_mac)
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                raise PlumbingError(
                    f"creating veth {host}/{ifname}: {ifname} already exists in {netns_path}"
                ) from None
            raise _step(f"creating veth {host}/{ifname}", exc) from None
        made = True
        with phase("veth.sysctls"):
            for rel, value in HOST_SYSCTLS:
                try:
                    _write_sysctl(rel.format(host), value)
                except OSError as exc:
                    raise _step(f"setting {rel.format(host)}", exc) from None
        with phase("veth.links"):
            host_link = node.link_get(host)
            if host_link is None:
                raise PlumbingError(f"{host} vanished right after it was made")
            pod = netlink_in(pod_fd)
            link = pod.link_get(ifname)
            if link is None:
                raise PlumbingError(f"{ifname} did not appear in the pod's namespace")
        try:
            with phase("veth.up"):
                node.link_set_up(host_link.index)
                pod.link_set_up(link.index)
        except NetlinkError as exc:
            raise _step(f"setting {host}/{ifname} up", exc) from None
        return Pending(host, host_link.index, ifname, link.index, link.mac, node, pod)
    except BaseException:
        if made:
            # Half-made: the pod side goes with the host side.
            try:
                node.link_del(host)
            except OSError:
                pass
        node.close()
        if pod is not None:
            pod.close()
        raise
    finally:
        os.close(pod_fd)


def _drop_rules(pod: Netlink, table: int) -> None:
    """Every rule of the pod that looks up `table` (one interface's: see route_table)."""
    if table == RT_TABLE_MAIN:
        return
    for rule in pod.rules():
        if rule.table == table:
            pod.rule_del(rule)


def finish(pending: Pending, ips: Sequence[ipaddress.IPv4Interface]) -> Plumbed:
    """Addresses and routes on a `create`d veth: in the main table when the pod has no
    default route yet (its first network), else in the interface's own table with a
    source rule per address. On failure the veth and any rule are removed."""
    pod, idx = pending.pod, pending.pod_index
    try:
        try:
            with phase("veth.pod_routes_read"):
                has_default = any(r.dst == DEFAULT_NET for r in pod.routes())
            if has_default:
                pending.table = route_table(pending.ifname)
                _drop_rules(pod, pending.table)  # left by an ADD killed half-way
            table = pending.table
            with phase("veth.pod_addr_routes"):
                for ip in ips:
                    pod.addr_add(idx, ipaddress.IPv4Interface(f"{ip.ip}/32"))
                pod.route_add(GATEWAY_NET, idx, scope=RT_SCOPE_LINK, table=table)
                pod.route_add(DEFAULT_NET, idx, gateway=GATEWAY, table=table)
            if table != RT_TABLE_MAIN:
                for ip in ips:
                    src = ipaddress.IPv4Network(f"{ip.ip}/32")
                    pod.rule_add(table, RULE_PRIORITY, src=src)
        except NetlinkError as exc:
            raise _step(f"configuring {pending.ifname} in the pod", exc) from None
        for ip in ips:
            try:
                with phase("veth.host_route"):
                    pending.node.route_add(
                        ipaddress.IPv4Network(f"{ip.ip}/32"),
                        pending.host_index,
                        scope=RT_SCOPE_LINK,
                    )
            except NetlinkError as exc:
                if exc.errno == errno.EEXIST:
                    # The node agent may have added this very route already: it sees the
                    # endpoint (written while the veth was being made) and restores missing
                    # /32 routes. Only a route through another interface is a conflict.
                    existing = pending.node.route_get(ip.ip)
                    if existing is not None and existing.oif == pending.host_index:
                        continue
                    raise PlumbingError(
                        f"the node already has a route for {ip.ip}: another interface owns it"
                    ) from None
                raise _step(f"adding route {ip.ip}/32 dev {pending.host}", exc) from None
    except BaseException:
        abort(pending)
        raise
    pending.close()
    return Plumbed(
        host_ifname=pending.host,
        pod_ifname=pending.ifname,
        pod_mac=pending.pod_mac,
        table=pending.table,
    )


def abort(pending: Pending) -> None:
    """Remove a `create`d veth (both ends) and the rules `finish` may have added."""
    try:
        _drop_rules(pending.pod, pending.table)
    except OSError:
        pass
    try:
        pending.node.link_del(pending.host)
    except OSError:
        pass
    pending.close()


def setup(
    netns_path: str,
    container_id: str,
    ifname: str,
    ips: Sequence[ipaddress.IPv4Interface],
    mtu: int,
    pod_mac: str = "",
) -> Plumbed:
    """`create` then `finish`: the whole plumbing, or nothing on failure."""
    return finish(create(netns_path, container_id, ifname, mtu, pod_mac), ips)


def teardown(container_id: str, ifname: str, netns_path: str = "") -> bool:
    """Delete one interface's veth (both ends, the host route and the pod-side routes with
    it) and, when the pod's namespace is still there, its source rules. Another interface
    of the same pod is never touched. False if the veth was absent."""
    if netns_path and os.path.exists(netns_path):
        _teardown_rules(netns_path, route_table(ifname))
    host = host_ifname(container_id, ifname)
    with Netlink() as node:
        try:
            return node.link_del(host)
        except NetlinkError as exc:
            raise _step(f"deleting {host}", exc) from None


def _teardown_rules(netns_path: str, table: int) -> None:
    try:
        pod_fd = ns.open_netns(netns_path)
    except ns.NamespaceError:
        return  # not a namespace (any more): nothing of its rules is left
    try:
        if ns.same_netns(pod_fd):
            return  # never the node's own rules
        with netlink_in(pod_fd) as pod:
            _drop_rules(pod, table)
    except NetlinkError as exc:
        raise _step(f"removing the pod's rules for table {table}", exc) from None
    finally:
        os.close(pod_fd)


def check(
    netns_path: str,
    container_id: str,
    ifname: str,
    ips: Sequence[ipaddress.IPv4Interface],
    pod_mac: str = "",
) -> None:
    """Raise CheckFailed naming the first thing that is not as ADD made it."""
    host = host_ifname(container_id, ifname)
    with Netlink() as node:
        host_link = node.link_get(host)
        if host_link is None:
            raise CheckFailed(f"host interface {host} does not exist")
        if host_link.mac != HOST_MAC:
            raise CheckFailed(f"{host} has MAC {host_link.mac}, expected {HOST_MAC}")
        if not host_link.up:
            raise CheckFailed(f"{host} is down")
        node_routes = node.routes()
        for ip in ips:
            dst = ipaddress.IPv4Network(f"{ip.ip}/32")
            owners = [r for r in node_routes if r.dst == dst]
            if not any(r.oif == host_link.index for r in owners):
                where = f" (it points at ifindex {owners[0].oif})" if owners else ""
                raise CheckFailed(f"the node's route {dst} dev {host} is missing{where}")
    try:
        pod_fd = ns.open_netns(netns_path)
    except ns.NamespaceError as exc:
        raise CheckFailed(str(exc)) from None
    try:
        with netlink_in(pod_fd) as pod:
            link = pod.link_get(ifname)
            if link is None:
                raise CheckFailed(f"{ifname} does not exist in {netns_path}")
            if pod_mac and link.mac != pod_mac.lower():
                raise CheckFailed(f"{ifname} has MAC {link.mac}, the result says {pod_mac}")
            have = {a.address.ip for a in pod.addrs(link.index)}
            for ip in ips:
                if ip.ip not in have:
                    raise CheckFailed(f"{ifname} in the pod lacks its address {ip.ip}")
            _check_pod_routes(pod, ifname, link.index, ips)
    finally:
        os.close(pod_fd)


def _check_pod_routes(
    pod: Netlink, ifname: str, index: int, ips: Sequence[ipaddress.IPv4Interface]
) -> None:
    """The interface's two routes, in the main table (the pod's first network) or, with
    a source rule per address, in its own table (see the module docstring)."""
    routes = pod.routes()
    where = ""
    if not any(r.dst == DEFAULT_NET and r.oif == index for r in routes):
        table = route_table(ifname)
        own = pod.routes(table)
        if any(r.oif == index for r in own):  # a secondary interface
            rules = [r for r in pod.rules() if r.table == table]
            for ip in ips:
                src = ipaddress.IPv4Network(f"{ip.ip}/32")
                if not any(r.src == src for r in rules):
                    raise CheckFailed(f"the pod's rule from {src} lookup {table} is missing")
            routes, where = own, f" in table {table}"
    if not any(r.dst == GATEWAY_NET and r.oif == index for r in routes):
        raise CheckFailed(f"the pod's route {GATEWAY} dev {ifname}{where} is missing")
    if not any(r.dst == DEFAULT_NET and r.gateway == GATEWAY and r.oif == index for r in routes):
        raise CheckFailed(f"the pod's default route via {GATEWAY}{where} is missing")
