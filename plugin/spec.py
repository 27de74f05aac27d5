"""CNI request parsing for every spec version a runtime may speak (0.1.0 .. 1.1.0).

A plugin invocation is environment variables plus a network config on stdin. This module
turns both into typed values, and rejects bad input with the code the spec assigns
(4 environment, 6 undecodable stdin, 1 version, 7 config) before any plugin logic runs.
Pure: no I/O, so the in-process fallback and the warm agent run exactly the same code.

Runtimes differ in what they send, and all of them must work:
- rkt (0.1.0): `.conf` files, no cniVersion sometimes, user args verbatim in CNI_ARGS
  (`--net=network1:IP=10.0.0.5` -> `CNI_ARGS=IP=10.0.0.5`), no prevResult.
- libcni (0.3.x .. 1.1.0): `.conflist` entries with `prevResult`, `runtimeConfig`
  (capabilities such as `ips`), `args.cni.ips`, and `IgnoreUnknown=1;K8S_POD_...` in CNI_ARGS;
  cached results on DEL/CHECK; GC with `cni.dev/valid-attachments`; STATUS.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from calico.config import EtcdSettings, resolve_settings
from plugin import phases
from plugin.errors import (
    DECODE_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    PLUGIN_FAILURE,
    CNIError,
    error_reply,
)
from plugin.result import ALL_VERSIONS, DNS, Result, parse_result, version_tuple

SUPPORTED_VERSIONS: tuple[str, ...] = ALL_VERSIONS
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
# libcni and the reference skel read a config without cniVersion as 0.1.0: older rkt
# network files often omit it.
DEFAULT_CONFIG_VERSION = "0.1.0"

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
# Commands that appeared in later spec versions; an older config may not ask for them.
MIN_VERSION_FOR = {"CHECK": (0, 4, 0), "GC": (1, 1, 0), "STATUS": (1, 1, 0)}

# Which environment variables each command cannot do without (as the spec's table has it).
# CNI_NETNS is optional on DEL: the runtime may already have destroyed the namespace, and
# DEL must still release the address.
_REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}

# Spec 1.0: container IDs and network names are alphanumeric plus `_ . -`, starting alnum.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IFNAMSIZ = 16  # kernel limit including the NUL terminator

# CNI_ARGS keys Calico understands; anything else needs IgnoreUnknown=1 (libcni's rule).
KNOWN_CNI_ARGS = (
    "IgnoreUnknown",
    "IP",
    "K8S_POD_NAME",
    "K8S_POD_NAMESPACE",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
)

DEFAULT_MTU = 1500  # Calico's default when the config gives none


# ---- CNI_ARGS ---------------------------------------------------------------------------


@dataclass
class CniArgs:
    ignore_unknown: bool = False
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    k8s_pod_name: str = ""
    k8s_pod_namespace: str = ""
    k8s_pod_infra_container_id: str = ""
    k8s_pod_uid: str = ""
    # Keys we were told to ignore; kept so logs and the endpoint can still show them.
    ignored: dict[str, str] = field(default_factory=dict)


def _parse_bool(key: str, value: str) -> bool:
    # libcni's UnmarshallableBool: "1"/"true" and "0"/"false", case-insensitive.
    low = value.lower()
    if low in ("1", "true"):
        return True
    if low in ("0", "false"):
        return False
    raise CNIError(INVALID_ENVIRONMENT, "invalid CNI_ARGS", f"{key}={value!r} is not a boolean")


def parse_cni_args(raw: str) -> CniArgs:
    """Parse `K=V;K=V`. Unknown keys are an error unless IgnoreUnknown is true anywhere."""
    pairs: list[tuple[str, str]] = []
    for item in raw.split(";"):
        if not item:
            continue  # tolerate "A=1;" and an empty CNI_ARGS
        parts = item.split("=")
        if len(parts) != 2 or not parts[0]:
            raise CNIError(INVALID_ENVIRONMENT, "invalid CNI_ARGS", f"invalid pair {item!r}")
        pairs.append((parts[0], parts[1]))

    args = CniArgs()
    # IgnoreUnknown applies to the whole string wherever it appears, as in libcni.
    for key, value in pairs:
        if key == "IgnoreUnknown":
            args.ignore_unknown = _parse_bool(key, value)

    for key, value in pairs:
        if key == "IgnoreUnknown":
            continue
        if key == "IP":
            try:
                args.ip = ipaddress.ip_address(value)
            except ValueError:
                raise CNIError(
                    INVALID_ENVIRONMENT, "invalid CNI_ARGS", f"IP={value!r} is not an IP address"
                ) from None
        elif key == "K8S_POD_NAME":
            args.k8s_pod_name = value
        elif key == "K8S_POD_NAMESPACE":
            args.k8s_pod_namespace = value
        elif key == "K8S_POD_INFRA_CONTAINER_ID":
            args.k8s_pod_infra_container_id = value
        elif key == "K8S_POD_UID":
            args.k8s_pod_uid = value
        elif args.ignore_unknown:
            args.ignored[key] = value
        else:
            raise CNIError(
                INVALID_ENVIRONMENT,
                "invalid CNI_ARGS",
                f"unknown key {key!r} (known: {', '.join(KNOWN_CNI_ARGS)}; "
                "add IgnoreUnknown=1 to pass others)",
            )
    return args


# ---- runtime environment ----------------------------------------------------------------


@dataclass
class RuntimeEnv:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: list[str] = field(default_factory=list)


def parse_env(env: Mapping[str, str]) -> RuntimeEnv:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(INVALID_ENVIRONMENT, "invalid environment", "CNI_COMMAND is not set")
    if command not in COMMANDS:
        raise CNIError(
            INVALID_ENVIRONMENT, "invalid environment", f"unknown CNI_COMMAND {command!r}"
        )
    missing = [name for name in _REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise CNIError(
            INVALID_ENVIRONMENT,
            "invalid environment",
            f"{', '.join(missing)} must be set for {command}",
        )
    renv = RuntimeEnv(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=env.get("CNI_ARGS", ""),
        path=[p for p in env.get("CNI_PATH", "").split(":") if p],
    )
    if renv.container_id and not _ID_RE.match(renv.container_id):
        raise CNIError(
            INVALID_ENVIRONMENT,
            "invalid environment",
            f"CNI_CONTAINERID {renv.container_id!r} has characters outside [A-Za-z0-9_.-]",
        )
    if renv.ifname:
        _check_ifname(renv.ifname)
    return renv


def _check_ifname(name: str) -> None:
    # The kernel's own rules (dev_valid_name): a bad name would fail later, half-way
    # through plumbing; failing here keeps the error precise.
    bad = (
        len(name) >= _IFNAMSIZ
        or name in (".", "..")
        or any(c == "/" or c == ":" or c.isspace() for c in name)
    )
    if bad:
        raise CNIError(
            INVALID_ENVIRONMENT, "invalid environment", f"CNI_IFNAME {name!r} is not a valid name"
        )


# ---- network configuration --------------------------------------------------------------


@dataclass
class IPAMConfig:
    type: str
    ipv4_pools: list[str] = field(default_factory=list)  # names or CIDRs, as Calico accepts
    ipv6_pools: list[str] = field(default_factory=list)
    assign_ipv4: bool = True
    assign_ipv6: bool = False
    subnet: str = ""  # Calico's "usePodCidr" switch; kept for fidelity, unused here
    extra: dict[str, Any] = field(default_factory=dict)  # fields we don't know, kept
    raw: dict[str, Any] = field(default_factory=dict)  # the section as given (delegation)


@dataclass
class Attachment:
    """One entry of `cni.dev/valid-attachments` (GC): what the runtime still uses."""

    container_id: str
    ifname: str


@dataclass
class NetConf:
    cni_version: str
    name: str
    type: str
    ipam: IPAMConfig | None = None
    etcd_endpoints: str = ""
    etcd_ca_cert_file: str = ""  # Calico's TLS files for etcd (else ETCD_CA_CERT_FILE...)
    etcd_cert_file: str = ""
    etcd_key_file: str = ""
    nodename: str = ""
    mtu: int = DEFAULT_MTU
    log_level: str = ""
    log_file: str = ""
    dns: DNS = field(default_factory=DNS)
    args_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = field(default_factory=list)
    runtime_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = field(default_factory=list)
    runtime_config: dict[str, Any] = field(default_factory=dict)
    prev_result: Result | None = None
    valid_attachments: list[Attachment] | None = None  # GC only; None = not given
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def require_ipam(self) -> IPAMConfig:
        if self.ipam is None:
            raise CNIError(INVALID_CONFIG, "invalid network config", "ipam section is required")
        return self.ipam


_NETCONF_FIELDS = {
    "cniVersion",
    "name",
    "type",
    "ipam",
    "etcd_endpoints",
    "etcd_ca_cert_file",
    "etcd_cert_file",
    "etcd_key_file",
    "nodename",
    "mtu",
    "log_level",
    "log_file",
    "log_file_path",
    "dns",
    "args",
    "runtimeConfig",
    "prevResult",
    "cni.dev/valid-attachments",
}
_IPAM_FIELDS = {"type", "ipv4_pools", "ipv6_pools", "assign_ipv4", "assign_ipv6", "subnet"}


def _bad(detail: str) -> CNIError:
    return CNIError(INVALID_CONFIG, "invalid network config", detail)


def _get_str(data: Mapping[str, Any], key: str, where: str = "") -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{where}{key} must be a string, got {type(value).__name__}")
    return value


def _get_str_list(data: Mapping[str, Any], key: str, where: str = "") -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{where}{key} must be a list of strings")
    return list(value)


def _get_flag(data: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    # Calico's own configs spell these as strings ("true"); JSON booleans are accepted too.
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _bad(f'{where}{key} must be "true" or "false", got {value!r}')


def _parse_ip_list(raw: Any, where: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    # The `ips` convention allows "10.0.0.5" or "10.0.0.5/24"; only the address matters to
    # IPAM (our pods always get /32).
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad(f"{where} must be a list of IP addresses")
    out = []
    for item in raw:
        if not isinstance(item, str):
            raise _bad(f"{where} entries must be strings, got {item!r}")
        try:
            out.append(ipaddress.ip_interface(item).ip)
        except ValueError:
            raise _bad(f"{where} entry {item!r} is not an IP address") from None
    return out


def parse_ipam(data: Any) -> IPAMConfig:
    if not isinstance(data, Mapping):
        raise _bad("ipam must be an object")
    ipam_type = _get_str(data, "type", "ipam.")
    if not ipam_type:
        raise _bad("ipam.type is required")
    return IPAMConfig(
        type=ipam_type,
        ipv4_pools=_get_str_list(data, "ipv4_pools", "ipam."),
        ipv6_pools=_get_str_list(data, "ipv6_pools", "ipam."),
        assign_ipv4=_get_flag(data, "assign_ipv4", True, "ipam."),
        assign_ipv6=_get_flag(data, "assign_ipv6", False, "ipam."),
        subnet=_get_str(data, "subnet", "ipam."),
        extra={k: v for k, v in data.items() if k not in _IPAM_FIELDS},
        raw=dict(data),
    )


def check_version(version: str, command: str) -> None:
    """Raise CNIError(1) unless we speak `version` and it has `command`."""
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}",
        )
    minimum = MIN_VERSION_FOR.get(command)
    if minimum and version_tuple(version) < minimum:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"config version does not allow {command}",
            f"{command} needs cniVersion >= {'.'.join(map(str, minimum))}, config is {version}",
        )


def decode_config(stdin: str | bytes) -> dict[str, Any]:
    """stdin -> JSON object, or CNIError(6)."""
    try:
        data = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CNIError(DECODE_FAILURE, "failed to decode network config", str(exc)) from None
    if not isinstance(data, dict):
        raise CNIError(
            DECODE_FAILURE,
            "failed to decode network config",
            f"expected a JSON object, got {type(data).__name__}",
        )
    version = data.get("cniVersion", DEFAULT_CONFIG_VERSION)
    if not isinstance(version, str):
        raise CNIError(DECODE_FAILURE, "failed to decode network config", "cniVersion not a string")
    return data


def config_version(data: Mapping[str, Any]) -> str:
    return data.get("cniVersion") or DEFAULT_CONFIG_VERSION


def parse_netconf(data: Mapping[str, Any]) -> NetConf:
    """A decoded config object -> NetConf. Unknown fields are kept in `extra`, never fatal:
    runtimes and other tools add their own keys (libcni's `runtimeConfig`, operators' notes)."""
    version = config_version(data)
    name = _get_str(data, "name")
    if not name:
        raise _bad("name is required")
    if not _ID_RE.match(name):
        raise _bad(f"name {name!r} must be alphanumeric plus '_', '.', '-' and start alnum")
    ptype = _get_str(data, "type")
    if not ptype:
        raise _bad("type is required")

    mtu_raw = data.get("mtu")
    if mtu_raw is None or mtu_raw == 0:
        mtu = DEFAULT_MTU
    elif isinstance(mtu_raw, bool) or not isinstance(mtu_raw, int) or not 68 <= mtu_raw <= 65535:
        # 68 is IPv4's minimum MTU; anything else cannot be set on a veth.
        raise _bad(f"mtu must be an integer between 68 and 65535, got {mtu_raw!r}")
    else:
        mtu = mtu_raw

    try:
        dns = DNS.from_dict(data.get("dns"))
    except ValueError as exc:
        raise _bad(str(exc)) from None

    args = data.get("args")
    args_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    if args is not None:
        if not isinstance(args, Mapping):
            raise _bad("args must be an object")
        cni = args.get("cni")
        if cni is not None:
            if not isinstance(cni, Mapping):
                raise _bad("args.cni must be an object")
            args_ips = _parse_ip_list(cni.get("ips"), "args.cni.ips")

    runtime_config = data.get("runtimeConfig")
    runtime_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    if runtime_config is None:
        runtime_config = {}
    elif not isinstance(runtime_config, Mapping):
        raise _bad("runtimeConfig must be an object")
    else:
        runtime_ips = _parse_ip_list(runtime_config.get("ips"), "runtimeConfig.ips")

    prev = data.get("prevResult")
    prev_result = parse_result(prev, version) if prev is not None else None

    attachments = None
    raw_att = data.get("cni.dev/valid-attachments")
    if raw_att is not None:
        if not isinstance(raw_att, list):
            raise _bad("cni.dev/valid-attachments must be a list")
        attachments = []
        for a in raw_att:
            if not isinstance(a, Mapping) or not isinstance(a.get("containerID"), str):
                raise _bad("cni.dev/valid-attachments entries need a containerID string")
            attachments.append(Attachment(a["containerID"], str(a.get("ifname", ""))))

    log_file = _get_str(data, "log_file") or _get_str(data, "log_file_path")
    return NetConf(
        cni_version=version,
        name=name,
        type=ptype,
        ipam=parse_ipam(data["ipam"]) if data.get("ipam") is not None else None,
        etcd_endpoints=_get_str(data, "etcd_endpoints"),
        etcd_ca_cert_file=_get_str(data, "etcd_ca_cert_file"),
        etcd_cert_file=_get_str(data, "etcd_cert_file"),
        etcd_key_file=_get_str(data, "etcd_key_file"),
        nodename=_get_str(data, "nodename"),
        mtu=mtu,
        log_level=_get_str(data, "log_level").lower(),
        log_file=log_file,
        dns=dns,
        args_ips=args_ips,
        runtime_ips=runtime_ips,
        runtime_config=dict(runtime_config),
        prev_result=prev_result,
        valid_attachments=attachments,
        extra={k: v for k, v in data.items() if k not in _NETCONF_FIELDS},
        raw=dict(data),
    )


# ---- the whole request ------------------------------------------------------------------


@dataclass
class Request:
    env: RuntimeEnv
    args: CniArgs
    conf: NetConf | None  # None only for VERSION
    stdin: str = ""
    full_env: dict[str, str] = field(default_factory=dict)  # CALICO_*, ETCD_* overrides

    @property
    def command(self) -> str:
        return self.env.command

    @property
    def cni_version(self) -> str:
        return self.conf.cni_version if self.conf else LATEST_VERSION

    @property
    def handle_id(self) -> str:
        """Calico's IPAM handle for this attachment: `<network>.<containerID>`."""
        assert self.conf is not None
        return f"{self.conf.name}.{self.env.container_id}"

    def requested_ips(self) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """Addresses the runtime asked for, from CNI_ARGS IP=, args.cni.ips and
        runtimeConfig.ips, in that order, without duplicates."""
        seen: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        sources = [self.args.ip] if self.args.ip is not None else []
        if self.conf:
            sources += self.conf.args_ips + self.conf.runtime_ips
        for ip in sources:
            if ip not in seen:
                seen.append(ip)
        return seen

    def nodename(self, hostname: str) -> str:
        """Config `nodename`, else env CALICO_NODENAME, else the host name (lowercased,
        as Calico does, because Node resource names are lowercase)."""
        if self.conf and self.conf.nodename:
            return self.conf.nodename
        return self.full_env.get("CALICO_NODENAME") or hostname.lower()

    def etcd_endpoints(self) -> str | None:
        if self.conf and self.conf.etcd_endpoints:
            return self.conf.etcd_endpoints
        return self.full_env.get("ETCD_ENDPOINTS") or None

    def etcd_settings(self) -> EtcdSettings:
        """Endpoints and TLS files: the network config's `etcd_*` fields, else the
        request's environment (ETCD_ENDPOINTS, ETCD_CA_CERT_FILE, ...: the runtime's, also
        when the agent runs the request), else calicoctl.cfg. ConfigError if unusable."""
        conf = self.conf
        return resolve_settings(
            endpoints=self.etcd_endpoints(),
            ca_cert_file=(conf.etcd_ca_cert_file if conf else "") or None,
            cert_file=(conf.etcd_cert_file if conf else "") or None,
            key_file=(conf.etcd_key_file if conf else "") or None,
            env=self.full_env,
            source="network config etcd_{attr}",
        )


