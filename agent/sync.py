"""The agent's view of the cluster: a snapshot of etcd, then every change, without a gap.

Two `PrefixSyncer`s run in threads, one for the Calico resources and one for the IPAM
blocks, and feed one queue. `ClusterCache` folds their updates into typed maps that
`agent.calc.model.Inputs` reads. The cache is "ready" only once both prefixes have delivered their
first complete snapshot: the agent writes nothing to the dataplane before that, since a
partial view (profiles but no endpoints yet, say) would program the wrong isolation.
After a disconnect or a compaction the syncers resume or re-list and emit only the
difference, so the cache converges to etcd again without being rebuilt.

A resource that does not load (fails validation, not JSON) is not silently dropped: it is
kept in `ClusterCache.rejected` with the reason and, for a WorkloadEndpoint, the node,
orchestrator, name and endpoint read from its raw JSON, so the agent can report it (its
health, and an endpoint status key with status "error" on its node).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass, field

from agent.calc.model import Inputs
from calico.datastore import KV, Change, Datastore, PrefixSyncer, Snapshot, SyncStatus
from calico.keys import BLOCK_PREFIX, RESOURCE_ROOT, cidr_from_block_key, plural_of_key
from calico.resources import (
    KINDS_BY_PLURAL,
    GlobalNetworkPolicy,
    NetworkPolicy,
    Node,
    Profile,
    Resource,
    ValidationError,
    WorkloadEndpoint,
)

log = logging.getLogger("calico-agent")

PREFIXES = (RESOURCE_ROOT, BLOCK_PREFIX)


@dataclass(frozen=True)
class Rejected:
    """A resource in etcd the agent cannot program, and what its raw JSON tells of it."""

    key: str
    reason: str
    kind: str  # the key's plural ("workloadendpoints")
    node: str | None = None  # WorkloadEndpoint: spec.node, when the JSON has one
    orchestrator: str = ""
    name: str = ""
    namespace: str = ""
    endpoint: str = ""
    interface: str = ""

    @classmethod
    def of(cls, key: str, reason: str, raw: object) -> Rejected:
        kind = plural_of_key(key) or ""
        data = raw if isinstance(raw, dict) else {}
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        spec = data.get("spec") if isinstance(data.get("spec"), dict) else {}

        def text(d: dict, name: str) -> str:
            value = d.get(name)
            return value if isinstance(value, str) else ""

        node = (text(spec, "node") or None) if kind == "workloadendpoints" else None
        return cls(
            key=key,
            reason=reason,
            kind=kind,
            node=node,
            orchestrator=text(spec, "orchestrator") or "cni",
            # The key's last part is the name as stored, whatever the JSON claims.
            name=key.rstrip("/").rsplit("/", 1)[-1],
            namespace=text(meta, "namespace"),
            endpoint=text(spec, "endpoint") or "eth0",
            interface=text(spec, "interfaceName"),
        )


@dataclass(frozen=True)
class Page:
    """Part of a listing on its way (PrefixSyncer.on_page): decoded ahead, applied only
    with the Snapshot that completes it."""

    kvs: list[KV]


Decoded = tuple[Resource | None, str, object]  # (resource, or None and the reason; raw JSON)


def _decode(kv: KV) -> Decoded:
    raw: object = None
    try:
        raw = kv.json()
        return Resource.from_dict(raw), "", raw
    except (ValidationError, ValueError, TypeError, AttributeError) as exc:
        return None, str(exc) or type(exc).__name__, raw


@dataclass
class ClusterCache:
    """Everything the calculation reads, keyed by etcd key."""

    resources: dict[str, Resource] = field(default_factory=dict)
    blocks: dict[str, str | None] = field(default_factory=dict)  # key -> affine node
    block_cidrs: dict[str, str] = field(default_factory=dict)  # key -> cidr
    snapshots: set[str] = field(default_factory=set)  # prefixes with a first snapshot
    status: dict[str, str] = field(default_factory=dict)  # prefix -> syncer state
    revision: int = 0
    rejected: dict[str, Rejected] = field(default_factory=dict)  # key -> why it did not load
    # key -> (mod_revision, decoded) from a Page, taken by the Snapshot that follows it
    _prepared: dict[str, tuple[int, Decoded]] = field(default_factory=dict, repr=False)

    @property
    def ready(self) -> bool:
        return all(p in self.snapshots for p in PREFIXES)

    @property
    def in_sync(self) -> bool:
        return self.ready and all(self.status.get(p) == "in-sync" for p in PREFIXES)

    # -- updates
    def update(self, prefix: str, item: Snapshot | Page | Change | SyncStatus) -> bool:
        """Fold one syncer update in; True when the calculation's input may have changed."""
        if isinstance(item, SyncStatus):
            self.status[prefix] = item.state
            return False
        if isinstance(item, Page):
            self._prepare(item.kvs)
            return False
        if isinstance(item, Snapshot):
            for key in [k for k in self._keys(prefix) if k not in item.kvs]:
                self._set(key, None)
            for key, kv in item.kvs.items():
                self._set(key, kv)
            if prefix != BLOCK_PREFIX:
                self._prepared.clear()  # what is left: pages of a listing that failed
            self.snapshots.add(prefix)
            self.revision = max(self.revision, item.revision)
            return True
        self.revision = max(self.revision, item.revision)
        return self._set(item.key, item.kv)

    def _keys(self, prefix: str) -> list[str]:
        if prefix == BLOCK_PREFIX:
            return list(self.block_cidrs)
        return list(self.resources) + [k for k in self.rejected if k not in self.resources]

    def _set(self, key: str, kv: KV | None) -> bool:
        if key.startswith(BLOCK_PREFIX):
            return self._set_block(key, kv)
        if plural_of_key(key) not in KINDS_BY_PLURAL:
            return False  # a kind the dataplane does not read
        if kv is None:
            was_rejected = self.rejected.pop(key, None) is not None
            return (self.resources.pop(key, None) is not None) or was_rejected
        prepared = self._prepared.pop(key, None)
        if prepared is not None and prepared[0] == kv.mod_revision:
            res, reason, raw = prepared[1]
        else:
            res, reason, raw = _decode(kv)
        if res is None:
            known = self.rejected.get(key)
            if known is None or known.reason != reason:
                log.warning("cannot program %s: %s", key, reason)
            self.rejected[key] = Rejected.of(key, reason, raw)
            self.resources.pop(key, None)
            return True  # what to report changed, and the resource left the calculation
        self.rejected.pop(key, None)
        res.metadata.resource_version = str(kv.mod_revision)
        self.resources[key] = res
        return True

    def _prepare(self, kvs: list[KV]) -> None:
        """Decode a page of a listing ahead of its Snapshot (the agent does it while etcd
        serves the next page: at 10,000 endpoints the decoding is ~250 ms, the read
        ~110-270 ms, and they overlapped this way instead of adding up)."""
        for kv in kvs:
            if not kv.key.startswith(BLOCK_PREFIX) and plural_of_key(kv.key) in KINDS_BY_PLURAL:
                self._prepared[kv.key] = (kv.mod_revision, _decode(kv))

    def _set_block(self, key: str, kv: KV | None) -> bool:
        if kv is None:
            existed = key in self.block_cidrs
            self.block_cidrs.pop(key, None)
            self.blocks.pop(key, None)
            return existed
        try:
            data = json.loads(kv.value)
            cidr = data.get("cidr") or str(cidr_from_block_key(key))
            affinity = data.get("affinity") or ""
        except (ValueError, AttributeError):
            log.warning("ignoring IPAM block %s: not JSON", key)
            return False
        owner = affinity[len("host:") :] if affinity.startswith("host:") else None
        changed = self.blocks.get(key) != owner or self.block_cidrs.get(key) != cidr
        self.blocks[key], self.block_cidrs[key] = owner, cidr
        return changed

    # -- reading
    def inputs(self, node: str) -> Inputs:
        profiles, policies, endpoints, nodes = {}, [], [], {}
        for res in self.resources.values():
            if isinstance(res, Profile):
                profiles[res.metadata.name] = res
            elif isinstance(res, NetworkPolicy | GlobalNetworkPolicy):
                policies.append(res)
            elif isinstance(res, WorkloadEndpoint):
                endpoints.append(res)
            elif isinstance(res, Node):
                nodes[res.metadata.name] = res
        blocks = {self.block_cidrs[k]: owner for k, owner in self.blocks.items()}
        return Inputs(node, profiles, policies, endpoints, nodes, blocks)


