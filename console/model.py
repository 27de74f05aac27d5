"""What the console shows, as plain data: cluster state in, table rows out.

No Textual here: the views' columns, rows, states and filters are pure functions of a
`ClusterState`, so they are tested without a terminal and the widgets stay thin.
"""

from __future__ import annotations

import ipaddress
import json
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from calico.datastore import KV
from calico.health import assess
from calico.keys import (
    BLOCK_PREFIX,
    FELIX_ROOT,
    RESOURCE_ROOT,
    cidr_from_block_key,
    parse_endpoint_status_key,
)
from calico.resources import (
    API_VERSION,
    TOP_LEVEL_KEYS,
    GlobalNetworkPolicy,
    IPPool,
    Metadata,
    NetworkPolicy,
    Node,
    Profile,
    Resource,
    ValidationError,
    WorkloadEndpoint,
    WorkloadEndpointSpec,
    load,
    wire_keys,
)


@dataclass
class NodeInfo:
    """What a node's agent says about itself (API); None fields: not known yet."""

    reachable: bool | None = None
    error: str = ""
    health: dict[str, Any] = field(default_factory=dict)
    pods: list[dict[str, Any]] = field(default_factory=list)
    networks: list[dict[str, Any]] = field(default_factory=list)  # CNI files found on the node
    # GET /v1/bgp: {backend, running, router_id, peers: [PeerStatus as dict], error}; None
    # with bgp_error set when the agent does not serve it (or it failed)
    bgp: dict[str, Any] | None = None
    bgp_error: str = ""


@dataclass
class ClusterState:
    """Everything the console knows, keyed the way it arrives (etcd keys, node names)."""

    resources: dict[str, Resource] = field(default_factory=dict)  # etcd key -> resource
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)  # block cidr -> block JSON
    felix: dict[str, Any] = field(default_factory=dict)  # status key -> JSON
    nodes: dict[str, NodeInfo] = field(default_factory=dict)  # node name -> agent info
    bad_keys: dict[str, str] = field(default_factory=dict)  # key -> why it did not load

    def apply_kv(self, key: str, kv: KV | None, decoded: Decoded | None = None) -> None:
        """One etcd key changed (kv None: deleted); `decoded`: `decode(kv)`, done ahead."""
        if key.startswith(RESOURCE_ROOT):
            self.bad_keys.pop(key, None)
            if kv is None:
                self.resources.pop(key, None)
                return
            res, error = decoded if decoded is not None else decode(kv)
            if res is None:
                self.resources.pop(key, None)
                self.bad_keys[key] = error
            else:
                self.resources[key] = res
        elif key.startswith(BLOCK_PREFIX):
            try:
                cidr = str(cidr_from_block_key(key))
            except ValueError:
                self.bad_keys[key] = "not a block key"
                return
            if kv is None:
                self.blocks.pop(cidr, None)
            else:
                try:
                    self.blocks[cidr] = json.loads(kv.value)
                except ValueError:
                    self.bad_keys[key] = "block is not JSON"
        elif key.startswith(FELIX_ROOT):
            if kv is None:
                self.felix.pop(key, None)
            else:
                try:
                    self.felix[key] = json.loads(kv.value)
                except ValueError:
                    pass

    def replace_all(
        self, kvs: Iterable[KV], ahead: dict[str, tuple[int, Decoded]] | None = None
    ) -> None:
        """The whole state from a listing; `ahead`: key -> (mod_revision, decoded) of
        resources decoded while it was read (console.sync), used where the revision is the
        listed one."""
        self.resources.clear()
        self.blocks.clear()
        self.felix.clear()
        self.bad_keys.clear()
        ahead = ahead or {}
        for kv in kvs:
            done = ahead.get(kv.key)
            self.apply_kv(kv.key, kv, done[1] if done and done[0] == kv.mod_revision else None)

    def copy(self) -> ClusterState:
        """A snapshot for the UI thread. Shallow is enough: values are replaced on change,
        never mutated, so the UI can read its copy while the sync thread moves on."""
        return ClusterState(
            resources=dict(self.resources),
            blocks=dict(self.blocks),
            felix=dict(self.felix),
            nodes=dict(self.nodes),
            bad_keys=dict(self.bad_keys),
        )

    def of_kind(self, cls: type[Resource]) -> list[Resource]:
        return sorted((r for r in self.resources.values() if isinstance(r, cls)), key=_identity)


