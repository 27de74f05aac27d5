"""`calicoctl ipam show | check | release`: look at and repair Calico IPAM state in etcd.

    calicoctl ipam show                    pools and blocks: total, in use, free
    calicoctl ipam show --ip=192.168.0.5   who holds the address (handle, endpoint)
    calicoctl ipam check [-o report.json]  leaked addresses (no endpoint uses them),
                                           endpoints whose address is not allocated,
                                           addresses outside every pool, and endpoints
                                           whose pod or interface no longer exists on
                                           their node (each node's agent is asked for its
                                           pods through its node API; a node that does
                                           not answer is listed as not checked)
    calicoctl ipam release --ip=ADDR       free one address whoever holds it
    calicoctl ipam release --from-report=report.json
                                           free the report's leaked addresses that are
                                           still leaked, and remove the report's stale
                                           endpoints (and free their addresses) that are
                                           still stale (both re-checked, so a pod that
                                           started since keeps its address)

Hooked into calicoctl/cli.py by `register(subparsers, common)`.
Top-level imports stay light: this module is imported whenever calicoctl starts (calico.ipam
and calico.ipam_store, 16 and 37 ms, are imported by the commands that use them).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from calicoctl.context import ArgParser, CliError

REPORT_VERSION = 1
NODE_API_TIMEOUT = 5.0  # seconds to wait for one node's list of pods


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:

    ipam = subparsers.add_parser("ipam", parents=[common], help="IP address management")
    sub = ipam.add_subparsers(dest="ipam_command", metavar="COMMAND", parser_class=ArgParser)
    ipam.set_defaults(func=_need_subcommand(ipam))

    show = sub.add_parser("show", parents=[common], help="pool and block usage, or one address")
    show.add_argument("--ip", metavar="ADDR", help="show who holds this address")
    show.add_argument(
        "--show-blocks", action="store_true", help="accepted for calicoctl compatibility"
    )
    show.set_defaults(func=cmd_show)

    check = sub.add_parser("check", parents=[common], help="find leaked or missing addresses")
    check.add_argument("-o", "--output", metavar="FILE", help="write a JSON report to FILE")
    check.set_defaults(func=cmd_check)

    rel = sub.add_parser("release", parents=[common], help="free addresses")
    group = rel.add_mutually_exclusive_group(required=True)
    group.add_argument("--ip", metavar="ADDR", help="the address to free")
    group.add_argument("--from-report", metavar="FILE", help="free the leaks a check found")
    rel.set_defaults(func=cmd_release)


def _need_subcommand(parser: argparse.ArgumentParser) -> Any:
    def run(cli: Any) -> int:
        raise CliError("calicoctl ipam: a subcommand is required (show, check, release)")

    return run


# ---- reading the state (pure over what etcd returned) ------------------------------------


@dataclass
class Allocation:
    ip: str
    handle: str | None
    block: str
    node: str | None


@dataclass
class Snapshot:
    pools: list[Any]  # calico.ipam.Pool
    blocks: list[Any]  # calico.ipam.Block
    endpoints: dict[str, list[str]]  # endpoint "namespace/name" -> its IPs (no prefix)
    handles: dict[str, Any]  # handle id -> calico.ipam.Handle
    # endpoint "namespace/name" -> node, containerID, interface (in the pod), orchestrator,
    # key and mod_revision (what a release re-checks)
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    node_apis: dict[str, str] = field(default_factory=dict)  # node -> its node API URL
    # what the agents report of endpoints they cannot program: their status key's value
    # ("status": "error", "reason", "name", "namespace"), with the node added
    agent_errors: list[dict[str, Any]] = field(default_factory=list)
    # a node's tunl0 address (Node.spec.bgp.ipv4IPIPTunnelAddr) -> the node: in use, though
    # no endpoint has it
    tunnel_addresses: dict[str, str] = field(default_factory=dict)

    def allocations(self) -> list[Allocation]:
        out = []
        for b in self.blocks:
            for ip, handle in sorted(b.allocated().items()):
                out.append(Allocation(str(ip), handle, str(b.cidr), b.node))
        return out

    def endpoint_by_ip(self) -> dict[str, str]:
        return {ip: name for name, ips in self.endpoints.items() for ip in ips}


@dataclass
class Report:
    version: int = REPORT_VERSION
    leaked_addresses: list[dict[str, Any]] = field(default_factory=list)
    endpoints_without_allocation: list[dict[str, Any]] = field(default_factory=list)
    addresses_outside_pools: list[dict[str, Any]] = field(default_factory=list)
    stale_endpoints: list[dict[str, Any]] = field(default_factory=list)
    nodes_not_checked: list[dict[str, Any]] = field(default_factory=list)
    unprogrammed_endpoints: list[dict[str, Any]] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return (
            len(self.leaked_addresses)
            + len(self.endpoints_without_allocation)
            + len(self.addresses_outside_pools)
            + len(self.stale_endpoints)
            + len(self.unprogrammed_endpoints)
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            "version": d["version"],
            "leakedAddresses": d["leaked_addresses"],
            "endpointsWithoutAllocation": d["endpoints_without_allocation"],
            "addressesOutsidePools": d["addresses_outside_pools"],
            "staleEndpoints": d["stale_endpoints"],
            "nodesNotChecked": d["nodes_not_checked"],
            "unprogrammedEndpoints": d["unprogrammed_endpoints"],
        }


CHECKED_ORCHESTRATOR = "cni"  # endpoints a node's runtime (rkt) owns; others are not asked


def check_workloads(
    snap: Snapshot, pods_by_node: dict[str, list[dict[str, Any]] | str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(stale endpoints, nodes not checked), pure. `pods_by_node` is each node's answer to
    GET /v1/pods, or why there is none. An endpoint is stale when its node lists no pod with
    its containerID ("pod gone"), the pod is being removed but its teardown failed (garbage
    or deleting: the runtime retries it), or the pod has no network on that interface
    ("interface gone"); a pod still being prepared is never judged by its interfaces."""
    by_ip = {a.ip: a for a in snap.allocations()}
    stale: list[dict[str, Any]] = []
    unchecked: dict[str, dict[str, Any]] = {}
    for name, w in sorted(snap.workloads.items()):
        if w.get("orchestrator") != CHECKED_ORCHESTRATOR:
            continue
        node = str(w.get("node") or "")
        answer = pods_by_node.get(node, "no node API published on its Node resource")
        if isinstance(answer, str):
            entry = unchecked.setdefault(node, {"node": node, "reason": answer, "endpoints": 0})
            entry["endpoints"] += 1
            continue
        pods = {str(p.get("uuid") or p.get("name") or ""): p for p in answer}
        pod = pods.get(str(w.get("containerID") or ""))
        if pod is None:
            reason = "pod gone"
        elif pod.get("state") in ("garbage", "deleting"):
            reason = f"pod {pod['state']}, its teardown failed (rkt gc / rkt rm retries it)"
        else:
            ifnames = {n.get("ifName") for n in pod.get("networks") or []}
            if pod.get("state") == "prepared" or w.get("interface") in ifnames:
                continue
            reason = "interface gone"
        ips = snap.endpoints.get(name, [])
        stale.append(
            {
                "endpoint": name,
                "node": node,
                "containerID": w.get("containerID"),
                "interface": w.get("interface"),
                "reason": reason,
                "ips": ips,
                "handles": sorted({by_ip[ip].handle or "" for ip in ips if ip in by_ip}),
                "modRevision": w.get("mod_revision"),
            }
        )
    return stale, sorted(unchecked.values(), key=lambda e: e["node"])


