"""Calico IPAM in etcd: the pure block model (calico/ipam.py) behind compare-and-swap loops.

Every change is one etcd transaction that compares the mod_revision of each key it
rewrites (0 = "must not exist yet") and writes them all together, so two plugins racing
for one block never hand out one address twice: the loser re-reads and tries again.

Round trips per operation (the warm path's budget is a few milliseconds):
  auto-assign / IP=   1 read txn (pools + every block + the handle, one revision)
                      + 1 write txn (block [+ affinity when claiming] + handle
                      [+ a `Rider`'s writes: the CNI plugin's endpoint and profile])
  release by handle   1 read txn (handle + blocks) + 1 write txn
Reading every block instead of the node's affinities first saves a round trip; the
block keys are few (a /16 pool in /26 blocks is at most 1024) and small. In a long-lived
process (the node agent) the read is skipped while this process's view is current (see
_Cache): then an ADD or a DEL of a pod this agent added is one write transaction.

Inside one process (the node agent serving many CNI requests at once) allocations are
also serialised by a lock, so the agent's own threads never lose CAS races to each other;
the CAS still guards against other processes (the in-process fallback, other nodes).

IPv4 only: calico/ipam.py models IPv4 blocks; `assign_ipv6` is refused with a clear error.
"""

from __future__ import annotations

import ipaddress
import json
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from calico import ipam, keys
from calico.config import EtcdSettings, resolve_settings
from calico.datastore import Datastore
from calico.errors import Unavailable
from calico.keys import RESOURCE_ROOT

POOL_PREFIX = RESOURCE_ROOT + "ippools/"
MAX_ATTEMPTS = 100  # CAS retries: enough for 50+ processes racing on one fresh block
DATASTORE_TIMEOUT = 2.0  # seconds per etcd call; a dead etcd is reported well within 5 s

_alloc_lock = threading.Lock()


class StoreError(Exception):
    """Base of the refusals callers map to CNI codes."""


class NoPools(StoreError):
    """No enabled IPPool is usable (none exist, or ipv4_pools names unknown pools)."""


class PoolsExhausted(StoreError):
    pass


class AddressUnavailable(StoreError):
    """A requested address is outside every pool or already in use."""


class TooManyConflicts(StoreError):
    """Lost the CAS race MAX_ATTEMPTS times: try again later."""


class Rider(Protocol):
    """Writes that ride in an assignment's transaction (the CNI plugin's endpoint and
    profile: one etcd round trip, one fsync, instead of two in a row).

    `ops(ip)` builds them for the address chosen (called again with the new choice when
    the transaction is retried); they go after the IPAM writes in its success branch, so
    they commit exactly when the address does, and must not depend on a compare of their
    own succeeding (use nested transactions for that). `committed(ip, responses)` gets
    their responses once the transaction succeeded."""

    def ops(self, ip: ipaddress.IPv4Address) -> list[Any]: ...

    def committed(self, ip: ipaddress.IPv4Address, responses: list[Any]) -> None: ...


# ---- datastore connections (one per etcd endpoint list, per process) ---------------------

_datastores: dict[EtcdSettings, Datastore] = {}
_datastores_lock = threading.Lock()


def datastore_for(endpoints: str | EtcdSettings | None) -> Datastore:
    """A shared connection: the agent serves every request over the same gRPC channel
    (one per set of endpoints and TLS files)."""
    key = endpoints if isinstance(endpoints, EtcdSettings) else resolve_settings(endpoints)
    with _datastores_lock:
        ds = _datastores.get(key)
        if ds is None:
            ds = Datastore.connect(key, timeout=DATASTORE_TIMEOUT)
            _datastores[key] = ds
        return ds


def close_datastores() -> None:
    with _datastores_lock:
        for ds in _datastores.values():
            try:
                ds.close()
            except Exception:  # closing a broken channel must not hide anything
                pass
        _datastores.clear()


# ---- reading -----------------------------------------------------------------------------


def _prefix_end(prefix: str) -> bytes:
    from pyetcd.utils import prefix_range_end  # with the etcd client (grpc: ~250 ms)

    return prefix_range_end(prefix.encode())