def _identity(r: Resource) -> tuple[str, str]:
    """(namespace, name): how resources are listed; a StoredEndpoint answers from its JSON."""
    if type(r) is StoredEndpoint:
        return r.identity()
    return (r.metadata.namespace or "", r.metadata.name)


class StoredEndpoint(WorkloadEndpoint):
    """A WorkloadEndpoint held as etcd stored it (its JSON's bytes) until something reads its
    metadata or spec: then it becomes the typed resource, in place, once.

    Why: at 10,000 endpoints, making the typed resources took as long as parsing their JSON
    (45 vs 37 ms) and the Endpoints table needs neither: the few fields it shows are read
    from the JSON where it is parsed (the follower process, while etcd serves the
    next page), and `endpoint_fields` hands them over. The matrix, why?, what-if and
    describe read the typed fields and pay on first use. Two threads reading a fresh one at
    once both decode it; the results are equal.

    JSON that does not decode (hand-written into etcd) leaves an endpoint with its name, an
    empty spec and `error` set; its row says error, instead of the row vanishing."""

    def __init__(self, raw: bytes, doc: dict[str, Any], revision: int) -> None:  # not the
        # dataclass's. `doc` is `raw` parsed; only the bytes are kept: the parsed JSON is
        # ten objects for the collector to walk per endpoint (at 10,000 endpoints its
        # collections took 20-25 ms of the first 60 ms row build) and four times the memory.
        self.raw = raw
        self.revision = revision
        self.error = ""
        self.fields = _fields_from_json(doc)  # None: not the usual shape; decode to see why

    @classmethod
    def listed(cls, raw: bytes, revision: int, fields: EndpointFields) -> StoredEndpoint:
        """One whose fields the follower process read (`listed_fields`), so this process
        does not parse its JSON until something needs the typed resource."""
        self = cls.__new__(cls)
        self.__dict__.update(raw=raw, revision=revision, error="", fields=fields)
        return self

    @property  # type: ignore[override]
    def metadata(self) -> Metadata:
        if "_spec" not in self.__dict__:
            self._decode()
        return self.__dict__["_metadata"]

    @metadata.setter
    def metadata(self, value: Metadata) -> None:
        self.__dict__["_metadata"] = value

    @property  # type: ignore[override]
    def spec(self) -> WorkloadEndpointSpec:
        if "_spec" not in self.__dict__:
            self._decode()
        return self.__dict__["_spec"]

    @spec.setter
    def spec(self, value: WorkloadEndpointSpec) -> None:
        self.__dict__["_spec"] = value

    def _decode(self) -> None:
        doc = orjson.loads(self.raw)  # parsed once already: it is JSON
        try:
            res = load(doc, validate=False)
            metadata, spec = res.metadata, res.spec
        except ValidationError as exc:
            self.error = str(exc)
            meta = doc.get("metadata")
            meta = meta if type(meta) is dict else {}
            name, ns = meta.get("name"), meta.get("namespace")
            metadata = Metadata(
                name=name if type(name) is str else "",
                namespace=ns if type(ns) is str and ns else "default",
            )
            spec = WorkloadEndpointSpec()
        metadata.resource_version = str(self.revision)
        self.__dict__.update(_metadata=metadata, _spec=spec)

    @property
    def decoded(self) -> bool:
        return "_spec" in self.__dict__

    def identity(self) -> tuple[str, str]:
        """(namespace, name), from the JSON's fields while undecoded (an odd shape decodes)."""
        if self.fields is not None and not self.decoded:
            return (self.fields.namespace, self.fields.name)
        return (self.metadata.namespace or "", self.metadata.name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkloadEndpoint):
            return NotImplemented
        return (self.metadata, self.spec) == (other.metadata, other.spec)

    __hash__ = None  # type: ignore[assignment]  # as the dataclass it stands for