def node_pods(snap: Snapshot, timeout: float = NODE_API_TIMEOUT) -> dict[str, Any]:
    """Ask every node that has endpoints to check for its pods, at once; a node that
    cannot be asked maps to the reason."""
    from concurrent.futures import ThreadPoolExecutor

    nodes = sorted(
        {
            str(w.get("node") or "")
            for w in snap.workloads.values()
            if w.get("orchestrator") == CHECKED_ORCHESTRATOR
        }
    )

    def ask(node: str) -> tuple[str, Any]:
        url = snap.node_apis.get(node)
        if not node:
            return node, "endpoint names no node"
        if not url:
            return node, "no node API published on its Node resource"
        from calico.nodeapi import NodeAPIError, NodeClient

        try:
            with NodeClient(url, timeout=timeout) as client:
                pods = client.pods()
        except NodeAPIError as exc:
            return node, f"node API not reachable: {' '.join(str(exc).split())}"
        if not isinstance(pods, list):
            return node, "node API answered something other than a list of pods"
        return node, pods

    if not nodes:
        return {}
    with ThreadPoolExecutor(min(16, len(nodes))) as pool:
        return dict(pool.map(ask, nodes))


def check_snapshot(snap: Snapshot) -> Report:
    """The three kinds of inconsistency `check` reports (pure)."""
    from calico import keys  # lazily, as every calico import here (calicoctl's start-up)

    report = Report()
    by_ip = snap.endpoint_by_ip()
    allocated: set[str] = set()
    nets = [p.cidr for p in snap.pools]
    for a in snap.allocations():
        allocated.add(a.ip)
        tunnel_of = snap.tunnel_addresses.get(a.ip)
        if a.ip not in by_ip and not (tunnel_of and a.handle == keys.tunnel_handle_id(tunnel_of)):
            report.leaked_addresses.append(asdict(a))
        if not any(ipaddress.ip_address(a.ip) in n for n in nets):
            report.addresses_outside_pools.append({**asdict(a), "endpoint": by_ip.get(a.ip)})
    for name, ips in sorted(snap.endpoints.items()):
        for ip in ips:
            if ip not in allocated:
                report.endpoints_without_allocation.append({"endpoint": name, "ip": ip})
    for err in snap.agent_errors:
        name = f"{err.get('namespace') or 'default'}/{err.get('name') or '?'}"
        report.unprogrammed_endpoints.append(
            {"endpoint": name, "node": err.get("node"), "reason": err.get("reason", "")}
        )
    return report


