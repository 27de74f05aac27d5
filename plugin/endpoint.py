"""The pod's WorkloadEndpoint and its network's Profile in etcd, as Calico's CNI plugin
writes them for a non-Kubernetes orchestrator.

Naming: `<node>-cni-<containerID>-<ifname>` with every `-` inside a part doubled, so the
parts can be told apart again (`my-node` + `ab-c` -> `my--node-cni-ab--c-eth0`): Calico's
escaping, used whenever the result is a valid resource name (a lower-case DNS subdomain
of at most 253 characters). The CNI spec allows more in a container ID (upper case, `_`,
any length), so otherwise the name is `<node>-cni-<sanitized ID>-<hash>-<ifname>`: each
part lower-cased with every other character as `-` (then escaped), the ID cut to fit, and
16 hex digits of sha1 over the original (node, ID, interface), so `AbC` and `abc` differ
and the name is the same on every call. The hash sits after a single `-`, which escaping
never produces inside a part, so such a name can never equal an escaped one.

One endpoint per (container, interface): Calico's name includes the interface, so a pod
joining two calico networks as eth0 and eth1 has two endpoints, each with its network's
profile. Two networks land on the same endpoint only when an ADD comes for an endpoint
that already exists (same node, container and ifname): that ADD for an endpoint that already exists (same node, container and ifname)
appends its profile and addresses to it instead of replacing it, and DEL takes off only
its own network's profile and addresses, deleting the endpoint with the last one.

Round trips: ADD is one transaction (create-if-absent of the profile, and create of the
endpoint, as two nested transactions), plus a read-modify-CAS only in the append case;
with calico-ipam those two nested transactions ride in the address's own transaction
(`Rider`), so an ADD records address, endpoint and profile in one round trip;
DEL of an endpoint this process wrote is one conditional delete.
The profile is never overwritten (an operator may have edited it) and never deleted.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from calico.datastore import Datastore
from calico.keys import resource_key
from calico.resources import (
    EntityRule,
    Metadata,
    Profile,
    ProfileSpec,
    Rule,
    WorkloadEndpoint,
    WorkloadEndpointSpec,
)
from plugin import phases

ORCHESTRATOR = "cni"
NAMESPACE = "default"
LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
MAX_ATTEMPTS = 20
MAX_CACHED = 10000
MAX_NAME = 253  # a DNS subdomain, as calico/resources.py validates names
NAME_HASH_LEN = 16
_VALID_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # calico/resources.py's
_INVALID_CHARS_RE = re.compile(r"[^a-z0-9.-]")

# Endpoints this process created whole (one profile): key -> mod_revision. DEL of such an
# endpoint is one conditional delete instead of a read and a CAS; if anyone changed it
# since, the condition fails and the careful path runs.
_written: dict[str, int] = {}
_written_lock = threading.Lock()


class EndpointConflict(Exception):
    """The endpoint kept changing under us."""


def escape(part: str) -> str:
    return part.replace("-", "--")


def _sanitize(part: str) -> str:
    return escape(_INVALID_CHARS_RE.sub("-", part.lower()))


def name_prefix(node: str) -> str:
    """What every endpoint name of `node` starts with (both forms: a valid node name is
    its own sanitized form)."""
    return f"{_sanitize(node).lstrip('-.') or 'node'}-{ORCHESTRATOR}-"


def endpoint_name(node: str, container_id: str, ifname: str) -> str:
    """The WorkloadEndpoint name of (node, container, interface): valid, unique, stable
    for any ID the CNI spec allows (see the module docstring)."""
    name = "-".join([escape(node), ORCHESTRATOR, escape(container_id), escape(ifname)])
    if len(name) <= MAX_NAME and _VALID_NAME_RE.match(name):
        return name
    identity = "\0".join([node, container_id, ifname]).encode()
    digest = hashlib.sha1(identity).hexdigest()[:NAME_HASH_LEN]
    head = name_prefix(node)
    tail = f"-{digest}-{_sanitize(ifname)}".rstrip("-.")
    room = MAX_NAME - len(head) - len(tail)
    # Cut, then drop what a cut may leave at the end: a lone `-` of a doubled one would
    # let the hash's separator read as an escaped `-`.
    cid = _sanitize(container_id)[: max(room, 0)].rstrip("-.")
    return (head + cid + tail)[:MAX_NAME].rstrip("-.")


def endpoint_key(node: str, container_id: str, ifname: str) -> str:
    return resource_key(WorkloadEndpoint, endpoint_name(node, container_id, ifname), NAMESPACE)


def network_profile(network: str) -> Profile:
    """The seed profile: members talk to each other, anything may leave."""
    return Profile(
        metadata=Metadata(name=network),
        spec=ProfileSpec(
            ingress=[Rule(action="Allow", source=EntityRule(selector=f"has({network})"))],
            egress=[Rule(action="Allow")],
            labels_to_apply={network: ""},
        ),
    )


@dataclass
class EndpointInfo:
    node: str
    container_id: str
    ifname: str
    host_ifname: str
    mac: str
    ip_networks: list[str]
    network: str
    pod: str = ""  # K8S_POD_NAME when the runtime gives it
    annotations: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_endpoint(info: EndpointInfo) -> WorkloadEndpoint:
    return WorkloadEndpoint(
        metadata=Metadata(
            name=endpoint_name(info.node, info.container_id, info.ifname),
            namespace=NAMESPACE,
            labels={LABEL_NAMESPACE: NAMESPACE, LABEL_ORCHESTRATOR: ORCHESTRATOR},
            annotations=dict(info.annotations),
            uid=str(uuid.uuid4()),
            creation_timestamp=_now(),
        ),
        spec=WorkloadEndpointSpec(
            orchestrator=ORCHESTRATOR,
            node=info.node,
            container_id=info.container_id,
            pod=info.pod,
            endpoint=info.ifname,
            interface_name=info.host_ifname,
            mac=info.mac,
            ip_networks=list(info.ip_networks),
            profiles=[info.network],
        ),
    )


def _encode(data: Mapping[str, Any]) -> bytes:
    out = dict(data)
    out["metadata"] = {k: v for k, v in data["metadata"].items() if k != "resourceVersion"}
    return json.dumps(out, separators=(",", ":"), sort_keys=True).encode()


def merge(existing: Mapping[str, Any], info: EndpointInfo) -> dict[str, Any]:
    """The stored endpoint with this network's profile and addresses added (pure)."""
    data = json.loads(json.dumps(existing))
    spec = data.setdefault("spec", {})
    profiles = list(spec.get("profiles") or [])
    if info.network not in profiles:
        profiles.append(info.network)
    nets = list(spec.get("ipNetworks") or [])
    nets += [n for n in info.ip_networks if n not in nets]
    spec.update(
        profiles=profiles,
        ipNetworks=nets,
        mac=info.mac,
        interfaceName=info.host_ifname,
        containerID=info.container_id,
    )
    return data