Decoded = tuple[Resource | None, str]  # (the resource, or None and why it did not load)


def _is_stored_endpoint(doc: Any) -> bool:
    """Whether `decode` holds this document as a StoredEndpoint."""
    return (
        type(doc) is dict
        and doc.get("kind") == WorkloadEndpoint.KIND
        and doc.get("apiVersion") == API_VERSION
    )


def listed_fields(kv: KV) -> tuple[str, ...] | None:
    """What the follower process sends beside a listed key (console/follower_process.py):
    the table's fields of an endpoint that `decode` makes a StoredEndpoint with fields; None
    for every other key, which the console decodes itself. (Not through `decode`: the
    StoredEndpoint it would make is thrown away here, a fifth of the child's work.)"""
    if not kv.key.startswith(RESOURCE_ROOT):
        return None
    try:
        doc = orjson.loads(kv.value)
    except ValueError:
        return None
    fields = _fields_from_json(doc) if _is_stored_endpoint(doc) else None
    return tuple(fields) if fields is not None else None


def decode_listed(kv: KV, fields: tuple[str, ...] | None) -> Decoded:
    """`decode(kv)`, given the `listed_fields` the follower process sent for it."""
    if fields is None:
        return decode(kv)
    return StoredEndpoint.listed(kv.value, kv.mod_revision, EndpointFields(*fields)), ""


def decode(kv: KV) -> Decoded:
    """A resource key's value as the console holds it. Stored resources were validated by
    whoever wrote them; the console only displays, so it does not validate again. Endpoints
    stay JSON until used (StoredEndpoint)."""
    try:
        doc = orjson.loads(kv.value)
        if _is_stored_endpoint(doc):
            return StoredEndpoint(kv.value, doc, kv.mod_revision), ""
        res = load(doc, validate=False)
    except (ValidationError, ValueError) as exc:  # orjson's JSONDecodeError is a ValueError
        return None, str(exc)
    res.metadata.resource_version = str(kv.mod_revision)
    return res, ""


# ---------------------------------------------------------------- views


class Row(NamedTuple):
    """One row of a view. A NamedTuple, not a frozen dataclass: as immutable, and made in
    a third of the time (10,000 Endpoints rows: 2.0 against 6.1 ms)."""

    key: str  # stable identity, e.g. the etcd key: rows update in place
    cells: tuple[str, ...]
    state: str = ""  # a word the widget colours: running, exited, programmed, pending, down ...
    resource: Resource | None = None
    data: dict[str, Any] | None = None  # for non-resource rows (pods, networks)


@dataclass(frozen=True)
class View:
    name: str
    title: str
    columns: tuple[str, ...]
    rows: Callable[[ClusterState], list[Row]]
    empty_hint: str
    kind: type[Resource] | None = None  # editable resource kind behind the rows


def _labels_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" if v else k for k, v in sorted(labels.items()))


def profile_members(state: ClusterState, profile: str) -> list[WorkloadEndpoint]:
    return [
        w
        for w in state.of_kind(WorkloadEndpoint)
        if isinstance(w, WorkloadEndpoint) and profile in w.spec.profiles
    ]


def endpoint_status_index(state: ClusterState) -> dict[tuple[str, str, str], str]:
    """(node, endpoint name, ifname) -> status, from the agents' felix status keys
    (`.../host/<node>/workload/<orchestrator>/<name>/endpoint/<ifname>`), built once per
    view rather than scanned once per endpoint."""
    index = {}
    for key, value in state.felix.items():
        parsed = parse_endpoint_status_key(key)
        if parsed is None:
            continue
        status = value.get("status") if isinstance(value, dict) else None
        index[(parsed.node, parsed.wep_name, parsed.endpoint)] = (
            "programmed" if status == "up" else str(status)
        )
    return index


def _block_usage(block: dict[str, Any]) -> tuple[int, int]:
    allocations = block.get("allocations") or []
    used = sum(1 for a in allocations if a is not None)
    return used, len(allocations)


def _pool_of(pools: list[IPPool], cidr: str) -> IPPool | None:
    net = ipaddress.ip_network(cidr, strict=False)
    for pool in pools:
        if net.subnet_of(ipaddress.ip_network(pool.spec.cidr)):  # type: ignore[arg-type]
            return pool
    return None