def connect(endpoints: str | None = None, timeout: float = 5.0) -> Datastore:
    """The agent's datastore connection (reads are paged and replies may be large: see
    calico.datastore)."""
    return Datastore.connect(endpoints, timeout=timeout)


class Syncer:
    """The two prefix syncers, in daemon threads, feeding `self.queue`."""

    def __init__(self, datastore: Datastore, retry_interval: float = 0.5):
        self.datastore = datastore
        self.queue: queue.Queue[tuple[str, Snapshot | Page | Change | SyncStatus]] = queue.Queue()
        self.stop = threading.Event()
        self.retry_interval = retry_interval
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for prefix in PREFIXES:
            t = threading.Thread(
                target=self._run, args=(prefix,), name=f"sync {prefix}", daemon=True
            )
            t.start()
            self.threads.append(t)

    def _run(self, prefix: str) -> None:
        def on_page(kvs: list[KV]) -> None:
            self.queue.put((prefix, Page(kvs)))

        syncer = PrefixSyncer(
            self.datastore, prefix, retry_interval=self.retry_interval, on_page=on_page
        )
        while not self.stop.is_set():
            try:
                for item in syncer.updates(self.stop):
                    self.queue.put((prefix, item))
            except Exception as exc:  # never let the sync thread die: report and retry
                log.warning("sync of %s failed: %s; retrying", prefix, exc)
                self.queue.put((prefix, SyncStatus("disconnected", str(exc))))
                self.stop.wait(self.retry_interval)

    def close(self) -> None:
        self.stop.set()
