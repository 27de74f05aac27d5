"""Typed Calico v3 resources: load from and dump to the YAML/JSON that calicoctl uses.

Every resource is `{"apiVersion": "projectcalico.org/v3", "kind", "metadata", "spec"}`.
Field names on the wire are Calico's camelCase; in Python they are snake_case, converted by
one small codec (`_from_wire`/`_to_wire`) driven by the dataclass type hints, so a new field
is one line. Unknown fields are rejected (as calicoctl's strict decoding does) and every
validation error names the field path, e.g. `spec.ingress[0].action`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Union

from calico.protocols import PORT_PROTOCOLS, protocol_number
from calico.selector import SelectorError, parse

API_VERSION = "projectcalico.org/v3"


class ValidationError(ValueError):
    """A resource that does not validate; `path` names the bad field."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def wire_name(name: str) -> str:
    """snake_case -> camelCase, as Calico spells its JSON fields."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire(key: str, **kwargs: Any) -> Any:
    """A dataclass field whose JSON name is not the plain camelCase of its Python name."""
    metadata = {"wire": key}
    return field(metadata=metadata, **kwargs)


# ---------------------------------------------------------------- codec


def _field_key(f: Any) -> str:
    return f.metadata.get("wire", wire_name(f.name))


def _from_wire(tp: Any, value: Any, path: str) -> Any:
    """`value` (JSON/YAML data) as the Python value of type `tp`.

    Two decoders are made per type from the same reading of its hints: a quick one that only
    says yes or no (`_quick`), and the one that names the bad field (`_decoder`). The quick one
    runs first; anything it is unsure of (a wrong type, a key that is not a string) goes to
    the exact one, which either raises the ValidationError with its path or decodes it. Valid
    data is the common case: building a path string for every field was a third of decoding
    10,000 endpoints (tests/unit/test_resources_codec.py holds the two to the same answers)."""
    try:
        return _quick(tp)(value)
    except _Unsure:
        return _decoder(tp)(value, path)


Decoder = Callable[[Any, str], Any]


def _expect(kind: type, word: str) -> Decoder:
    def check(value: Any, path: str) -> Any:
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise ValidationError(path, f"expected {word}, got {value!r}")
        return value

    return check


def _float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(path, f"expected a number, got {value!r}")
    return float(value)


def _as_is(value: Any, path: str) -> Any:
    return value


@functools.cache
def _decoder(tp: Any) -> Decoder:
    """The function that turns the JSON value of type `tp` into Python, made once per type:
    looking at the type on every value (typing.get_origin, get_args, the isinstance chain)
    was two thirds of decoding 10,000 endpoints."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            inner = _decoder(args[0])
            return lambda value, path: None if value is None else inner(value, path)
        names = [a.__name__ for a in args]

        def either(value: Any, path: str) -> Any:  # int | str (ports): accept either as given
            if value is None:
                return None
            for arg in args:
                if isinstance(value, arg):
                    return value
            raise ValidationError(path, f"expected one of {names}")

        return either
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        item = _decoder(item_tp)

        def listed(value: Any, path: str) -> list:
            if not isinstance(value, list):
                raise ValidationError(path, f"expected a list, got {type(value).__name__}")
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

        return listed
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        val = _decoder(val_tp)

        def mapped(value: Any, path: str) -> dict:
            if not isinstance(value, dict):
                raise ValidationError(path, f"expected a mapping, got {type(value).__name__}")
            return {str(k): val(v, f"{path}.{k}") for k, v in value.items()}

        return mapped
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        return lambda value, path: _dataclass_from_wire(tp, value, path)
    if tp is float:
        return _float
    if tp is bool:
        return _expect(bool, "true or false")
    if tp is int:
        return _expect(int, "an integer")
    if tp is str:
        return _expect(str, "a string")
    return _as_is