def bar(used: int, total: int, width: int = 12) -> str:
    """A text usage bar: ███░░░ 3/64."""
    filled = round(width * used / total) if total else 0
    return "█" * filled + "░" * (width - filled) + f" {used}/{total}"


BGP_COLUMNS = ("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO")


def bgp_summary(info: NodeInfo) -> str:
    """The :nodes BGP cell: "2/2 up", "direct" (no BGP by design), "bird down", "n/a"."""
    bgp = info.bgp
    if bgp is None:
        return "n/a" if info.bgp_error else ""
    if bgp.get("backend") == "direct":
        return "direct"
    if not bgp.get("running"):
        return "bird down"
    peers = bgp.get("peers") or []
    up = sum(1 for p in peers if p.get("state") == "up")
    return f"{up}/{len(peers)} up" if peers else "no peers"


def bgp_peer_lines(info: NodeInfo | None) -> list[str]:
    """A node's BGP peers as `calicoctl node status` prints them: a heading line, then a
    table (PEER ADDRESS, PEER TYPE, STATE, SINCE, INFO)."""
    if info is None or info.reachable is None:
        return ["BGP: not known yet"]
    if info.bgp is None:
        return [f"BGP: {info.bgp_error or 'unknown'}"]
    bgp = info.bgp
    if bgp.get("backend") == "direct":
        return ["BGP: none (backend direct: the agent routes to remote blocks itself)"]
    head = f"BGP: backend {bgp.get('backend', '?')}, BIRD " + (
        "running" if bgp.get("running") else "NOT RUNNING"
    )
    if bgp.get("router_id"):
        head += f", router id {bgp['router_id']}"
    lines = [head]
    if bgp.get("error"):
        lines.append(f"error: {bgp['error']}")
    peers = bgp.get("peers") or []
    if not peers:
        return [*lines, "No BGP peers."]
    rows = [BGP_COLUMNS] + [
        tuple(str(p.get(k) or "") for k in ("peer_address", "peer_type", "state", "since", "info"))
        for p in peers
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(BGP_COLUMNS))]
    lines += ["", f"Peers ({len(peers)}):"]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return lines


def node_rows(state: ClusterState) -> list[Row]:
    rows = []
    nodes = {n.metadata.name: n for n in state.of_kind(Node)}
    names = sorted(set(nodes) | set(state.nodes))
    for name in names:
        node = nodes.get(name)
        info = state.nodes.get(name, NodeInfo())
        blocks = [c for c, b in state.blocks.items() if b.get("affinity") == f"host:{name}"]
        addr = node.ipv4_address if isinstance(node, Node) else ""
        why = ""
        if info.reachable is None:
            agent, st = "unknown", "pending"
        elif info.reachable and "heartbeat" in info.health:
            # The agent's own answer, judged as every reader judges it: a stale heartbeat
            # (its main loop stuck while the API thread answers) is unhealthy.
            verdict = assess(info.health, live=True)
            if verdict.healthy:
                agent, st = "ready", "running"
            elif verdict.fresh and not info.health.get("ready"):
                agent, st = "syncing", "pending"
            else:
                agent, st, why = "unhealthy", "down", verdict.reason
            if verdict.rejected:
                n = verdict.rejected
                agent += f", {n} rejected"
                keys = info.health.get("rejected_keys") or []
                listed = "; ".join(f"{r.get('key')}: {r.get('reason')}" for r in keys[:5])
                why = "; ".join(x for x in (why, f"cannot program {n}: {listed}") if x)
        elif info.reachable:  # an agent older than health stamps
            in_sync = info.health.get("in_sync", info.health.get("ready"))
            agent, st = ("ready", "running") if in_sync else ("syncing", "pending")
        else:
            agent, st, why = "unreachable", "down", info.error or "the node API does not answer"
        running = sum(1 for p in info.pods if p.get("state") == "running")
        rows.append(
            Row(
                key=f"node/{name}",
                cells=(
                    name,
                    addr or "",
                    agent,
                    f"{running}/{len(info.pods)}",
                    bgp_summary(info),
                    ",".join(sorted(blocks)),
                ),
                state=st,
                resource=node,
                data={"health": why} if why else None,
            )
        )
    return rows