def parse_request(env: Mapping[str, str], stdin: str | bytes) -> Request:
    """Validate in the order the reference skel does: environment (4), then stdin (6),
    then version (1), then the config's fields (7), then CNI_ARGS (4)."""
    renv = parse_env(env)
    if renv.command == "VERSION":
        return Request(env=renv, args=CniArgs(), conf=None, stdin=_text(stdin), full_env=dict(env))
    data = decode_config(stdin)
    check_version(config_version(data), renv.command)
    conf = parse_netconf(data)
    args = parse_cni_args(renv.args)
    return Request(env=renv, args=args, conf=conf, stdin=_text(stdin), full_env=dict(env))


def _text(stdin: str | bytes) -> str:
    return stdin.decode("utf-8", "replace") if isinstance(stdin, bytes) else stdin


def sniff_version(stdin: str | bytes) -> str | None:
    """Best effort: the config's cniVersion, so even an early error speaks its version."""
    try:
        data = json.loads(stdin)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    version = data.get("cniVersion", DEFAULT_CONFIG_VERSION)
    return version if version in SUPPORTED_VERSIONS else None


def version_info(stdin: str | bytes) -> dict[str, Any]:
    """VERSION's answer. Echo the caller's version when we speak it (the spec's example);
    stdin may be empty or junk (older runtimes send nothing), which is not an error."""
    return {
        "cniVersion": sniff_version(stdin) or LATEST_VERSION,
        "supportedVersions": list(SUPPORTED_VERSIONS),
    }