@functools.cache
def _schema(cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """(type hints, wire key -> field) of a dataclass; computed once per class because
    get_type_hints is slow and decoding 10,000 endpoints would pay it 10,000 times."""
    return typing.get_type_hints(cls), {_field_key(f): f for f in fields(cls)}


@functools.cache
def _field_decoders(cls: type) -> tuple[frozenset[str], tuple[tuple[str, str, Decoder], ...]]:
    hints, known = _schema(cls)
    return frozenset(known), tuple((k, f.name, _decoder(hints[f.name])) for k, f in known.items())


def _dataclass_from_wire(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise ValidationError(path, f"expected a mapping, got {type(value).__name__}")
    known, decoders = _field_decoders(cls)
    if not known.issuperset(value):
        unknown = sorted(set(value) - known)
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ValidationError(where, "unknown field")
    kwargs = {}
    for key, name, decode in decoders:
        if key in value:
            kwargs[name] = decode(value[key], f"{path}.{key}" if path else key)
    return cls(**kwargs)


class _Unsure(Exception):
    """The quick decoder cannot vouch for a value: the exact one decides."""


_UNSURE = _Unsure()
Quick = Callable[[Any], Any]


def _unsure(value: Any = None) -> Any:
    raise _UNSURE


@functools.cache
def _quick(tp: Any) -> Quick:
    """The quick twin of `_decoder(tp)`: same result for what it accepts, _Unsure otherwise.
    Exact types only (`type(v) is str`): JSON gives nothing else, and YAML's oddities (an
    integer key, a bool where a number goes) are the exact decoder's to word."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            inner = _quick(args[0])
            return lambda value: None if value is None else inner(value)
        return _unsure  # int | str (ports): rare, and the exact decoder is cheap enough there
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if item_tp is str:
            return _quick_strings
        item = _quick(item_tp)
        return lambda v: [item(x) for x in v] if type(v) is list else _unsure()
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if val_tp is str:
            return _quick_string_map
        val = _quick(val_tp)

        def mapped(v: Any) -> dict:
            if type(v) is not dict or not all(type(k) is str for k in v):
                raise _UNSURE
            return {k: val(x) for k, x in v.items()}

        return mapped
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        return _quick_dataclass(tp)
    if tp is str or tp is bool or tp is int:
        return lambda v: v if type(v) is tp else _unsure()
    if tp is float:
        return lambda v: float(v) if type(v) is float or type(v) is int else _unsure()
    return lambda v: v


def wire_keys(cls: type) -> frozenset[str]:
    """The JSON field names a dataclass of this module accepts (anything else is an unknown
    field to the decoder)."""
    return _field_decoders(cls)[0]


def _quick_strings(v: Any) -> list[str]:
    """list[str]: str.join checks every item is a string, in C (a generator did it 4x slower)."""
    if type(v) is not list:
        raise _UNSURE
    try:
        "".join(v)
    except TypeError:
        raise _UNSURE from None
    return list(v)


def _quick_string_map(v: Any) -> dict[str, str]:
    """dict[str, str] (labels, annotations): keys and values checked the same way."""
    if type(v) is not dict:
        raise _UNSURE
    try:
        "".join(v)
        "".join(v.values())
    except TypeError:
        raise _UNSURE from None
    return dict(v)


def _quick_dataclass(cls: type) -> Quick:
    hints, by_key = _schema(cls)
    table = {key: (f.name, _quick(hints[f.name])) for key, f in by_key.items()}

    def dc(v: Any) -> Any:
        if type(v) is not dict:
            raise _UNSURE
        kwargs = {}
        try:
            for key, x in v.items():
                name, quick = table[key]
                kwargs[name] = quick(x)
        except KeyError:  # an unknown field: the exact decoder names it
            raise _UNSURE from None
        return cls(**kwargs)

    return dc


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _to_wire(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        out = {}
        for f in fields(value):
            # Omit what is unset (empty, false), as Go's omitempty does in Calico's types,
            # so output is what an operator wrote and round-trips cleanly.
            v = _to_wire(getattr(value, f.name))
            if _is_empty(v) or (v is False and not f.metadata.get("keep_false")):
                continue
            out[_field_key(f)] = v
        return out
    if isinstance(value, float) and value.is_integer():
        return int(value)  # order: 10, not 10.0, as Go prints a float64
    if isinstance(value, list):
        return [_to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- shared parts


@dataclass
class Metadata:
    name: str = ""
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str | None = None
    uid: str | None = None
    creation_timestamp: str | None = None
    generation: int | None = None


@dataclass
class EntityRule:
    """The source or destination half of a rule."""

    nets: list[str] = field(default_factory=list)
    not_nets: list[str] = field(default_factory=list)
    selector: str | None = None
    not_selector: str | None = None
    namespace_selector: str | None = None
    ports: list[int | str] = field(default_factory=list)
    not_ports: list[int | str] = field(default_factory=list)


@dataclass
class ICMPFields:
    type: int | None = None
    code: int | None = None


@dataclass
class RuleMetadata:
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class Rule:
    action: str = ""
    protocol: int | str | None = None
    not_protocol: int | str | None = None
    ip_version: int | None = None
    icmp: ICMPFields | None = None
    not_icmp: ICMPFields | None = wire("notICMP", default=None)
    source: EntityRule = field(default_factory=EntityRule)
    destination: EntityRule = field(default_factory=EntityRule)
    metadata: RuleMetadata | None = None


RULE_ACTIONS = ("Allow", "Deny", "Log", "Pass")
POLICY_TYPES = ("Ingress", "Egress")

# Kubernetes-style names: what Calico accepts for resource names.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# Label keys may carry a DNS prefix ("projectcalico.org/namespace").
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_PORT_RANGE_RE = re.compile(r"^(\d+):(\d+)$")
_NAMED_PORT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def parse_port(port: int | str) -> tuple[int, int] | str:
    """A rule port: 80, "8080:8090" (range) or a named port. Raises ValueError."""
    if isinstance(port, int) and not isinstance(port, bool):
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range 0-65535")
        return (port, port)
    if isinstance(port, str):
        if port.isdigit():
            return parse_port(int(port))
        m = _PORT_RANGE_RE.match(port)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if not (0 <= lo <= hi <= 65535):
                raise ValueError(f"port range {port!r} is not min:max within 0-65535")
            return (lo, hi)
        if _NAMED_PORT_RE.match(port):
            return port
    raise ValueError(f"bad port {port!r}")


def _check_name(name: str, path: str, kind: str) -> None:
    if not name:
        raise ValidationError(path, f"{kind} needs a name")
    if len(name) > 253 or not _NAME_RE.match(name):
        raise ValidationError(
            path,
            f"illegal name {name!r}: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit",
        )


def _check_labels(labels: dict[str, str], path: str) -> None:
    for key, val in labels.items():
        if not _LABEL_KEY_RE.match(key) or len(key) > 316:
            raise ValidationError(f"{path}.{key}", f"illegal label key {key!r}")
        if not isinstance(val, str):
            raise ValidationError(f"{path}.{key}", "label values are strings")


def _check_selector(text: str | None, path: str) -> None:
    if text is None:
        return
    try:
        parse(text)
    except SelectorError as exc:
        raise ValidationError(path, f"selector {text!r} does not parse: {exc}") from None


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# What ipaddress accepts as an IPv4 CIDR, the common spelling only (no netmask form, no
# leading zeros, which it refuses): a 10,000-endpoint snapshot checks 10,000 of them, and
# ip_network took ~30 ms of the agent's ~150 ms decoding it.
_PLAIN_V4_CIDR = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}(?:/(?:3[0-2]|[12]?\d))?", re.ASCII)


def _check_cidr(text: str, path: str) -> None:
    if _PLAIN_V4_CIDR.fullmatch(text):
        return
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValidationError(path, f"{text!r} is not a valid CIDR") from None


def _check_entity(rule: EntityRule, path: str, protocol: int | str | None) -> None:
    for i, net in enumerate(rule.nets):
        _check_cidr(net, f"{path}.nets[{i}]")
    for i, net in enumerate(rule.not_nets):
        _check_cidr(net, f"{path}.notNets[{i}]")
    _check_selector(rule.selector, f"{path}.selector")
    _check_selector(rule.not_selector, f"{path}.notSelector")
    _check_selector(rule.namespace_selector, f"{path}.namespaceSelector")
    for name, ports in (("ports", rule.ports), ("notPorts", rule.not_ports)):
        for i, port in enumerate(ports):
            try:
                parse_port(port)
            except ValueError as exc:
                raise ValidationError(f"{path}.{name}[{i}]", str(exc)) from None
        if ports and (protocol is None or protocol_number(protocol) not in PORT_PROTOCOLS):
            raise ValidationError(f"{path}.{name}", "ports need protocol TCP, UDP, SCTP or UDPLite")


def _check_rules(rules: list[Rule], path: str) -> None:
    for i, rule in enumerate(rules):
        here = f"{path}[{i}]"
        if rule.action not in RULE_ACTIONS:
            raise ValidationError(
                f"{here}.action",
                f"unknown action {rule.action!r} (one of {', '.join(RULE_ACTIONS)})",
            )
        for name, proto in (("protocol", rule.protocol), ("notProtocol", rule.not_protocol)):
            if proto is not None:
                try:
                    protocol_number(proto)
                except ValueError as exc:
                    raise ValidationError(f"{here}.{name}", str(exc)) from None
        if rule.ip_version not in (None, 4, 6):
            raise ValidationError(f"{here}.ipVersion", "must be 4 or 6")
        _check_entity(rule.source, f"{here}.source", rule.protocol)
        _check_entity(rule.destination, f"{here}.destination", rule.protocol)


# ---------------------------------------------------------------- kinds


@dataclass
class ProfileSpec:
    ingress: list[Rule] = field(default_factory=list)
    egress: list[Rule] = field(default_factory=list)
    labels_to_apply: dict[str, str] = field(default_factory=dict)


@dataclass
class IPPoolSpec:
    cidr: str = ""
    block_size: int | None = None
    ipip_mode: str | None = wire("ipipMode", default=None)
    vxlan_mode: str | None = None
    nat_outgoing: bool = False
    disabled: bool = False
    node_selector: str | None = None
    allowed_uses: list[str] = field(default_factory=list)


@dataclass
class NodeBGPSpec:
    ipv4_address: str | None = wire("ipv4Address", default=None)
    ipv6_address: str | None = wire("ipv6Address", default=None)
    as_number: int | str | None = None
    ipv4_ipip_tunnel_addr: str | None = wire("ipv4IPIPTunnelAddr", default=None)
    route_reflector_cluster_id: str | None = wire("routeReflectorClusterID", default=None)


@dataclass
class NodeAddress:
    address: str = ""
    type: str = ""


@dataclass
class OrchRef:
    node_name: str | None = None
    orchestrator: str = ""


@dataclass
class NodeSpec:
    bgp: NodeBGPSpec | None = wire("bgp", default=None)
    addresses: list[NodeAddress] = field(default_factory=list)
    orch_refs: list[OrchRef] = field(default_factory=list)


@dataclass
class BGPConfigurationSpec:
    as_number: int | str | None = None
    # false must survive a round trip: it is what turns the mesh off
    node_to_node_mesh_enabled: bool | None = field(default=None, metadata={"keep_false": True})
    log_severity_screen: str | None = None


@dataclass
class BGPPeerSpec:
    peer_ip: str | None = wire("peerIP", default=None)
    as_number: int | str | None = None
    node: str | None = None
    node_selector: str | None = None


@dataclass
class EndpointPort:
    name: str = ""
    protocol: str = ""
    port: int = 0


@dataclass
class WorkloadEndpointSpec:
    orchestrator: str = ""
    workload: str = ""
    node: str = ""
    container_id: str = wire("containerID", default="")
    pod: str = ""
    endpoint: str = ""
    service_account_name: str = ""
    ip_networks: list[str] = wire("ipNetworks", default_factory=list)
    ipv4_nat: list[dict[str, str]] = wire("ipNATs", default_factory=list)
    profiles: list[str] = field(default_factory=list)
    interface_name: str = ""
    mac: str = wire("mac", default="")
    ports: list[EndpointPort] = field(default_factory=list)


@dataclass
class NetworkPolicySpec:
    order: float | None = None
    tier: str | None = None
    selector: str | None = None
    types: list[str] = field(default_factory=list)
    ingress: list[Rule] = field(default_factory=list)
    egress: list[Rule] = field(default_factory=list)
    service_account_selector: str | None = None


@dataclass
class GlobalNetworkPolicySpec(NetworkPolicySpec):
    namespace_selector: str | None = None
    do_not_track: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False


@dataclass
class Resource:
    """Base of every kind: apiVersion/kind/metadata/spec on the wire."""

    metadata: Metadata = field(default_factory=Metadata)
    spec: Any = None

    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    NAMESPACED: ClassVar[bool] = False
    SPEC: ClassVar[type] = object
    ALIASES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if self.spec is None:
            self.spec = self.SPEC()

    # -- identity
    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def ident(self) -> str:
        """`kind(namespace/name)` for messages."""
        ns = f"{self.metadata.namespace}/" if self.NAMESPACED and self.metadata.namespace else ""
        return f"{self.KIND}({ns}{self.metadata.name})"

    # -- wire format
    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.KIND,
            "metadata": _to_wire(self.metadata),
            "spec": _to_wire(self.spec),
        }

    @classmethod
    def from_dict(cls, data: Any, validate: bool = True) -> Resource:
        """Any kind from its dict; the `kind` field picks the class. `validate=False` is for
        readers of what validated writers stored (the console decoding 10,000 endpoints):
        the shape is still checked field by field, the semantic checks are skipped."""
        if not isinstance(data, dict):
            raise ValidationError("", "a resource must be a mapping")
        kind = data.get("kind")
        if kind is not None and not isinstance(kind, str):
            # A number or a list from YAML (`kind: 5`) is the user's mistake, not a crash.
            raise ValidationError("kind", f"kind must be a string, not {type(kind).__name__}")
        target = KINDS_BY_KIND.get(kind) or (kind_class(kind) if kind else cls)  # type: ignore[arg-type]
        if cls is not Resource and target is not cls:
            raise ValidationError("kind", f"expected {cls.KIND}, got {kind!r}")
        if target is Resource:
            raise ValidationError("kind", "missing kind")
        api = data.get("apiVersion")
        if api != API_VERSION:
            raise ValidationError("apiVersion", f"expected {API_VERSION!r}, got {api!r}")
        if not TOP_LEVEL_KEYS.issuperset(data):
            unknown = sorted(set(data) - TOP_LEVEL_KEYS)
            raise ValidationError(unknown[0], "unknown field")
        metadata = _from_wire(Metadata, data.get("metadata") or {}, "metadata")
        spec = _from_wire(target.SPEC, data.get("spec") or {}, "spec")
        res = target(metadata=metadata, spec=spec)
        if validate:
            res.validate()
        elif target.NAMESPACED and not res.metadata.namespace:
            res.metadata.namespace = "default"
        return res

    def validate(self) -> None:
        _check_name(self.metadata.name, "metadata.name", self.KIND)
        if self.NAMESPACED:
            if not self.metadata.namespace:
                self.metadata.namespace = "default"
            _check_name(self.metadata.namespace, "metadata.namespace", "namespace")
        elif self.metadata.namespace:
            raise ValidationError("metadata.namespace", f"{self.KIND} is not namespaced")
        _check_labels(self.metadata.labels, "metadata.labels")
        self.validate_spec()

    def validate_spec(self) -> None:  # overridden per kind
        pass


@dataclass
class Profile(Resource):
    spec: ProfileSpec = field(default_factory=ProfileSpec)
    KIND: ClassVar[str] = "Profile"
    PLURAL: ClassVar[str] = "profiles"
    SPEC: ClassVar[type] = ProfileSpec
    ALIASES: ClassVar[tuple[str, ...]] = ("pro", "pros")

    def validate_spec(self) -> None:
        _check_rules(self.spec.ingress, "spec.ingress")
        _check_rules(self.spec.egress, "spec.egress")
        _check_labels(self.spec.labels_to_apply, "spec.labelsToApply")


@dataclass
class IPPool(Resource):
    spec: IPPoolSpec = field(default_factory=IPPoolSpec)
    KIND: ClassVar[str] = "IPPool"
    PLURAL: ClassVar[str] = "ippools"
    SPEC: ClassVar[type] = IPPoolSpec
    ALIASES: ClassVar[tuple[str, ...]] = ("ippool", "pool", "pools", "ipp", "ipps")

    def validate_spec(self) -> None:
        s = self.spec
        if not s.cidr:
            raise ValidationError("spec.cidr", "an IPPool needs a cidr")
        _check_cidr(s.cidr, "spec.cidr")
        net = ipaddress.ip_network(s.cidr, strict=False)
        if str(net) != s.cidr:
            raise ValidationError(
                "spec.cidr", f"{s.cidr!r} has host bits set (did you mean {net}?)"
            )
        default_block = 26 if net.version == 4 else 122
        block = s.block_size if s.block_size is not None else default_block
        limits = (20, 32) if net.version == 4 else (116, 128)
        if not limits[0] <= block <= limits[1]:
            raise ValidationError("spec.blockSize", f"must be between {limits[0]} and {limits[1]}")
        if block < net.prefixlen:
            raise ValidationError("spec.blockSize", f"/{block} blocks do not fit in {s.cidr}")
        for name, mode in (("ipipMode", s.ipip_mode), ("vxlanMode", s.vxlan_mode)):
            if mode not in (None, "Never", "Always", "CrossSubnet"):
                raise ValidationError(
                    f"spec.{name}", f"unknown mode {mode!r} (Never, Always, CrossSubnet)"
                )
        _check_selector(s.node_selector, "spec.nodeSelector")

    @property
    def block_size(self) -> int:
        if self.spec.block_size is not None:
            return self.spec.block_size
        return 26 if ipaddress.ip_network(self.spec.cidr).version == 4 else 122


@dataclass
class Node(Resource):
    spec: NodeSpec = field(default_factory=NodeSpec)
    KIND: ClassVar[str] = "Node"
    PLURAL: ClassVar[str] = "nodes"
    SPEC: ClassVar[type] = NodeSpec
    ALIASES: ClassVar[tuple[str, ...]] = ("no",)

    API_ANNOTATION: ClassVar[str] = "calico-rkt.io/api"

    def validate_spec(self) -> None:
        if self.spec.bgp:
            if self.spec.bgp.as_number is not None:
                check_as_number(self.spec.bgp.as_number, "spec.bgp.asNumber")
            for key, text in (
                ("ipv4IPIPTunnelAddr", self.spec.bgp.ipv4_ipip_tunnel_addr),
                ("routeReflectorClusterID", self.spec.bgp.route_reflector_cluster_id),
            ):
                if text:
                    try:
                        ipaddress.IPv4Address(text)
                    except ValueError:
                        raise ValidationError(
                            f"spec.bgp.{key}", f"{text!r} is not an IPv4 address"
                        ) from None
            for key, addr in (
                ("ipv4Address", self.spec.bgp.ipv4_address),
                ("ipv6Address", self.spec.bgp.ipv6_address),
            ):
                if addr:
                    try:
                        ipaddress.ip_interface(addr)
                    except ValueError:
                        raise ValidationError(
                            f"spec.bgp.{key}", f"{addr!r} is not an address/prefix"
                        ) from None

    @property
    def ipv4_address(self) -> str | None:
        """The node's address without the prefix length."""
        if self.spec.bgp and self.spec.bgp.ipv4_address:
            return str(ipaddress.ip_interface(self.spec.bgp.ipv4_address).ip)
        return None

    @property
    def as_number(self) -> int | None:
        """The node's own AS number, None when it inherits the cluster's."""
        if self.spec.bgp and self.spec.bgp.as_number not in (None, ""):
            return parse_as_number(self.spec.bgp.as_number)
        return None

    @property
    def rr_cluster_id(self) -> str | None:
        """The route reflector cluster ID when this node is a route reflector."""
        return (self.spec.bgp.route_reflector_cluster_id or None) if self.spec.bgp else None

    @property
    def api_url(self) -> str | None:
        """Where this node's agent API answers (unix:// or http(s)://)."""
        return self.metadata.annotations.get(self.API_ANNOTATION)


@dataclass
class WorkloadEndpoint(Resource):
    spec: WorkloadEndpointSpec = field(default_factory=WorkloadEndpointSpec)
    KIND: ClassVar[str] = "WorkloadEndpoint"
    PLURAL: ClassVar[str] = "workloadendpoints"
    NAMESPACED: ClassVar[bool] = True
    SPEC: ClassVar[type] = WorkloadEndpointSpec
    ALIASES: ClassVar[tuple[str, ...]] = ("wep", "weps")

    def validate_spec(self) -> None:
        for i, net in enumerate(self.spec.ip_networks):
            _check_cidr(net, f"spec.ipNetworks[{i}]")
        for i, prof in enumerate(self.spec.profiles):
            _check_name(prof, f"spec.profiles[{i}]", "profile")


def _check_policy(spec: NetworkPolicySpec) -> None:
    _check_selector(spec.selector, "spec.selector")
    for i, t in enumerate(spec.types):
        if t not in POLICY_TYPES:
            raise ValidationError(f"spec.types[{i}]", f"unknown type {t!r} (Ingress or Egress)")
    if spec.egress and spec.types and "Egress" not in spec.types:
        raise ValidationError("spec.types", "egress rules given but types does not include Egress")
    if spec.ingress and spec.types and "Ingress" not in spec.types:
        raise ValidationError(
            "spec.types", "ingress rules given but types does not include Ingress"
        )
    _check_rules(spec.ingress, "spec.ingress")
    _check_rules(spec.egress, "spec.egress")


def policy_types(spec: NetworkPolicySpec) -> list[str]:
    """Calico's defaulting of `types`: Ingress always, Egress when egress rules exist."""
    if spec.types:
        return list(spec.types)
    return ["Ingress", "Egress"] if spec.egress else ["Ingress"]


@dataclass
class NetworkPolicy(Resource):
    spec: NetworkPolicySpec = field(default_factory=NetworkPolicySpec)
    KIND: ClassVar[str] = "NetworkPolicy"
    PLURAL: ClassVar[str] = "networkpolicies"
    NAMESPACED: ClassVar[bool] = True
    SPEC: ClassVar[type] = NetworkPolicySpec
    ALIASES: ClassVar[tuple[str, ...]] = ("netpol", "netpols", "policy", "policies", "np", "nps")

    def validate_spec(self) -> None:
        _check_policy(self.spec)


@dataclass
class GlobalNetworkPolicy(Resource):
    spec: GlobalNetworkPolicySpec = field(default_factory=GlobalNetworkPolicySpec)
    KIND: ClassVar[str] = "GlobalNetworkPolicy"
    PLURAL: ClassVar[str] = "globalnetworkpolicies"
    SPEC: ClassVar[type] = GlobalNetworkPolicySpec
    ALIASES: ClassVar[tuple[str, ...]] = ("gnp", "gnps", "globalpolicy", "globalpolicies")

    def validate_spec(self) -> None:
        _check_policy(self.spec)
        _check_selector(self.spec.namespace_selector, "spec.namespaceSelector")


DEFAULT_AS_NUMBER = 64512
LOG_SEVERITIES = ("Debug", "Info", "Warning", "Error", "Fatal")


def parse_as_number(value: int | str) -> int:
    """An AS number as Calico writes it: 64512, "64512" or asdot "1.10". ValueError if bad."""
    if isinstance(value, bool):
        raise ValueError(f"bad AS number {value!r}")
    if isinstance(value, int):
        asn = value
    elif isinstance(value, str) and re.fullmatch(r"\d+", value):
        asn = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value):
        hi, lo = (int(x) for x in value.split("."))
        if hi > 65535 or lo > 65535:
            raise ValueError(f"bad AS number {value!r}: asdot halves are 0-65535")
        asn = hi * 65536 + lo
    else:
        raise ValueError(f"bad AS number {value!r}")
    if not 1 <= asn <= 4294967295:
        raise ValueError(f"AS number {value!r} out of range 1-4294967295")
    return asn


def check_as_number(value: int | str, path: str) -> None:
    try:
        parse_as_number(value)
    except ValueError as exc:
        raise ValidationError(path, str(exc)) from None


@dataclass
class BGPConfiguration(Resource):
    """The cluster's BGP settings; the one named `default` applies to every node (a
    `node.<name>` one would be per node in Calico; this project reads `default` only)."""

    spec: BGPConfigurationSpec = field(default_factory=BGPConfigurationSpec)
    KIND: ClassVar[str] = "BGPConfiguration"
    PLURAL: ClassVar[str] = "bgpconfigurations"
    SPEC: ClassVar[type] = BGPConfigurationSpec
    ALIASES: ClassVar[tuple[str, ...]] = ("bgpconfig", "bgpconfigs")

    def validate_spec(self) -> None:
        s = self.spec
        if s.as_number is not None:
            check_as_number(s.as_number, "spec.asNumber")
        if s.log_severity_screen is not None and s.log_severity_screen not in LOG_SEVERITIES:
            raise ValidationError(
                "spec.logSeverityScreen",
                f"unknown severity {s.log_severity_screen!r} (one of {', '.join(LOG_SEVERITIES)})",
            )

    @property
    def as_number(self) -> int:
        if self.spec.as_number in (None, ""):
            return DEFAULT_AS_NUMBER
        return parse_as_number(self.spec.as_number)

    @property
    def mesh_enabled(self) -> bool:
        return self.spec.node_to_node_mesh_enabled is not False

    @property
    def log_severity(self) -> str:
        return self.spec.log_severity_screen or "Info"


@dataclass
class BGPPeer(Resource):
    """A BGP peering: with every node (neither `node` nor `nodeSelector`), one node
    (`node`) or the nodes a selector matches (`nodeSelector`)."""

    spec: BGPPeerSpec = field(default_factory=BGPPeerSpec)
    KIND: ClassVar[str] = "BGPPeer"
    PLURAL: ClassVar[str] = "bgppeers"
    SPEC: ClassVar[type] = BGPPeerSpec
    ALIASES: ClassVar[tuple[str, ...]] = ("bgppeer", "bgpp", "bgpps", "bp", "bps")

    def validate_spec(self) -> None:
        s = self.spec
        if not s.peer_ip:
            raise ValidationError("spec.peerIP", "a BGPPeer needs a peerIP")
        try:
            addr = ipaddress.ip_address(s.peer_ip)
        except ValueError:
            raise ValidationError("spec.peerIP", f"{s.peer_ip!r} is not an IP address") from None
        if addr.version != 4:
            raise ValidationError("spec.peerIP", "only IPv4 peers are supported")
        if s.as_number in (None, ""):
            raise ValidationError("spec.asNumber", "a BGPPeer needs an asNumber")
        check_as_number(s.as_number, "spec.asNumber")
        if s.node and s.node_selector:
            raise ValidationError("spec.nodeSelector", "give node or nodeSelector, not both")
        if s.node:
            _check_name(s.node, "spec.node", "node")
        _check_selector(s.node_selector, "spec.nodeSelector")

    @property
    def scope(self) -> str:
        """ "global", "node specific" (node) or "node selector"."""
        if self.spec.node:
            return "node specific"
        if self.spec.node_selector:
            return "node selector"
        return "global"


KINDS: tuple[type[Resource], ...] = (
    Profile,
    IPPool,
    Node,
    BGPConfiguration,
    BGPPeer,
    WorkloadEndpoint,
    NetworkPolicy,
    GlobalNetworkPolicy,
)
KINDS_BY_PLURAL: dict[str, type[Resource]] = {cls.PLURAL: cls for cls in KINDS}
KINDS_BY_KIND: dict[str, type[Resource]] = {cls.KIND: cls for cls in KINDS}  # as stored
TOP_LEVEL_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec"})  # of every resource


def kind_class(name: str | None) -> type[Resource]:
    """The class for a kind as a user types it: any case, singular, plural or short alias."""
    from calico.kinds import UnknownKind, kind_info  # the names live there (calicoctl get)

    if not isinstance(name, str | None):
        raise ValidationError("kind", f"kind must be a string, not {type(name).__name__}")
    try:
        return KINDS_BY_PLURAL[kind_info(name).PLURAL]
    except UnknownKind as exc:
        raise ValidationError("kind", exc.message) from None


def load(data: Any, validate: bool = True) -> Resource:
    """A resource from its decoded YAML/JSON, validated (unless told it already was)."""
    return Resource.from_dict(data, validate=validate)


def load_documents(text: str) -> list[Resource]:
    """All resources in a YAML (multi-document) or JSON text; a `List` kind is unwrapped."""
    import yaml  # 18 ms to import; calicoctl and the plugin load resources without it

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ValidationError("", f"not valid YAML/JSON: {exc}") from None
    out: list[Resource] = []
    for i, doc in enumerate(docs):
        kind = doc.get("kind") if isinstance(doc, dict) else None
        items = doc.get("items", []) if isinstance(kind, str) and kind.endswith("List") else [doc]
        if not isinstance(items, list):
            got = type(items).__name__
            raise ValidationError("items", f"expected a list, got {got} [document {i + 1}]")
        for item in items:
            try:
                out.append(load(item))
            except ValidationError as exc:
                prefix = f"document {i + 1}" + (f" ({_describe(item)})" if _describe(item) else "")
                raise ValidationError(exc.path, f"{exc.message} [{prefix}]") from None
    return out


def _describe(item: Any) -> str:
    if isinstance(item, dict):
        name = (
            (item.get("metadata") or {}).get("name")
            if isinstance(item.get("metadata"), dict)
            else None
        )
        return f"{item.get('kind', '?')} {name}" if name else str(item.get("kind", ""))
    return ""