@dataclass
class State:
    """Pools, blocks and one handle as read at one revision."""

    pools: list[ipam.Pool] = field(default_factory=list)
    pool_revs: dict[str, int] = field(default_factory=dict)  # pool name -> mod_revision
    blocks: dict[ipaddress.IPv4Network, tuple[ipam.Block, int]] = field(default_factory=dict)
    handle: ipam.Handle | None = None
    handle_rev: int = 0


def read_state(ds: Datastore, handle_id: str | None, with_pools: bool = True) -> State:
    """One round trip: every IPv4 pool, every block, and the handle."""
    t = ds.ops
    ops: list[Any] = []
    if with_pools:
        ops.append(t.get(POOL_PREFIX, _prefix_end(POOL_PREFIX)))
    ops.append(t.get(keys.BLOCK_PREFIX, _prefix_end(keys.BLOCK_PREFIX)))
    if handle_id is not None:
        ops.append(t.get(keys.handle_key(handle_id)))
    _, responses = ds.kv_txn([], ops)
    state = State()
    i = 0
    if with_pools:
        for value, meta in responses[0]:
            for pool in pools_from([value]):
                state.pools.append(pool)
                state.pool_revs[pool.name] = meta.mod_revision
        i = 1
    for value, meta in responses[i]:
        block = ipam.Block.from_json(value)
        state.blocks[block.cidr] = (block, meta.mod_revision)
    if handle_id is not None and responses[i + 1]:
        value, meta = responses[i + 1][0]
        state.handle = ipam.Handle.from_json(value)
        state.handle_rev = meta.mod_revision
    return state


def pools_from(values: Iterable[bytes]) -> list[ipam.Pool]:
    """IPv4 pools from stored IPPool resources; unreadable or IPv6 ones are skipped."""
    pools = []
    for raw in values:
        try:
            res = json.loads(raw)
            cidr = ipaddress.ip_network(res["spec"]["cidr"], strict=False)
            if cidr.version != 4:
                continue
            pools.append(ipam.Pool.from_resource(res))
        except (ValueError, KeyError, TypeError):
            continue
    return pools


def list_pools(ds: Datastore) -> list[ipam.Pool]:
    kvs, _ = ds.kv_list(POOL_PREFIX)
    return pools_from(kv.value for kv in kvs)


# ---- this process's view: saves the read round trip on the warm path -----------------------


@dataclass
class _Cache:
    """Pools and blocks as this process last read or wrote them, and the handles it wrote.

    Only a hint: every write still compares the mod_revision of each key it relies on
    (the block, the handle, and the pool the block belongs to), so a stale view costs one
    failed transaction and a fresh read, never a wrong allocation. Errors (no pool, pools
    exhausted, address in use) are only ever reported from a fresh read."""

    state: State | None = None
    handles: dict[str, tuple[ipam.Handle, int]] = field(default_factory=dict)


MAX_CACHED_HANDLES = 10000
_caches: dict[int, _Cache] = {}


def _cache(ds: Datastore) -> _Cache:
    return _caches.setdefault(id(ds), _Cache())


def _cached_state(ds: Datastore, handle_id: str) -> State | None:
    cache = _cache(ds)
    if cache.state is None:
        return None
    handle, rev = cache.handles.get(handle_id, (None, 0))
    return State(
        pools=cache.state.pools,
        pool_revs=cache.state.pool_revs,
        blocks=cache.state.blocks,
        handle=handle,
        handle_rev=rev,
    )


def _fresh_state(ds: Datastore, handle_id: str) -> State:
    state = read_state(ds, handle_id)
    cache = _cache(ds)
    cache.state = State(pools=state.pools, pool_revs=state.pool_revs, blocks=dict(state.blocks))
    if state.handle is not None:
        cache.handles[handle_id] = (state.handle, state.handle_rev)
    else:
        cache.handles.pop(handle_id, None)
    return state