# ---- dispatch: the one entry both the agent and the in-process fallback call ------------

Handler = Callable[[Request], Result | None]


def dispatch(request: Mapping[str, Any], handlers: Mapping[str, Handler]) -> dict[str, Any]:
    """Run one shim request (`{"env": {...}, "stdin": "..."}`) and build the shim's reply
    (`{"exit_code", "stdout", "stderr"}`). VERSION is answered here; ADD's Result is rendered
    in the config's version; DEL/CHECK/GC/STATUS print nothing on success."""
    env = request.get("env") or {}
    stdin = request.get("stdin") or ""
    try:
        with phases.phase("parse"):
            req = parse_request(env, stdin)
        if req.command == "VERSION":
            return {"exit_code": 0, "stdout": json.dumps(version_info(stdin)) + "\n", "stderr": ""}
        handler = handlers.get(req.command)
        if handler is None:
            raise CNIError(
                INVALID_ENVIRONMENT, "invalid environment", f"{req.command} is not implemented"
            )
        result = handler(req)
        out = ""
        if req.command == "ADD":
            if result is None:
                raise CNIError(PLUGIN_FAILURE, "plugin error", "ADD produced no result")
            with phases.phase("render"):
                out = json.dumps(result.to_dict(req.cni_version), indent=4) + "\n"
        return {"exit_code": 0, "stdout": out, "stderr": ""}
    except CNIError as err:
        return error_reply(err, sniff_version(stdin))
    except Exception as exc:  # the boundary: the runtime must always get the spec's JSON
        err = CNIError(PLUGIN_FAILURE, "plugin error", f"{type(exc).__name__}: {exc}")
        return error_reply(err, sniff_version(stdin))
