"""`--net` flags and network configuration files: which networks a pod joins, in which order.

Pure logic (plus reading the files of net.d). The rules are rkt 1.x's:
- ``--net`` takes comma-separated ``name[:ARGS]`` items and may be repeated; a bare ``--net``
  means ``default``; no ``--net`` at all means ``default`` too. Names are unique; ``host`` and
  ``all`` take no arguments; more than one ``:`` is an error.
- Network files are the ``*.conf`` (and, for newer runtimes, ``*.conflist``) files of
  ``<local-config>/net.d``, read in file-name order; the first file that defines a name wins.
- The pod joins the requested user networks in file-name order, then one built-in network:
  ``default`` when ``default`` or ``all`` was asked for, otherwise ``default-restricted``
  (host-only traffic, e.g. a metadata service) - unless a user file already defines one of
  the two. That is why a pod on ``network1`` lists ``network1:..., default-restricted:...``.
- Interfaces are ``eth0, eth1, ...`` in that order. ARGS go verbatim to CNI_ARGS.
"""

from __future__ import annotations

import os

from rkt import jsonc
from rkt.record import factory, record

TYPE_CHECKING = False  # typing costs import time on every `rkt run`
if TYPE_CHECKING:
    from typing import Any

HOST = "host"
NONE = "none"
ALL = "all"
DEFAULT = "default"
DEFAULT_RESTRICTED = "default-restricted"
SPECIAL = (HOST, NONE, ALL)

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def valid_network_name(name: str) -> bool:
    """The CNI spec's rule, ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ (checked without compiling a regex)."""
    return bool(name) and name[0] in _ALNUM and set(name) <= _ALNUM | {"_", ".", "-"}


def valid_arg_key(key: str) -> bool:
    return bool(key) and not key[0].isdigit() and set(key) <= _ALNUM | {"_"}


class NetError(ValueError):
    """A bad --net flag or network configuration; the message is shown to the user."""


@record(frozen=True)
class NetRequest:
    name: str
    args: str = ""


@record
class NetworkConfig:
    name: str
    conf: dict[str, Any]  # a single plugin conf, or a conflist (with "plugins")
    filename: str  # sort key; the built-ins sort as rkt's stage1 files did
    path: str = ""  # "" for the built-in networks

    @property
    def is_list(self) -> bool:
        return isinstance(self.conf.get("plugins"), list)


@record
class SelectedNetwork:
    config: NetworkConfig
    ifname: str
    args: str


@record
class NetPlan:
    mode: str  # "contained" | "host" | "none"
    networks: list[SelectedNetwork] = factory(list)
    warnings: list[str] = factory(list)


def parse_net_flags(values: list[str]) -> list[NetRequest]:
    """Parse the values of every --net flag (``""`` stands for a bare ``--net``)."""
    if not values:
        return [NetRequest(DEFAULT)]
    out: list[NetRequest] = []
    seen: set[str] = set()
    for value in values:
        if value == "":
            value = DEFAULT
        for item in value.split(","):
            name, sep, args = item.partition(":")
            name = name.strip()
            if not name:
                raise NetError(f"malformed --net={value!r}: network name must not be empty")
            if ":" in args:
                raise NetError(f"malformed --net={value!r}: network {name!r} has more than one ':'")
            if not valid_network_name(name):
                raise NetError(f"malformed --net={value!r}: invalid network name {name!r}")
            if name in seen:
                raise NetError(f"malformed --net={value!r}: network {name!r} given twice")
            if sep and name in SPECIAL:
                raise NetError(f"malformed --net={value!r}: {name!r} does not take arguments")
            if sep:
                validate_cni_args(args, value)
            seen.add(name)
            out.append(NetRequest(name, args))
    names = {r.name for r in out}
    for special in (HOST, NONE):
        if special in names and len(names) > 1:
            raise NetError(f"--net={special} cannot be combined with other networks")
    return out


def validate_cni_args(args: str, flag: str = "") -> None:
    """CNI_ARGS is ``K=V;K2=V2``; catch the typo before a plugin does, half-way through a pod."""
    if not args:
        raise NetError(f"malformed --net={flag!r}: empty arguments after ':'")
    for pair in args.split(";"):
        key, eq, _ = pair.partition("=")
        if not eq or not valid_arg_key(key):
            raise NetError(f"malformed --net={flag!r}: argument {pair!r} is not KEY=VALUE")