def load_snapshot(ds: Any) -> Snapshot:
    from calico import ipam, keys
    from calico.ipam_store import list_pools
    from calico.keys import kind_prefix

    blocks = [ipam.Block.from_json(kv.value) for kv in ds.kv_list(keys.BLOCK_PREFIX)[0]]
    handles = {}
    for kv in ds.kv_list(keys.HANDLE_PREFIX)[0]:
        h = ipam.Handle.from_json(kv.value)
        handles[h.handle_id] = h
    endpoints: dict[str, list[str]] = {}
    workloads: dict[str, dict[str, Any]] = {}
    for kv in ds.kv_list(kind_prefix("WorkloadEndpoint"))[0]:
        data = kv.json()
        meta = data.get("metadata") or {}
        spec = data.get("spec") or {}
        name = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
        nets = spec.get("ipNetworks") or []
        endpoints[name] = [n.split("/")[0] for n in nets]
        workloads[name] = {
            "node": spec.get("node"),
            "containerID": spec.get("containerID"),
            "interface": spec.get("endpoint"),
            "orchestrator": spec.get("orchestrator"),
            "key": kv.key,
            "mod_revision": kv.mod_revision,
        }
    node_apis: dict[str, str] = {}
    tunnels: dict[str, str] = {}
    for kv in ds.kv_list(kind_prefix("Node"))[0]:
        data = kv.json()
        meta = data.get("metadata") or {}
        url = (meta.get("annotations") or {}).get("calico-rkt.io/api")
        if meta.get("name") and url:
            node_apis[str(meta["name"])] = str(url)
        tunnel = ((data.get("spec") or {}).get("bgp") or {}).get("ipv4IPIPTunnelAddr")
        if meta.get("name") and tunnel:
            tunnels[str(tunnel).split("/")[0]] = str(meta["name"])
    agent_errors = []
    for kv in ds.kv_list(keys.FELIX_ROOT)[0]:
        parsed = keys.parse_endpoint_status_key(kv.key)
        if parsed is None:
            continue
        try:
            value = kv.json()
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("status") == "error":
            agent_errors.append({**value, "node": parsed.node})
    snap = Snapshot(list_pools(ds), blocks, endpoints, handles, workloads, node_apis)
    snap.agent_errors = agent_errors
    snap.tunnel_addresses = tunnels
    return snap


# ---- show --------------------------------------------------------------------------------


def _pct(part: int, whole: int) -> str:
    return f"{part} ({(100 * part // whole) if whole else 0}%)"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    return "\n".join([line, fmt(header), line, *(fmt(r) for r in rows), line]) + "\n"


def _block_row(label: str, b: Any) -> list[str]:
    return [label, str(b.cidr), str(b.size), _pct(b.used_count, b.size), _pct(b.free_count, b.size)]


def render_show(snap: Snapshot) -> str:
    rows: list[list[str]] = []
    for pool in sorted(snap.pools, key=lambda p: p.cidr):
        blocks = sorted(
            (b for b in snap.blocks if b.cidr.subnet_of(pool.cidr)), key=lambda b: b.cidr
        )
        total = pool.cidr.num_addresses
        used = sum(b.used_count for b in blocks)
        rows.append(
            ["IP Pool", str(pool.cidr), str(total), _pct(used, total), _pct(total - used, total)]
        )
        rows += [_block_row("Block", b) for b in blocks]
    orphans = [b for b in snap.blocks if not any(b.cidr.subnet_of(p.cidr) for p in snap.pools)]
    rows += [_block_row("Block (no pool)", b) for b in sorted(orphans, key=lambda b: b.cidr)]
    return _table(rows, ["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"])