def _written(
    ds: Datastore,
    responses: list[Any],
    blocks: Mapping[ipaddress.IPv4Network, ipam.Block],
    handle_id: str,
    handle: ipam.Handle | None,
) -> None:
    """Record what a successful transaction wrote, at the revision it got."""
    cache = _cache(ds)
    revision = responses[0].response_put.header.revision if responses else 0
    if cache.state is None or not revision:
        return
    for cidr, block in blocks.items():
        cache.state.blocks[cidr] = (block, revision)
    if len(cache.handles) > MAX_CACHED_HANDLES:
        cache.handles.clear()
    if handle is None or handle.is_empty:
        cache.handles.pop(handle_id, None)
    else:
        cache.handles[handle_id] = (handle, revision)


def _forget(ds: Datastore) -> None:
    _cache(ds).state = None


def _pool_compare(ds: Datastore, state: State, cidr: ipaddress.IPv4Network) -> list[Any]:
    # The pool the block lies in must not have changed (disabled, deleted) since read.
    pool = next((p for p in state.pools if cidr.subnet_of(p.cidr)), None)
    if pool is None or pool.name not in state.pool_revs:
        return []
    return [ds.ops.mod(POOL_PREFIX + pool.name) == state.pool_revs[pool.name]]


# ---- writing -----------------------------------------------------------------------------


def _handle_ops(ds: Datastore, state: State, new: ipam.Handle) -> tuple[list[Any], list[Any]]:
    t = ds.ops
    key = keys.handle_key(new.handle_id)
    compare = [t.create(key) == 0] if state.handle is None else [t.mod(key) == state.handle_rev]
    if new.is_empty:
        return compare, [t.delete(key)] if state.handle is not None else []
    return compare, [t.put(key, new.dumps())]


def _backoff(attempt: int) -> None:
    # Jittered and capped: racing processes spread out instead of colliding again.
    time.sleep(random.uniform(0, min(0.05, 0.0005 * (2 ** min(attempt, 10)))))


def auto_assign(
    ds: Datastore,
    node: str,
    handle_id: str,
    wanted_pools: Sequence[str] = (),
    secondary: Mapping[str, str] | None = None,
    rider: Rider | None = None,
) -> ipaddress.IPv4Address:
    """One address for `handle_id`: from this node's blocks, else a newly claimed block,
    else borrowed from another node's block. `rider`'s writes commit with it."""
    with _alloc_lock:
        for attempt in range(MAX_ATTEMPTS):
            cached = _cached_state(ds, handle_id) if attempt == 0 else None
            state = cached or _fresh_state(ds, handle_id)
            try:
                pools = ipam.select_pools(state.pools, wanted_pools)
            except ipam.UnknownPool as exc:
                if cached:
                    continue
                raise NoPools(str(exc)) from None
            if not pools:
                if cached:
                    continue
                raise NoPools(
                    "no enabled IPv4 IPPool exists"
                    if not state.pools
                    else "every IPv4 IPPool is disabled"
                )
            source = ipam.choose_source(node, pools, (b for b, _ in state.blocks.values()))
            if source is None:
                if cached:
                    continue
                names = ", ".join(f"{p.name} ({p.cidr})" for p in pools)
                raise PoolsExhausted(f"no free address left in {names}")
            t = ds.ops
            bkey = keys.block_key(source.cidr)
            if source.kind == "claim":
                block = ipam.Block.new(source.cidr, node)
                compare = [t.create(bkey) == 0]
                akey = keys.affinity_key(node, source.cidr)
                compare.append(t.create(akey) == 0)
                extra = [t.put(akey, ipam.affinity_value())]
            else:
                block, rev = state.blocks[source.cidr]
                compare = [t.mod(bkey) == rev]
                extra = []
            compare += _pool_compare(ds, state, source.cidr)
            try:
                new_block, ips = block.auto_assign(1, handle_id, secondary, node)
            except ipam.AffinityMismatch:
                _forget(ds)
                continue
            if not ips:
                _forget(ds)
                continue  # raced to full between read and choose; read again
            handle = (state.handle or ipam.Handle(handle_id)).increment(source.cidr)
            hcompare, hops = _handle_ops(ds, state, handle)
            ops = [t.put(bkey, new_block.dumps()), *extra, *hops]
            ride = rider.ops(ips[0]) if rider is not None else []
            ok, responses = ds.kv_txn(compare + hcompare, ops + ride, [])
            if ok:
                _written(ds, responses, {source.cidr: new_block}, handle_id, handle)
                if rider is not None:
                    rider.committed(ips[0], list(responses[len(ops) :]))
                return ips[0]
            _forget(ds)
            if not cached:
                _backoff(attempt)  # a real race, not just a stale view
    raise TooManyConflicts(f"lost {MAX_ATTEMPTS} races for an address; try again")