def network_rows(state: ClusterState) -> list[Row]:
    """Networks: CNI files found on nodes, joined with profiles of the same name and pools."""
    found: dict[str, dict[str, Any]] = {}
    for node, info in sorted(state.nodes.items()):
        for net in info.networks:
            entry = found.setdefault(
                net.get("name", "?"), {"nodes": [], "type": net.get("type", "")}
            )
            entry["nodes"].append(node)
    profiles = {p.metadata.name: p for p in state.of_kind(Profile)}
    pools = [p for p in state.of_kind(IPPool) if isinstance(p, IPPool) and not p.spec.disabled]
    pool_text = ",".join(p.spec.cidr for p in pools)
    names = sorted(set(found) | set(profiles))
    rows = []
    for name in names:
        entry = found.get(name, {"nodes": [], "type": "calico" if name in profiles else ""})
        members = profile_members(state, name)
        is_calico = entry["type"] == "calico"
        rows.append(
            Row(
                key=f"network/{name}",
                cells=(
                    name,
                    entry["type"] or "?",
                    ",".join(entry["nodes"]) or "-",
                    "yes" if name in profiles else ("missing" if is_calico else "-"),
                    pool_text if is_calico else "-",
                    str(len(members)),
                ),
                state="programmed" if name in profiles else "pending",
                resource=profiles.get(name),
            )
        )
    return rows


def profile_rows(state: ClusterState) -> list[Row]:
    rows = []
    for p in state.of_kind(Profile):
        assert isinstance(p, Profile)
        rows.append(
            Row(
                key=f"profile/{p.metadata.name}",
                cells=(
                    p.metadata.name,
                    str(len(p.spec.ingress)),
                    str(len(p.spec.egress)),
                    _labels_text(p.spec.labels_to_apply),
                    str(len(profile_members(state, p.metadata.name))),
                ),
                resource=p,
            )
        )
    return rows


def pool_rows(state: ClusterState) -> list[Row]:
    rows = []
    pools = [p for p in state.of_kind(IPPool) if isinstance(p, IPPool)]
    for p in pools:
        blocks = [b for c, b in state.blocks.items() if _pool_of([p], c) is p]
        used = sum(_block_usage(b)[0] for b in blocks)
        total = ipaddress.ip_network(p.spec.cidr).num_addresses
        rows.append(
            Row(
                key=f"pool/{p.metadata.name}",
                cells=(
                    p.metadata.name,
                    p.spec.cidr,
                    f"/{p.block_size}",
                    str(len(blocks)),
                    bar(used, total),
                    "disabled" if p.spec.disabled else "enabled",
                ),
                state="exited" if p.spec.disabled else "running",
                resource=p,
            )
        )
    return rows


def pod_rows(state: ClusterState) -> list[Row]:
    rows = []
    for node, info in sorted(state.nodes.items()):
        for pod in info.pods:
            nets = ", ".join(
                f"{n.get('name')}:ip4={n.get('ip', '')}" for n in pod.get("networks", [])
            )
            rows.append(
                Row(
                    key=f"pod/{node}/{pod.get('uuid')}",
                    cells=(
                        str(pod.get("uuid", ""))[:8],
                        node,
                        str(pod.get("app", "")),
                        str(pod.get("image", "")),
                        str(pod.get("state", "")),
                        nets,
                        str(pod.get("created", "")),
                    ),
                    state=str(pod.get("state", "")),
                    data={**pod, "node": node},
                )
            )
    return rows


class EndpointFields(NamedTuple):
    """What the Endpoints table shows of an endpoint."""

    namespace: str
    name: str
    node: str
    container_id: str
    endpoint: str
    workload: str
    ip_networks: str  # joined with ","
    interface_name: str
    profiles: str  # joined with ","