def unmerge(existing: Mapping[str, Any], network: str, ips: Sequence[str]) -> dict[str, Any] | None:
    """The endpoint without this network's profile and addresses; None when nothing would
    be left (delete it)."""
    data = json.loads(json.dumps(existing))
    spec = data.setdefault("spec", {})
    profiles = [p for p in spec.get("profiles") or [] if p != network]
    if not profiles:
        return None
    drop = set(ips)
    spec["profiles"] = profiles
    spec["ipNetworks"] = [n for n in spec.get("ipNetworks") or [] if n.split("/")[0] not in drop]
    return data


def write_ops(ds: Datastore, info: EndpointInfo) -> list[Any]:
    """The writes of `write`'s common path, as two nested transactions that may ride in
    another one (calico/ipam_store.Rider): the profile if absent, the endpoint if
    absent (else read back, for the append)."""
    t = ds.ops
    profile = network_profile(info.network)
    profile.metadata.uid = str(uuid.uuid4())
    profile.metadata.creation_timestamp = _now()
    pkey = resource_key(Profile, info.network)
    wep = build_endpoint(info)
    wkey = endpoint_key(info.node, info.container_id, info.ifname)
    return [
        t.txn([t.create(pkey) == 0], [t.put(pkey, _encode(profile.to_dict()))], []),
        t.txn([t.create(wkey) == 0], [t.put(wkey, _encode(wep.to_dict()))], [t.get(wkey)]),
    ]


