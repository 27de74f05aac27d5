"""What calico-node does once at start, before it runs the agent (and BIRD), as Calico's
node start-up does: find this host's address, register the Node, install the CNI plugins.

- Address: `--ip ADDR/PLEN`, or `--ip autodetect` with `--ip-autodetection-method`:
  `first-found` (the first IPv4 address of an interface other than lo, cali*, tunl*,
  vxlan*, docker*, veth*, kube-ipvs*), `can-reach=DEST` (the source address the kernel
  would use to reach DEST) or `interface=REGEX` (the first address of the first interface
  whose name matches). `choose_address` is the pure choice; `host_addresses` and
  `route_source` read the kernel (kernel.rtnetlink).
- The Node resource: created, or updated in place (address, AS number when given, the
  node API annotation), keeping every other field an operator set.
- The `calico` and `calico-ipam` plugins installed into the CNI bin dir
  (plugin.build_launcher: the C launcher with the Python fallback beside it).

Every missing prerequisite is a `StartupError`: one line saying what is missing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from calico.errors import AlreadyExists, Conflict, DatastoreError, NotFound
from calico.resources import Metadata, Node, NodeBGPSpec, NodeSpec, ValidationError

FIRST_FOUND_SKIP = ("lo", "cali", "tunl", "vxlan", "docker", "veth", "kube-ipvs")
DEFAULT_CNI_BIN_DIR = "/opt/cni/bin"
RTA_PREFSRC = 7


class StartupError(Exception):
    """A prerequisite is missing; the message is the one line to show."""


@dataclass(frozen=True)
class HostAddr:
    ifname: str
    address: ipaddress.IPv4Interface


# ---------------------------------------------------------------- choosing (pure)


def _skipped(ifname: str) -> bool:
    return ifname == "lo" or any(ifname.startswith(p) for p in FIRST_FOUND_SKIP if p != "lo")


def choose_address(
    addrs: Sequence[HostAddr],
    method: str = "first-found",
    route_source: Callable[[str], str | None] | None = None,
) -> HostAddr:
    """The address `method` picks among `addrs` (in the kernel's order).
    `route_source(dest)`: the source address the kernel would use towards dest."""
    usable = [a for a in addrs if not a.address.ip.is_loopback and not a.address.ip.is_link_local]
    if method == "first-found":
        for a in usable:
            if not _skipped(a.ifname):
                return a
        raise StartupError(
            "no IPv4 address found to autodetect (first-found skips lo, cali*, tunl*, "
            "vxlan*, docker*, veth*, kube-ipvs*); pass --ip ADDR/PLEN"
        )
    if method.startswith("interface="):
        pattern = method.partition("=")[2]
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise StartupError(f"bad --ip-autodetection-method interface regex: {exc}") from None
        for a in usable:
            if regex.fullmatch(a.ifname):
                return a
        raise StartupError(f"no interface matching {pattern!r} has an IPv4 address")
    if method.startswith("can-reach="):
        dest = method.partition("=")[2]
        if not dest:
            raise StartupError("can-reach= needs a destination")
        if route_source is None:
            raise StartupError("can-reach needs the kernel's routes")
        src = route_source(dest)
        if src is None:
            raise StartupError(f"no route to {dest}: cannot tell which address reaches it")
        for a in addrs:
            if str(a.address.ip) == src:
                return a
        raise StartupError(f"the source address {src} towards {dest} is on no interface")
    raise StartupError(
        f"unknown --ip-autodetection-method {method!r} "
        "(first-found, can-reach=DEST or interface=REGEX)"
    )


def parse_ip(text: str) -> ipaddress.IPv4Interface:
    """`--ip ADDR/PLEN` (a bare address is a /32)."""
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise StartupError(f"--ip {text!r} is not an IPv4 address/prefix or 'autodetect'") from None
    if iface.version != 4:
        raise StartupError(f"--ip {text!r}: only IPv4 is supported")
    return iface


# ---------------------------------------------------------------- the kernel


def host_addresses() -> list[HostAddr]:
    from kernel.rtnetlink import Netlink

    with Netlink() as nl:
        addrs = nl.addrs()
    out = []
    for a in addrs:
        try:
            name = socket.if_indextoname(a.index)
        except OSError:
            continue
        out.append(HostAddr(name, a.address))
    return out


def route_source(dest: str) -> str | None:
    from kernel.rtnetlink import Netlink

    try:
        addr = ipaddress.IPv4Address(socket.gethostbyname(dest))
    except (OSError, ValueError):
        raise StartupError(f"can-reach={dest}: not an address or a name that resolves") from None
    with Netlink() as nl:
        route = nl.route_get(addr)
        if route is None:
            return None
        raw = route.extra.get(RTA_PREFSRC)
        if raw and len(raw) == 4:
            return str(ipaddress.IPv4Address(raw))
        for a in nl.addrs(route.oif):
            return str(a.address.ip)
    return None


def detect_address(ip: str, method: str) -> ipaddress.IPv4Interface:
    if ip != "autodetect":
        return parse_ip(ip)
    return choose_address(host_addresses(), method, route_source).address


# ---------------------------------------------------------------- the Node


def register_node(
    datastore, name: str, address: ipaddress.IPv4Interface, as_number: str | None, api_url: str
) -> Node:
    """Create or update this host's Node: address, AS (when given) and API annotation;
    everything else as it is. Retried on a concurrent write."""
    for _ in range(5):
        try:
            node = datastore.get(Node, name)
        except NotFound:
            node = None
        if node is None:
            node = Node(metadata=Metadata(name=name), spec=NodeSpec())
        bgp = node.spec.bgp or NodeBGPSpec()
        bgp.ipv4_address = str(address)
        if as_number:
            bgp.as_number = as_number
        node.spec.bgp = bgp
        node.metadata.annotations[Node.API_ANNOTATION] = api_url
        try:
            node.validate()
        except ValidationError as exc:
            raise StartupError(f"Node {name}: {exc}") from None
        try:
            if node.metadata.resource_version:
                return datastore.update(node)
            return datastore.create(node)
        except (AlreadyExists, Conflict):
            continue
    raise StartupError(f"Node {name}: kept changing under us; try again")


def install_cni_plugins(bin_dir: str | Path) -> bool:
    from plugin.build_launcher import install

    try:
        return install(bin_dir)
    except OSError as exc:
        raise StartupError(f"cannot install the CNI plugins into {bin_dir}: {exc}") from None


@dataclass
class StartupResult:
    name: str
    address: ipaddress.IPv4Interface
    node: Node
    native_plugins: bool


def start(
    name: str,
    ip: str,
    method: str,
    as_number: str | None,
    run_dir: Path,
    cni_bin_dir: str | Path,
    endpoints=None,
) -> StartupResult:
    """Everything start-up does, in order; StartupError on the first missing piece."""
    from calico.datastore import Datastore

    if not name:
        raise StartupError("no node name (--name, or a hostname)")
    address = detect_address(ip, method)
    if not run_dir.is_dir():
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot make the run dir {run_dir}: {exc}") from None
    api_url = f"unix://{run_dir / 'agent.sock'}"
    try:
        ds = Datastore.connect(endpoints, timeout=5.0)
    except Exception as exc:
        raise StartupError(f"cannot reach etcd: {exc}") from None
    try:
        node = register_node(ds, name, address, as_number, api_url)
    except DatastoreError as exc:
        raise StartupError(f"cannot register Node {name} in etcd: {exc}") from None
    finally:
        try:
            ds.close()
        except Exception:  # closing a dead channel must not hide the outcome
            pass
    native = install_cni_plugins(cni_bin_dir)
    return StartupResult(name, address, node, native)