def endpoint_fields(w: WorkloadEndpoint) -> EndpointFields:
    """The table's fields of an endpoint: from the typed resource once it is decoded, from
    its stored JSON before (StoredEndpoint), the same either way
    (tests/unit/console/test_stored_endpoint.py). JSON that is not the expected shape is
    decoded after all, which says what is wrong with it."""
    if type(w) is StoredEndpoint and w.fields is not None and not w.decoded:
        return w.fields
    meta, spec = w.metadata, w.spec
    return EndpointFields(
        meta.namespace or "",
        meta.name,
        spec.node,
        spec.container_id,
        spec.endpoint,
        spec.workload,
        ",".join(spec.ip_networks),
        spec.interface_name,
        ",".join(spec.profiles),
    )


_META_KEYS = wire_keys(Metadata)
_SPEC_KEYS = wire_keys(WorkloadEndpointSpec)


def _fields_from_json(doc: dict[str, Any]) -> EndpointFields | None:
    """The table's fields straight from the JSON, or None where the typed decoder would have
    more to say: a field it does not know, a type the table reads that is wrong. (A wrong
    type in a field the table does not show, a label's value say, is found when the typed
    resource is made, and the row then says error.)"""
    meta, spec = doc.get("metadata"), doc.get("spec")
    if type(meta) is not dict or type(spec) is not dict:
        return None
    if not (TOP_LEVEL_KEYS.issuperset(doc) and _META_KEYS.issuperset(meta)):
        return None
    if not _SPEC_KEYS.issuperset(spec):
        return None
    nets, profiles = spec.get("ipNetworks", []), spec.get("profiles", [])
    if type(nets) is not list or type(profiles) is not list:
        return None  # a string where a list goes would join its letters
    try:
        name, ns = meta["name"], meta.get("namespace") or "default"
        strings = (
            spec.get("node", ""),
            spec.get("containerID", ""),
            spec.get("endpoint", ""),
            spec.get("workload", ""),
            ",".join(nets),
            spec.get("interfaceName", ""),
            ",".join(profiles),
        )
    except (KeyError, TypeError):  # no name; a list holding a non-string
        return None
    for v in (name, ns, *strings):
        if type(v) is not str:
            return None
    return EndpointFields(ns, name, *strings)


_POD_OF_FIELDS = operator.itemgetter(2, 3)  # EndpointFields -> (node, container_id)


def endpoint_rows(state: ClusterState) -> list[Row]:
    """One row per WorkloadEndpoint. Written for 10,000 of them (the Endpoints view's load
    time, bench/bench_console.py): no typed resource is made for it (StoredEndpoint), and
    the loop is one pass over plain tuples (32 -> 23 ms at 10,000)."""
    rows: list[Row] = []
    append = rows.append
    statuses = endpoint_status_index(state)
    weps = state.of_kind(WorkloadEndpoint)
    fields_ = [endpoint_fields(w) for w in weps]  # type: ignore[arg-type]
    # A pod on several networks has one endpoint per interface: say which one each row is.
    per_pod = Counter(map(_POD_OF_FIELDS, fields_))
    shared = {pod for pod, n in per_pod.items() if n > 1}
    for w, (ns, name, node, cid, endpoint, workload, nets, ifname, profiles) in zip(
        weps, fields_, strict=True
    ):
        status = statuses.get((node, name, endpoint), "pending") if statuses else "pending"
        if type(w) is StoredEndpoint and w.error:
            status = "error"
        workload = workload or cid[:12]
        if endpoint and shared and (node, cid) in shared:
            workload += f"/{endpoint}"
        append(Row(f"wep/{ns}/{name}", (workload, node, nets, ifname, profiles, status), status, w))
    # An endpoint no agent can program (it did not load, here either): its node's agent
    # says so with an "error" status key; show it rather than nothing.
    errors = []
    for key, value in sorted(state.felix.items()):
        parsed = parse_endpoint_status_key(key)
        if parsed is None or not isinstance(value, dict) or value.get("status") != "error":
            continue
        errors.append((key, value, parsed))
    shown = {(f.node, f.name) for f in fields_} if errors else set()
    for key, value, parsed in errors:
        if (parsed.node, parsed.wep_name) in shown:
            continue
        rows.append(
            Row(
                key=f"wep-error/{key}",
                cells=(parsed.wep_name, parsed.node, "", str(value.get("interface") or ""), "",
                       "error"),
                state="error",
                data={"status key": key, "reason": value.get("reason", "")},
            )
        )  # fmt: skip
    return rows


