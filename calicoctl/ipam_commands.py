"""`calicoctl ipam show | check | release`: look at and repair Calico IPAM state in etcd.

    calicoctl ipam show                    pools and blocks: total, in use, free
    calicoctl ipam show --ip=192.168.0.5   who holds the address (handle, endpoint)
    calicoctl ipam check [-o report.json]  leaked addresses (no endpoint uses them),
                                           endpoints whose address is not allocated,
                                           addresses outside every pool
    calicoctl ipam release --ip=ADDR       free one address whoever holds it
    calicoctl ipam release --from-report=report.json
                                           free the report's leaked addresses that are
                                           still leaked (re-checked, so a pod that
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

    @property
    def problems(self) -> int:
        return (
            len(self.leaked_addresses)
            + len(self.endpoints_without_allocation)
            + len(self.addresses_outside_pools)
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            "version": d["version"],
            "leakedAddresses": d["leaked_addresses"],
            "endpointsWithoutAllocation": d["endpoints_without_allocation"],
            "addressesOutsidePools": d["addresses_outside_pools"],
        }


def check_snapshot(snap: Snapshot) -> Report:
    """The three kinds of inconsistency `check` reports (pure)."""
    report = Report()
    by_ip = snap.endpoint_by_ip()
    allocated: set[str] = set()
    nets = [p.cidr for p in snap.pools]
    for a in snap.allocations():
        allocated.add(a.ip)
        if a.ip not in by_ip:
            report.leaked_addresses.append(asdict(a))
        if not any(ipaddress.ip_address(a.ip) in n for n in nets):
            report.addresses_outside_pools.append({**asdict(a), "endpoint": by_ip.get(a.ip)})
    for name, ips in sorted(snap.endpoints.items()):
        for ip in ips:
            if ip not in allocated:
                report.endpoints_without_allocation.append({"endpoint": name, "ip": ip})
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
    for kv in ds.kv_list(kind_prefix("WorkloadEndpoint"))[0]:
        data = kv.json()
        meta = data.get("metadata") or {}
        name = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
        nets = (data.get("spec") or {}).get("ipNetworks") or []
        endpoints[name] = [n.split("/")[0] for n in nets]
    return Snapshot(list_pools(ds), blocks, endpoints, handles)


# ---- show --------------------------------------------------------------------------------


def _pct(part: int, whole: int) -> str:
    return f"{part} ({(100 * part // whole) if whole else 0}%)"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    return "\n".join([line, fmt(header), line, *(fmt(r) for r in rows), line]) + "\n"


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
        for b in blocks:
            rows.append(
                [
                    "Block",
                    str(b.cidr),
                    str(b.size),
                    _pct(b.used_count, b.size),
                    _pct(b.free_count, b.size),
                ]
            )
    orphans = [b for b in snap.blocks if not any(b.cidr.subnet_of(p.cidr) for p in snap.pools)]
    for b in sorted(orphans, key=lambda b: b.cidr):
        rows.append(
            [
                "Block (no pool)",
                str(b.cidr),
                str(b.size),
                _pct(b.used_count, b.size),
                _pct(b.free_count, b.size),
            ]
        )
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
            lines.append(f"  endpoint: {snap.endpoint_by_ip().get(str(ip), '(none: leaked?)')}")
            return "\n".join(lines) + "\n"
    inside = any(ip in p.cidr for p in snap.pools)
    return f"IP {ip} is not assigned{'' if inside else ' (and is outside every IP pool)'}\n"


def cmd_show(cli: Any) -> int:
    if cli.args.ip:
        try:
            ipaddress.ip_address(cli.args.ip)
        except ValueError:
            raise CliError(f"invalid IP address {cli.args.ip!r}") from None
    snap = load_snapshot(cli.datastore())
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
    lines.append(f"Check complete; found {report.problems} problems.")
    return "\n".join(lines) + "\n"


def cmd_check(cli: Any) -> int:

    snap = load_snapshot(cli.datastore())
    report = check_snapshot(snap)
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


def _read_report(path: str) -> list[dict[str, Any]]:

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise CliError(f"cannot read report {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"report {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != REPORT_VERSION:
        raise CliError(f"{path} is not a calicoctl ipam check report (version {REPORT_VERSION})")
    leaked = data.get("leakedAddresses")
    if not isinstance(leaked, list):
        raise CliError(f"{path}: leakedAddresses must be a list")
    return leaked


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

    leaked = _read_report(cli.args.from_report)
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
    return 0