def render_ip(snap: Snapshot, ip_text: str) -> str:
    ip = ipaddress.ip_address(ip_text)
    for b in snap.blocks:
        if ip in b.cidr:
            handle = b.handle_of(ip)
            ordinal = b.ordinal_of(ip)
            if b.allocations[ordinal] is None:
                return f"IP {ip} is not assigned (block {b.cidr})\n"
            attrs = b.attributes[b.allocations[ordinal]]
            lines = [
                f"IP {ip} is in use",
                f"  block:    {b.cidr} (affinity {b.affinity or 'none'})",
            ]
            lines.append(f"  handle:   {handle}")
            for k, v in sorted((attrs.secondary or {}).items()):
                lines.append(f"  {k + ':':<9} {v}")
            tunnel_of = snap.tunnel_addresses.get(str(ip))
            holder = f"tunl0 of node {tunnel_of}" if tunnel_of else "(none: leaked?)"
            lines.append(f"  endpoint: {snap.endpoint_by_ip().get(str(ip), holder)}")
            return "\n".join(lines) + "\n"
    inside = any(ip in p.cidr for p in snap.pools)
    return f"IP {ip} is not assigned{'' if inside else ' (and is outside every IP pool)'}\n"


def cmd_show(cli: Any) -> int:
    if cli.args.ip:
        try:
            ipaddress.ip_address(cli.args.ip)
        except ValueError:
            raise CliError(f"invalid IP address {cli.args.ip!r}") from None
    snap = load_snapshot(cli.reader())  # read-only: the JSON gateway, no gRPC
    cli.out(render_ip(snap, cli.args.ip) if cli.args.ip else render_show(snap))
    return 0


# ---- check -------------------------------------------------------------------------------


def render_check(snap: Snapshot, report: Report) -> str:
    lines = [
        "Checking IPAM for inconsistencies...",
        f"Loaded {len(snap.pools)} IP pools, {len(snap.blocks)} blocks, "
        f"{len(snap.handles)} handles, {len(snap.endpoints)} workload endpoints",
        f"Found {len(report.leaked_addresses)} leaked IP addresses (allocated, no endpoint)",
    ]
    lines += [
        f"  {a['ip']} handle {a['handle']} block {a['block']}" for a in report.leaked_addresses
    ]
    lines.append(
        f"Found {len(report.endpoints_without_allocation)} endpoint addresses with no allocation"
    )
    lines += [f"  {e['ip']} endpoint {e['endpoint']}" for e in report.endpoints_without_allocation]
    lines.append(
        f"Found {len(report.addresses_outside_pools)} allocated addresses outside every pool"
    )
    lines += [f"  {a['ip']} block {a['block']}" for a in report.addresses_outside_pools]
    lines.append(
        f"Found {len(report.stale_endpoints)} endpoints whose pod or interface no longer "
        "exists on their node"
    )
    lines += [
        f"  {','.join(e['ips']) or '-'} endpoint {e['endpoint']} on {e['node']}: {e['reason']}"
        f" (container {e['containerID']}, interface {e['interface']})"
        for e in report.stale_endpoints
    ]
    lines.append(
        f"Found {len(report.unprogrammed_endpoints)} endpoints their node's agent cannot program"
    )
    lines += [
        f"  endpoint {e['endpoint']} on {e['node']}: {e['reason']}"
        for e in report.unprogrammed_endpoints
    ]
    if report.nodes_not_checked:
        lines.append(
            f"Could not check the endpoints of {len(report.nodes_not_checked)} nodes "
            "(not known to be in use, not known to be stale):"
        )
        lines += [
            f"  {n['node'] or '(no node)'}: {n['endpoints']} endpoints not checked: {n['reason']}"
            for n in report.nodes_not_checked
        ]
        lines.append(
            f"Check incomplete ({len(report.nodes_not_checked)} nodes not checked); "
            f"found {report.problems} problems."
        )
    else:
        lines.append(f"Check complete; found {report.problems} problems.")
    return "\n".join(lines) + "\n"