def policy_rows(state: ClusterState) -> list[Row]:
    rows = []
    for p in [*state.of_kind(GlobalNetworkPolicy), *state.of_kind(NetworkPolicy)]:
        spec = p.spec
        order = "" if spec.order is None else f"{spec.order:g}"
        rows.append(
            Row(
                key=f"policy/{p.KIND}/{p.metadata.namespace or ''}/{p.metadata.name}",
                cells=(
                    p.metadata.name,
                    "global" if isinstance(p, GlobalNetworkPolicy) else p.metadata.namespace or "",
                    order,
                    spec.selector or "all()",
                    ",".join(spec.types) or "Ingress",
                    f"{len(spec.ingress)}/{len(spec.egress)}",
                ),
                resource=p,
            )
        )
    return rows


VIEWS: dict[str, View] = {
    v.name: v
    for v in (
        View("nodes", "Nodes", ("NAME", "ADDRESS", "AGENT", "PODS", "BGP", "BLOCKS"), node_rows,
             "No nodes registered. Start a lab: calico-lab up", Node),
        View("networks", "Networks", ("NAME", "TYPE", "NODES", "PROFILE", "POOLS", "ENDPOINTS"),
             network_rows, "No networks yet. Write a CNI file with \"type\": \"calico\" into "
             "/etc/rkt/net.d on a node (see :tutorial).", Profile),
        View("profiles", "Profiles", ("NAME", "INGRESS", "EGRESS", "LABELS", "MEMBERS"),
             profile_rows, "No profiles. The calico CNI plugin creates one per network on "
             "the first pod.", Profile),
        View("pools", "IP pools", ("NAME", "CIDR", "BLOCK", "BLOCKS", "USED", "STATE"), pool_rows,
             "No IP pools. Create one: calicoctl apply -f pool.yaml", IPPool),
        View("pods", "Pods", ("UUID", "NODE", "APP", "IMAGE", "STATE", "NETWORKS", "CREATED"),
             pod_rows, "No pods. Press n to launch a test pod.", None),
        View("endpoints", "Workload endpoints", ("WORKLOAD", "NODE", "NETWORKS", "INTERFACE",
             "PROFILES", "STATUS"), endpoint_rows, "No endpoints. Start a pod on a calico "
             "network.", WorkloadEndpoint),
        View("policies", "Policies", ("NAME", "SCOPE", "ORDER", "SELECTOR", "TYPES", "RULES"),
             policy_rows, "No policies: profiles alone decide (same network only).",
             GlobalNetworkPolicy),
    )
}  # fmt: skip


# ---------------------------------------------------------------- filter


@dataclass(frozen=True)
class RowFilter:
    """k9s-style `/` filter: a regex over the row's cells; a leading `!` negates."""

    text: str = ""

    @property
    def negate(self) -> bool:
        return self.text.startswith("!")

    def compile(self) -> re.Pattern[str] | None:
        body = self.text[1:] if self.negate else self.text
        if not body:
            return None
        try:
            return re.compile(body, re.IGNORECASE)
        except re.error:
            return re.compile(re.escape(body), re.IGNORECASE)  # half-typed regex: literal

    def apply(self, rows: list[Row]) -> list[Row]:
        pattern = self.compile()
        if pattern is None:
            return rows
        hit = [any(pattern.search(c) for c in r.cells) for r in rows]
        return [r for r, h in zip(rows, hit, strict=True) if h != self.negate]


SCREEN_VIEWS = ("matrix", "flows", "tutorial", "dataplane")  # views that are whole screens


def view_names() -> tuple[str, ...]:
    """Every name `:` takes: the table views, then the views that are screens."""
    return (*VIEWS, *SCREEN_VIEWS)


def complete_view(prefix: str) -> list[str]:
    """View names for `:` completion."""
    return [n for n in view_names() if n.startswith(prefix.lower().lstrip(":"))]