def assign_ip(
    ds: Datastore,
    node: str,
    handle_id: str,
    ip: ipaddress.IPv4Address,
    secondary: Mapping[str, str] | None = None,
    rider: Rider | None = None,
) -> ipaddress.IPv4Address:
    """Exactly `ip` (IP=, args.cni.ips, runtimeConfig.ips): it must lie in a pool (a
    disabled one too, as in Calico) and be free. Its block is claimed for this node if
    nobody has it yet. `rider`'s writes commit with it."""
    with _alloc_lock:
        for attempt in range(MAX_ATTEMPTS):
            cached = _cached_state(ds, handle_id) if attempt == 0 else None
            state = cached or _fresh_state(ds, handle_id)
            pool = ipam.pool_for(state.pools, ip)
            if pool is None:
                if cached:
                    continue
                cidrs = ", ".join(str(p.cidr) for p in state.pools) or "none"
                raise AddressUnavailable(f"{ip} is not in any IPPool (pools: {cidrs})")
            cidr = ipam.block_cidr_for(pool, ip)
            t = ds.ops
            bkey = keys.block_key(cidr)
            extra: list[Any] = []
            if cidr in state.blocks:
                block, rev = state.blocks[cidr]
                compare = [t.mod(bkey) == rev]
            else:
                block = ipam.Block.new(cidr, node)
                akey = keys.affinity_key(node, cidr)
                compare = [t.create(bkey) == 0, t.create(akey) == 0]
                extra = [t.put(akey, ipam.affinity_value())]
            compare += _pool_compare(ds, state, cidr)
            try:
                new_block = block.assign(ip, handle_id, secondary, node)
            except (ipam.AddressInUse, ipam.AffinityMismatch) as exc:
                if cached:
                    continue
                detail = (
                    f"requested address {exc}" if isinstance(exc, ipam.AddressInUse) else str(exc)
                )
                raise AddressUnavailable(detail) from None
            handle = (state.handle or ipam.Handle(handle_id)).increment(cidr)
            hcompare, hops = _handle_ops(ds, state, handle)
            ops = [t.put(bkey, new_block.dumps()), *extra, *hops]
            ride = rider.ops(ip) if rider is not None else []
            ok, responses = ds.kv_txn(compare + hcompare, ops + ride, [])
            if ok:
                _written(ds, responses, {cidr: new_block}, handle_id, handle)
                if rider is not None:
                    rider.committed(ip, list(responses[len(ops) :]))
                return ip
            _forget(ds)
            if not cached:
                _backoff(attempt)
    raise TooManyConflicts(f"lost {MAX_ATTEMPTS} races for {ip}; try again")


def release_by_handle(ds: Datastore, handle_id: str) -> list[ipaddress.IPv4Address]:
    """Free every address the handle holds and delete the handle. Nothing held: [] (DEL
    is repeatable)."""
    with _alloc_lock:
        for attempt in range(MAX_ATTEMPTS):
            # The cached view only helps for handles this process wrote; an unknown
            # handle is always looked up in etcd (another process may have made it).
            cached = None
            if attempt == 0 and handle_id in _cache(ds).handles:
                cached = _cached_state(ds, handle_id)
            state = cached or _fresh_state(ds, handle_id)
            if state.handle is None:
                # No handle, and allocation + handle are always written together, so
                # there is nothing to find in the blocks either.
                return []
            t = ds.ops
            compare: list[Any] = [t.mod(keys.handle_key(handle_id)) == state.handle_rev]
            ops: list[Any] = []
            freed: list[ipaddress.IPv4Address] = []
            new_blocks: dict[ipaddress.IPv4Network, ipam.Block] = {}
            for cidr in state.handle.blocks():
                entry = state.blocks.get(cidr)
                if entry is None:
                    continue  # the block is gone (deleted by hand): nothing to free there
                block, rev = entry
                new_block, ips = block.release_by_handle(handle_id)
                if not ips:
                    continue
                bkey = keys.block_key(cidr)
                compare.append(t.mod(bkey) == rev)
                ops.append(t.put(bkey, new_block.dumps()))
                new_blocks[cidr] = new_block
                freed += ips
            # Block puts first: _written reads the revision from the first response.
            ops.append(t.delete(keys.handle_key(handle_id)))
            ok, responses = ds.kv_txn(compare, ops, [])
            if ok:
                _written(ds, responses if new_blocks else [], new_blocks, handle_id, None)
                if not new_blocks:
                    _cache(ds).handles.pop(handle_id, None)
                return freed
            _forget(ds)
            _cache(ds).handles.pop(handle_id, None)
            if not cached:
                _backoff(attempt)
    raise TooManyConflicts(f"lost {MAX_ATTEMPTS} races releasing {handle_id}; try again")