def builtin_networks(data_dir: str) -> dict[str, NetworkConfig]:
    """rkt's two built-in networks, served by the reference ptp + host-local plugins.

    host-local keeps its leases under ``<rkt dir>/networks`` so that two runtimes with their own
    data dirs (two lab nodes) never share lease files. ``ipMasq`` on ``default`` makes ptp add
    NAT rules in the namespace rkt runs in (the node's), never in the pod.
    """
    lease_dir = os.path.join(data_dir, "networks")
    default = {
        "cniVersion": "0.1.0",
        "name": DEFAULT,
        "type": "ptp",
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "subnet": "172.16.28.0/24",
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": lease_dir,
        },
    }
    restricted = {
        "cniVersion": "0.1.0",
        "name": DEFAULT_RESTRICTED,
        "type": "ptp",
        "ipMasq": False,
        "ipam": {"type": "host-local", "subnet": "172.31.0.0/16", "dataDir": lease_dir},
    }
    return {
        DEFAULT: NetworkConfig(DEFAULT, default, "99-default.conf"),
        DEFAULT_RESTRICTED: NetworkConfig(
            DEFAULT_RESTRICTED, restricted, "99-default-restricted.conf"
        ),
    }


def parse_network_file(path: str, text: str) -> NetworkConfig:
    try:
        conf = jsonc.loads(text)
    except ValueError as e:
        raise NetError(f"error loading network file {path}: {e}") from None
    if not isinstance(conf, dict):
        raise NetError(f"error loading network file {path}: not a JSON object")
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise NetError(f'error loading network file {path}: no "name"')
    if path.endswith(".conflist"):
        plugins = conf.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise NetError(f'error loading network file {path}: a conflist needs "plugins"')
        for p in plugins:
            if not isinstance(p, dict) or not isinstance(p.get("type"), str):
                raise NetError(f'error loading network file {path}: every plugin needs "type"')
    elif not isinstance(conf.get("type"), str) or not conf["type"]:
        raise NetError(f'error loading network file {path}: no "type"')
    return NetworkConfig(name, conf, os.path.basename(path), path)


def load_net_dir(net_dir: str) -> list[NetworkConfig]:
    """Every network file of ``net_dir``, in file-name order (a missing dir is no networks)."""
    try:
        names = sorted(os.listdir(net_dir))
    except FileNotFoundError:
        return []
    out = []
    for fname in names:
        if not (fname.endswith(".conf") or fname.endswith(".conflist")):
            continue
        path = os.path.join(net_dir, fname)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            out.append(parse_network_file(path, f.read()))
    return out


def plan_networks(
    requests: list[NetRequest],
    user_nets: list[NetworkConfig],
    builtins: dict[str, NetworkConfig],
) -> NetPlan:
    """Resolve requests against the loaded files: the pod's networks, interfaces and args."""
    names = [r.name for r in requests]
    if HOST in names:
        return NetPlan("host")
    if NONE in names:
        return NetPlan("none")
    args = {r.name: r.args for r in requests}
    want_all = ALL in names
    plan = NetPlan("contained")
    chosen: list[NetworkConfig] = []
    for net in user_nets:  # already in file-name order
        if not (want_all or net.name in args):
            continue
        if any(c.name == net.name for c in chosen):
            plan.warnings.append(f"{net.name!r} network already defined, ignoring {net.path}")
            continue
        if net.name in (DEFAULT, DEFAULT_RESTRICTED):
            plan.warnings.append(f"overriding {net.name!r} network with {net.path}")
        chosen.append(net)
    if not any(c.name in (DEFAULT, DEFAULT_RESTRICTED) for c in chosen):
        builtin = DEFAULT if (DEFAULT in args or want_all) else DEFAULT_RESTRICTED
        chosen.append(builtins[builtin])
    missing = sorted(set(names) - {ALL} - {c.name for c in chosen})
    if missing:
        raise NetError(f"networks not found: {', '.join(missing)}")
    plan.networks = [
        SelectedNetwork(c, f"eth{i}", args.get(c.name, "")) for i, c in enumerate(chosen)
    ]
    return plan
