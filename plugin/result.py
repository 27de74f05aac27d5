"""One internal CNI result, rendered in whichever spec version the runtime asked for.

The plugins build a `Result` once and render it at the end: rkt wants 0.1.0 (`ip4`),
libcni runtimes want 0.3.x-1.1.0 (`ips`). A chained plugin gets the previous plugin's result
(`prevResult`) in the config's version, so the reverse direction (`parse_result`) accepts
every version too. Field names and omission rules follow the spec and libcni's JSON tags:
empty optional fields are left out, `dns` is always present (libcni serialises a struct).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plugin.errors import INCOMPATIBLE_VERSION, INVALID_CONFIG, CNIError

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LEGACY_VERSIONS = ("0.1.0", "0.2.0")  # ip4/ip6 objects
VERSIONED_IPS = ("0.3.0", "0.3.1", "0.4.0")  # ips[] carrying "version"
CURRENT_VERSIONS = ("1.0.0", "1.1.0")  # ips[] without "version"
ALL_VERSIONS = LEGACY_VERSIONS + VERSIONED_IPS + CURRENT_VERSIONS


def version_tuple(version: str) -> tuple[int, int, int]:
    """'0.3.1' -> (0, 3, 1). Raises ValueError on anything else."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"malformed version {version!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


@dataclass
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""  # netns path for container-side interfaces, empty on the host side
    mtu: int = 0  # 1.1.0 only
    socket_path: str = ""  # 1.1.0 only
    pci_id: str = ""  # 1.1.0 only


@dataclass
class IPConfig:
    address: IPInterface  # address with the prefix the interface gets (ours: /32)
    gateway: IPAddress | None = None
    interface: int | None = None  # index into Result.interfaces

    @property
    def family(self) -> str:
        return str(self.address.version)


@dataclass
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None
    # 1.1.0 additions; zero/empty means "not set".
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


@dataclass
class DNS:
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> DNS:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError("dns must be an object")
        return cls(
            nameservers=_str_list(data.get("nameservers"), "dns.nameservers"),
            domain=_opt_str(data.get("domain"), "dns.domain"),
            search=_str_list(data.get("search"), "dns.search"),
            options=_str_list(data.get("options"), "dns.options"),
        )


@dataclass
class Result:
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        """Render in `cni_version`'s shape. Raises CNIError(1) for a version we don't speak."""
        if cni_version in LEGACY_VERSIONS:
            return self._legacy_dict(cni_version)
        if cni_version in VERSIONED_IPS or cni_version in CURRENT_VERSIONS:
            return self._current_dict(cni_version)
        raise CNIError(INCOMPATIBLE_VERSION, "incompatible CNI versions", f"result {cni_version!r}")

    # 0.1.0 / 0.2.0: one IP per family, each with its own routes.
    def _legacy_dict(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version}
        for fam, key in (("4", "ip4"), ("6", "ip6")):
            first = next((ip for ip in self.ips if ip.family == fam), None)
            if first is None:
                # Older results cannot express routes without an address of that family;
                # libcni drops them on conversion too.
                continue
            section: dict[str, Any] = {"ip": str(first.address)}
            if first.gateway is not None:
                section["gateway"] = str(first.gateway)
            routes = [_route_dict(r, legacy=True) for r in self.routes if str(r.dst.version) == fam]
            if routes:
                section["routes"] = routes
            out[key] = section
        out["dns"] = self.dns.to_dict()
        return out

    # 0.3.0 .. 1.1.0: interfaces + ips[] + top-level routes; "version" only before 1.0.0.
    def _current_dict(self, cni_version: str) -> dict[str, Any]:
        with_version = cni_version in VERSIONED_IPS
        v11 = version_tuple(cni_version) >= (1, 1, 0)
        out: dict[str, Any] = {"cniVersion": cni_version}
        if self.interfaces:
            out["interfaces"] = [_interface_dict(i, v11) for i in self.interfaces]
        if self.ips:
            ips = []
            for ip in self.ips:
                d: dict[str, Any] = {}
                if with_version:
                    d["version"] = ip.family
                if ip.interface is not None:
                    d["interface"] = ip.interface
                d["address"] = str(ip.address)
                if ip.gateway is not None:
                    d["gateway"] = str(ip.gateway)
                ips.append(d)
            out["ips"] = ips
        if self.routes:
            out["routes"] = [_route_dict(r, legacy=not v11) for r in self.routes]
        out["dns"] = self.dns.to_dict()
        return out


def _interface_dict(iface: Interface, v11: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"name": iface.name}
    if iface.mac:
        d["mac"] = iface.mac
    if v11 and iface.mtu:
        d["mtu"] = iface.mtu
    if iface.sandbox:
        d["sandbox"] = iface.sandbox
    if v11 and iface.socket_path:
        d["socketPath"] = iface.socket_path
    if v11 and iface.pci_id:
        d["pciID"] = iface.pci_id
    return d


def _route_dict(route: Route, legacy: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"dst": str(route.dst)}
    if route.gw is not None:
        d["gw"] = str(route.gw)
    if legacy:
        return d
    if route.mtu:
        d["mtu"] = route.mtu
    if route.advmss:
        d["advmss"] = route.advmss
    if route.priority:
        d["priority"] = route.priority
    if route.table is not None:
        d["table"] = route.table
    if route.scope is not None:
        d["scope"] = route.scope
    return d


# ---- parsing (prevResult, cached results, a delegated IPAM plugin's stdout) -----------------


def parse_result(data: Any, cni_version: str | None = None) -> Result:
    """Read a result of any supported version back into a `Result`.

    The version comes from the result's own `cniVersion` when present (libcni stamps it),
    else from `cni_version` (the enclosing config's). Shape errors raise CNIError(7): a
    prevResult is part of the network configuration the runtime handed us.
    """
    if not isinstance(data, Mapping):
        raise CNIError(INVALID_CONFIG, "invalid result", "a result must be a JSON object")
    version = data.get("cniVersion") or cni_version or ""
    if version not in ALL_VERSIONS:
        raise CNIError(
            INCOMPATIBLE_VERSION, "incompatible CNI versions", f"result version {version!r}"
        )
    try:
        if version in LEGACY_VERSIONS:
            return _parse_legacy(data)
        return _parse_current(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise CNIError(INVALID_CONFIG, "invalid result", str(exc)) from exc


def _parse_legacy(data: Mapping[str, Any]) -> Result:
    res = Result(dns=DNS.from_dict(data.get("dns")))
    for key in ("ip4", "ip6"):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, Mapping):
            raise ValueError(f"{key} must be an object")
        res.ips.append(
            IPConfig(
                address=_interface_addr(section.get("ip"), f"{key}.ip"),
                gateway=_opt_addr(section.get("gateway"), f"{key}.gateway"),
            )
        )
        res.routes.extend(_parse_routes(section.get("routes"), f"{key}.routes"))
    return res


def _parse_current(data: Mapping[str, Any]) -> Result:
    res = Result(dns=DNS.from_dict(data.get("dns")))
    for i, raw in enumerate(_list(data.get("interfaces"), "interfaces")):
        if not isinstance(raw, Mapping):
            raise ValueError(f"interfaces[{i}] must be an object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"interfaces[{i}].name must be a non-empty string")
        res.interfaces.append(
            Interface(
                name=name,
                mac=_opt_str(raw.get("mac"), f"interfaces[{i}].mac"),
                sandbox=_opt_str(raw.get("sandbox"), f"interfaces[{i}].sandbox"),
                mtu=_opt_int(raw.get("mtu"), f"interfaces[{i}].mtu") or 0,
                socket_path=_opt_str(raw.get("socketPath"), f"interfaces[{i}].socketPath"),
                pci_id=_opt_str(raw.get("pciID"), f"interfaces[{i}].pciID"),
            )
        )
    for i, raw in enumerate(_list(data.get("ips"), "ips")):
        if not isinstance(raw, Mapping):
            raise ValueError(f"ips[{i}] must be an object")
        address = _interface_addr(raw.get("address"), f"ips[{i}].address")
        declared = raw.get("version")
        if declared is not None and str(declared) != str(address.version):
            raise ValueError(f"ips[{i}].version {declared!r} does not match {address}")
        iface = _opt_int(raw.get("interface"), f"ips[{i}].interface")
        if iface is not None and not 0 <= iface < len(res.interfaces):
            raise ValueError(f"ips[{i}].interface {iface} is not an index into interfaces")
        res.ips.append(
            IPConfig(
                address=address,
                gateway=_opt_addr(raw.get("gateway"), f"ips[{i}].gateway"),
                interface=iface,
            )
        )
    res.routes.extend(_parse_routes(data.get("routes"), "routes"))
    return res


def _parse_routes(raw: Any, where: str) -> list[Route]:
    routes = []
    for i, r in enumerate(_list(raw, where)):
        if not isinstance(r, Mapping):
            raise ValueError(f"{where}[{i}] must be an object")
        dst = r.get("dst")
        if not isinstance(dst, str):
            raise ValueError(f"{where}[{i}].dst must be a CIDR string")
        routes.append(
            Route(
                dst=ipaddress.ip_network(dst, strict=False),
                gw=_opt_addr(r.get("gw"), f"{where}[{i}].gw"),
                mtu=_opt_int(r.get("mtu"), f"{where}[{i}].mtu") or 0,
                advmss=_opt_int(r.get("advmss"), f"{where}[{i}].advmss") or 0,
                priority=_opt_int(r.get("priority"), f"{where}[{i}].priority") or 0,
                table=_opt_int(r.get("table"), f"{where}[{i}].table"),
                scope=_opt_int(r.get("scope"), f"{where}[{i}].scope"),
            )
        )
    return routes


def _list(raw: Any, where: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{where} must be a list")
    return raw


def _str_list(raw: Any, where: str) -> list[str]:
    items = _list(raw, where)
    if not all(isinstance(s, str) for s in items):
        raise ValueError(f"{where} must be a list of strings")
    return list(items)


def _opt_str(raw: Any, where: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise ValueError(f"{where} must be a string")
    return raw


def _opt_int(raw: Any, where: str) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"{where} must be an integer")
    return raw


def _interface_addr(raw: Any, where: str) -> IPInterface:
    if not isinstance(raw, str) or "/" not in raw:
        raise ValueError(f"{where} must be an address with prefix length, got {raw!r}")
    return ipaddress.ip_interface(raw)


def _opt_addr(raw: Any, where: str) -> IPAddress | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ValueError(f"{where} must be an address string")
    return ipaddress.ip_address(raw)