def release_ips(
    ds: Datastore, ips: Iterable[ipaddress.IPv4Address]
) -> tuple[list[ipaddress.IPv4Address], list[ipaddress.IPv4Address]]:
    """Free specific addresses whoever holds them (calicoctl ipam release), fixing their
    handles' counts. Returns (released, were not allocated)."""
    wanted = list(dict.fromkeys(ips))
    for attempt in range(MAX_ATTEMPTS):
        state = read_state(ds, None, with_pools=False)
        t = ds.ops
        compare: list[Any] = []
        ops: list[Any] = []
        released: list[ipaddress.IPv4Address] = []
        missing: list[ipaddress.IPv4Address] = []
        by_block: dict[ipaddress.IPv4Network, list[ipaddress.IPv4Address]] = {}
        for ip in wanted:
            cidr = next((c for c in state.blocks if ip in c), None)
            if cidr is None:
                missing.append(ip)
            else:
                by_block.setdefault(cidr, []).append(ip)
        handle_changes: dict[str, dict[ipaddress.IPv4Network, int]] = {}
        for cidr, block_ips in by_block.items():
            block, rev = state.blocks[cidr]
            new_block, per_handle, not_alloc = block.release(block_ips)
            missing += not_alloc
            if not per_handle:
                continue
            released += [ip for ip in block_ips if ip not in not_alloc]
            bkey = keys.block_key(cidr)
            compare.append(t.mod(bkey) == rev)
            ops.append(t.put(bkey, new_block.dumps()))
            for hid, count in per_handle.items():
                if hid:
                    handle_changes.setdefault(hid, {})[cidr] = count
        for hid, counts in handle_changes.items():
            kv = ds.kv_get(keys.handle_key(hid))
            if kv is None:
                continue  # a leaked address whose handle is already gone
            handle = ipam.Handle.from_json(kv.value)
            for cidr, count in counts.items():
                handle = handle.decrement(cidr, count)
            hkey = keys.handle_key(hid)
            compare.append(t.mod(hkey) == kv.mod_revision)
            ops.append(t.delete(hkey) if handle.is_empty else t.put(hkey, handle.dumps()))
        if not ops:
            return [], missing
        ok, _ = ds.kv_txn(compare, ops, [])
        if ok:
            return released, missing
        _backoff(attempt)
    raise TooManyConflicts(f"lost {MAX_ATTEMPTS} races releasing addresses; try again")


def handle_ips(ds: Datastore, handle_id: str) -> list[ipaddress.IPv4Address]:
    """The addresses a handle holds now (CHECK)."""
    state = read_state(ds, handle_id, with_pools=False)
    if state.handle is None:
        return []
    out: list[ipaddress.IPv4Address] = []
    for cidr in state.handle.blocks():
        entry = state.blocks.get(cidr)
        if entry:
            out += entry[0].ips_by_handle(handle_id)
    return out


__all__ = [
    "AddressUnavailable",
    "NoPools",
    "PoolsExhausted",
    "Rider",
    "StoreError",
    "TooManyConflicts",
    "Unavailable",
    "assign_ip",
    "auto_assign",
    "datastore_for",
    "handle_ips",
    "list_pools",
    "read_state",
    "release_by_handle",
    "release_ips",
]