def cmd_check(cli: Any) -> int:

    snap = load_snapshot(cli.reader())  # read-only: the JSON gateway, no gRPC
    report = check_snapshot(snap)
    report.stale_endpoints, report.nodes_not_checked = check_workloads(snap, node_pods(snap))
    cli.out(render_check(snap, report))
    if cli.args.output:
        try:
            with open(cli.args.output, "w", encoding="utf-8") as fh:
                json.dump(report.to_json(), fh, indent=2)
                fh.write("\n")
        except OSError as exc:
            raise CliError(f"cannot write report {cli.args.output}: {exc.strerror}") from None
        cli.out(f"Report written to {cli.args.output}\n")
    return 0


# ---- release -----------------------------------------------------------------------------


def _read_report(path: str) -> dict[str, Any]:

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise CliError(f"cannot read report {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"report {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != REPORT_VERSION:
        raise CliError(f"{path} is not a calicoctl ipam check report (version {REPORT_VERSION})")
    if not isinstance(data.get("staleEndpoints", []), list):
        raise CliError(f"{path}: staleEndpoints must be a list")
    if not isinstance(data.get("leakedAddresses"), list):
        raise CliError(f"{path}: leakedAddresses must be a list")
    return data


def _release_stale(cli: Any, ds: Any, entries: list[Any], snap: Snapshot) -> int:
    """Remove the report's stale endpoints that are still stale (same endpoint, unchanged
    since the check, and its node still lists no such pod or interface), then free the
    addresses they held that are still held by the same handles. Returns how many."""
    from calico.ipam_store import release_ips

    wanted = [e for e in entries if isinstance(e, dict) and e.get("endpoint") in snap.workloads]
    still, _ = check_workloads(snap, node_pods(snap)) if wanted else ([], [])
    now = {e["endpoint"]: e for e in still}
    held = {a.ip: a.handle for a in snap.allocations()}
    done = 0
    for entry in entries:
        name = entry.get("endpoint") if isinstance(entry, dict) else None
        cur = now.get(str(name))
        if (
            cur is None
            or cur["containerID"] != entry.get("containerID")
            or cur["modRevision"] != entry.get("modRevision")
        ):
            cli.out(f"Skipped endpoint {name}: no longer stale\n")
            continue
        if not ds.kv_delete(snap.workloads[cur["endpoint"]]["key"], cur["modRevision"]):
            cli.out(f"Skipped endpoint {name}: changed while releasing\n")
            continue
        ips = [
            ipaddress.IPv4Address(ip)
            for ip in cur["ips"]
            if held.get(ip) is not None and held.get(ip) in (entry.get("handles") or [])
        ]
        released, _ = release_ips(ds, ips) if ips else ([], [])
        cli.out(
            f"Removed stale endpoint {name} ({cur['reason']}); released "
            f"{', '.join(map(str, released)) or 'no address'}\n"
        )
        done += 1
    return done


def cmd_release(cli: Any) -> int:

    from calico.ipam_store import release_ips

    ds = cli.datastore()
    if cli.args.ip:
        try:
            ip = ipaddress.IPv4Address(cli.args.ip)
        except ValueError:
            raise CliError(f"invalid IPv4 address {cli.args.ip!r}") from None
        released, missing = release_ips(ds, [ip])
        if missing:
            raise CliError(f"IP address {ip} is not assigned")
        cli.out(f"Successfully released IP address {ip}\n")
        return 0

    data = _read_report(cli.args.from_report)
    leaked = data["leakedAddresses"]
    stale = data.get("staleEndpoints") or []
    # Re-check against the current state: only what is still allocated to the same
    # handle and still has no endpoint is released.
    snap = load_snapshot(ds)
    now = {a.ip: a for a in snap.allocations()}
    by_ip = snap.endpoint_by_ip()
    todo, skipped = [], []
    for entry in leaked:
        ip_text = str(entry.get("ip", "")) if isinstance(entry, dict) else ""
        cur = now.get(ip_text)
        if cur is None or cur.handle != entry.get("handle") or ip_text in by_ip:
            skipped.append(ip_text)
        else:
            todo.append(ipaddress.IPv4Address(ip_text))
    released, _ = release_ips(ds, todo) if todo else ([], [])
    for ip in released:
        cli.out(f"Released leaked IP address {ip}\n")
    for ip_text in skipped:
        cli.out(f"Skipped {ip_text}: no longer leaked\n")
    cli.out(f"Released {len(released)} of {len(leaked)} leaked addresses\n")
    if stale:
        removed = _release_stale(cli, ds, stale, snap)
        cli.out(f"Removed {removed} of {len(stale)} stale endpoints\n")
    return 0