def created(info: EndpointInfo, responses: Sequence[Any]) -> bool:
    """Whether `write_ops`' transaction (its two responses) created the endpoint; if so,
    remember its revision so DEL is one conditional delete."""
    wep_txn = responses[1].response_txn
    if not wep_txn.succeeded:
        return False
    wkey = endpoint_key(info.node, info.container_id, info.ifname)
    with _written_lock:
        if len(_written) > MAX_CACHED:
            _written.clear()
        _written[wkey] = wep_txn.responses[0].response_put.header.revision
    return True


def write(ds: Datastore, info: EndpointInfo) -> None:
    """Create the profile if absent and the endpoint (or append to it), in one round trip
    on the common path."""
    _ok, responses = ds.kv_txn([], write_ops(ds, info))
    if not created(info, responses):
        append(ds, info)


def append(ds: Datastore, info: EndpointInfo) -> None:
    """The endpoint exists: add this network to it (see the module docstring)."""
    wkey = endpoint_key(info.node, info.container_id, info.ifname)
    for _ in range(MAX_ATTEMPTS):
        kv = ds.kv_get(wkey)
        if kv is None:
            if ds.kv_create(wkey, _encode(build_endpoint(info).to_dict())):
                return
            continue
        if ds.kv_cas(wkey, _encode(merge(kv.json(), info)), kv.mod_revision):
            return
    raise EndpointConflict(f"endpoint {wkey} kept changing while being written")


@dataclass
class Rider:
    """The endpoint and profile of one ADD riding in its address's IPAM transaction
    (calico/ipam_store.Rider): the pod is recorded in the same etcd round trip (one
    fsync) that takes its address, and exactly when it does. `info.ip_networks` is
    filled in with the address chosen. After the commit, `state` says what is left:
    "created" (nothing), "exists" (another network's endpoint of this interface: `finish`
    appends to it)."""

    ds: Datastore
    info: EndpointInfo
    state: str = ""  # "" = not committed (yet): `finish` writes it the usual way
    _sent: float = 0.0

    def ops(self, ip: Any) -> list[Any]:
        self.info.ip_networks = [f"{ip}/32"]
        ops = write_ops(self.ds, self.info)
        self._sent = time.perf_counter()  # the transaction goes out next
        return ops

    @property
    def sent(self) -> bool:
        """The transaction went out (its outcome may be unknown if no answer came)."""
        return self._sent > 0

    def committed(self, ip: Any, responses: list[Any]) -> None:
        phases.mark("ipam.txn", self._sent)  # the etcd round trip, fsync included
        self.state = "created" if created(self.info, responses) else "exists"

    def finish(self) -> None:
        """Whatever the transaction left undone (see `state`)."""
        if self.state == "exists":
            append(self.ds, self.info)
        elif self.state != "created":
            write(self.ds, self.info)
        self.state = "created"


def remove(
    ds: Datastore, node: str, container_id: str, ifname: str, network: str, ips: Sequence[str]
) -> bool:
    """Take this network off the endpoint (deleting it with its last network). False if
    there was no endpoint (DEL is repeatable)."""
    wkey = endpoint_key(node, container_id, ifname)
    with _written_lock:
        rev = _written.pop(wkey, None)
    if rev is not None and ds.kv_delete(wkey, rev):
        return True
    for _ in range(MAX_ATTEMPTS):
        kv = ds.kv_get(wkey)
        if kv is None:
            return False
        data = kv.json()
        profiles = (data.get("spec") or {}).get("profiles") or []
        if profiles and network not in profiles:
            return False  # another network's endpoint: not ours to touch
        remaining = unmerge(data, network, ips)
        if remaining is None:
            if ds.kv_delete(wkey, kv.mod_revision):
                return True
        elif ds.kv_cas(wkey, _encode(remaining), kv.mod_revision):
            return True
    raise EndpointConflict(f"endpoint {wkey} kept changing while being removed")


def read(ds: Datastore, node: str, container_id: str, ifname: str) -> dict[str, Any] | None:
    kv = ds.kv_get(endpoint_key(node, container_id, ifname))
    return kv.json() if kv else None
