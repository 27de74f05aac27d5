"""The node's IPIP tunnel address: allocated through IPAM, recorded on its Node.

While an enabled IPv4 pool has ipipMode Always or CrossSubnet, the node holds one address
from such a pool under the IPAM handle `ipip-tunnel-addr-<node>` (Calico's handle, with
the attributes `node` and `type: ipipTunnelAddress`), and its Node resource says which in
`spec.bgp.ipv4IPIPTunnelAddr`; the agent puts it on tunl0 as /32 (the source address of the
node's own traffic through the tunnel). When no pool needs it any more, or its pool stops
asking for IPIP, it is released and the field cleared. All of it is etcd I/O, so it runs
in a thread of its own, woken by the agent's loop when what is wanted changes; a failure
is kept in `error` (the agent's health shows it) and retried.
"""

from __future__ import annotations

import ipaddress
import logging
import threading

from calico import ipam_store, keys
from calico.datastore import Datastore
from calico.errors import Conflict, DatastoreError, NotFound
from calico.resources import Node, NodeBGPSpec

log = logging.getLogger("calico-agent")

RETRY = 2.0  # seconds after a failure
ADDRESS_TYPE = "ipipTunnelAddress"


def handle_id(node: str) -> str:
    return keys.tunnel_handle_id(node)


def reconcile(ds: Datastore, node: str, pools: tuple[str, ...]) -> str | None:
    """Make etcd hold what `pools` (names of the IPIP pools; empty: none) asks of `node`;
    returns the tunnel address (None: the node has none)."""
    handle = handle_id(node)
    held = ipam_store.handle_ips(ds, handle)
    cidrs = [p.cidr for p in ipam_store.list_pools(ds) if p.name in pools]
    keep = next((ip for ip in held if any(ip in c for c in cidrs)), None)
    if held and (keep is None or len(held) > 1):
        ipam_store.release_by_handle(ds, handle)  # out of every IPIP pool, or duplicated
        keep = None
    if pools and keep is None:
        keep = ipam_store.auto_assign(
            ds, node, handle, wanted_pools=pools, secondary={"node": node, "type": ADDRESS_TYPE}
        )
        log.info("tunnel address %s for %s (handle %s)", keep, node, handle)
    elif not pools and held:
        log.info("released tunnel address %s of %s", ", ".join(map(str, held)), node)
    address = str(keep) if keep is not None else None
    record(ds, node, address)
    return address


def record(ds: Datastore, node: str, address: str | None, attempts: int = 10) -> None:
    """Node.spec.bgp.ipv4IPIPTunnelAddr = address (compare-and-swap, retried on a race)."""
    for _ in range(attempts):
        try:
            res = ds.get(Node, node)
        except NotFound:
            if address is None:
                return  # nothing to clear
            raise DatastoreError(f"Node {node} does not exist (not registered yet?)") from None
        bgp = res.spec.bgp or NodeBGPSpec()
        if bgp.ipv4_ipip_tunnel_addr == address:
            return
        bgp.ipv4_ipip_tunnel_addr = address
        res.spec.bgp = bgp
        try:
            ds.update(res)
            return
        except Conflict:
            continue
    raise DatastoreError(f"lost {attempts} races writing Node {node}")


class TunnelAddressKeeper:
    """The thread that keeps the node's tunnel address as the pools want it."""

    def __init__(self, ds: Datastore, node: str, stop: threading.Event) -> None:
        self.ds, self.node, self.stop = ds, node, stop
        self.wanted: tuple[tuple[str, ...], str | None] | None = None
        self.done: tuple[tuple[str, ...], str | None] | None = None
        self.error = ""
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tunnel-address", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def want(self, pools: tuple[str, ...], recorded: str | None) -> None:
        """The IPIP pools now, and the address the Node records now (from the watch)."""
        wanted = (tuple(sorted(pools)), _plain(recorded))
        if wanted != self.done and wanted != self.wanted:
            self.wanted = wanted
            self.wake.set()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(RETRY if self.error else None)
            self.wake.clear()
            wanted = self.wanted
            if wanted is None or self.stop.is_set():
                continue
            try:
                address = reconcile(self.ds, self.node, wanted[0])
                self.done = (wanted[0], address)  # the watch brings the Node back as that
                self.error = ""
            except (ipam_store.StoreError, DatastoreError, OSError) as exc:
                if str(exc) != self.error:
                    log.warning("tunnel address: %s", exc)
                self.error = str(exc) or type(exc).__name__


def _plain(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return str(ipaddress.ip_interface(address).ip)
    except ValueError:
        return address
