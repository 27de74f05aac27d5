"""Calico's IPAM data model, as pure functions over the values stored in etcd.

Calico hands out pod addresses from IPPools cut into fixed-size blocks (a /26 by default).
A node claims a block (block affinity) and assigns from it, so each node routes one
prefix per block instead of one route per pod; when every block it could claim is taken it
borrows a free address from another node's block. Three kinds of keys record this, with
the values Calico itself writes, so `etcdctl get --prefix /calico/ipam` reads the same as
on a Calico cluster:

  /calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26   the block (cidr, affinity, allocations,
                                                      unallocated, attributes, ...)
  /calico/ipam/v2/host/<node>/ipv4/block/10.0.0.0-26  the node's affinity to that block
  /calico/ipam/v2/handle/<handle id>                  addresses per block held by one owner

Nothing here does I/O. Every operation takes the decoded value and returns a new one; the
caller writes it back with a compare-and-swap on the key's mod_revision and retries from a
fresh read when it lost a race, which is how two plugins on one node never hand out the
same address.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network

DEFAULT_BLOCK_SIZE = 26  # Calico's default IPv4 blockSize
AFFINITY_CONFIRMED = "confirmed"


class IPAMError(Exception):
    """Base of the model's refusals; the plugin maps them to CNI error codes."""


class AddressInUse(IPAMError):
    pass


class AddressNotInBlock(IPAMError):
    pass


class BlockFull(IPAMError):
    pass


class AffinityMismatch(IPAMError):
    """A strict-affinity block refuses addresses to nodes other than its owner."""


class UnknownPool(IPAMError):
    pass


def affinity_value(state: str = AFFINITY_CONFIRMED) -> bytes:
    return json.dumps({"state": state, "deleted": False}).encode()


def make_handle_id(network: str, container_id: str) -> str:
    """The plugin's handle for one attachment; DEL finds the addresses again by it."""
    return f"{network}.{container_id}"


def host_affinity(node: str) -> str:
    return f"host:{node}"


# ---- pools -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """The IPAM-relevant part of an IPPool resource."""

    name: str
    cidr: IPv4Network
    block_size: int = DEFAULT_BLOCK_SIZE
    disabled: bool = False

    def __post_init__(self) -> None:
        # A block cannot be larger than its pool; Calico rejects such pools too.
        if not self.cidr.prefixlen <= self.block_size <= 32:
            raise ValueError(
                f"pool {self.name}: blockSize {self.block_size} must be between "
                f"{self.cidr.prefixlen} and 32"
            )

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> Pool:
        spec = resource.get("spec") or {}
        return cls(
            name=str((resource.get("metadata") or {}).get("name", "")),
            cidr=IPv4Network(spec["cidr"], strict=False),
            block_size=int(spec.get("blockSize") or DEFAULT_BLOCK_SIZE),
            disabled=bool(spec.get("disabled", False)),
        )

    def blocks(self) -> Iterator[IPv4Network]:
        return self.cidr.subnets(new_prefix=self.block_size)

    @property
    def block_count(self) -> int:
        return 1 << (self.block_size - self.cidr.prefixlen)


def select_pools(pools: Iterable[Pool], wanted: Sequence[str] = ()) -> list[Pool]:
    """The pools automatic assignment may use: enabled ones, restricted to `wanted` (the
    config's ipv4_pools, by name or CIDR as Calico accepts) when given, in that order."""
    enabled = [p for p in pools if not p.disabled]
    if not wanted:
        return sorted(enabled, key=lambda p: (p.cidr.network_address, p.cidr.prefixlen))
    chosen = []
    for ref in wanted:
        match = next((p for p in enabled if ref in (p.name, str(p.cidr))), None)
        if match is None:
            raise UnknownPool(f"ipv4_pools entry {ref!r} is not an enabled IPPool")
        if match not in chosen:
            chosen.append(match)
    return chosen


def pool_for(pools: Iterable[Pool], ip: IPv4Address) -> Pool | None:
    """The pool `ip` lies in (the most specific if pools overlap), disabled ones included:
    a specific request may come from a disabled pool, as in Calico."""
    matches = [p for p in pools if ip in p.cidr]
    return max(matches, key=lambda p: p.cidr.prefixlen) if matches else None


def block_cidr_for(pool: Pool, ip: IPv4Address) -> IPv4Network:
    return IPv4Network(f"{ip}/{pool.block_size}", strict=False)


def next_free_block(pools: Iterable[Pool], taken: Collection[IPv4Network]) -> IPv4Network | None:
    """The first block of the first pool that no one has created yet, or None when the
    pools are fully carved up (then the caller borrows)."""
    taken_set = set(taken)
    for pool in pools:
        for cidr in pool.blocks():
            if cidr not in taken_set:
                return cidr
    return None


# ---- blocks ------------------------------------------------------------------------------

_BLOCK_FIELDS = {
    "cidr",
    "affinity",
    "strictAffinity",
    "allocations",
    "unallocated",
    "attributes",
    "deleted",
    "sequenceNumber",
    "sequenceNumberForAllocation",
}


@dataclass(frozen=True)
class Attribute:
    handle_id: str | None
    secondary: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "handle_id": self.handle_id,
            "secondary": dict(self.secondary) if self.secondary is not None else None,
        }


@dataclass(frozen=True)
class Block:
    """One allocation block. `allocations[i]` is the attribute index of the address at
    ordinal i (None = free); `unallocated` lists free ordinals in the order they will be
    handed out (freed ones go to the back, so an address is not reused at once)."""

    cidr: IPv4Network
    affinity: str | None = None
    strict_affinity: bool = False
    allocations: tuple[int | None, ...] = ()
    unallocated: tuple[int, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    deleted: bool = False
    sequence_number: int = 0
    seq_for_allocation: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # fields a newer Calico added

    # -- construction / serialisation --

    @classmethod
    def new(cls, cidr: IPv4Network, node: str | None = None, strict: bool = False) -> Block:
        size = cidr.num_addresses
        return cls(
            cidr=cidr,
            affinity=host_affinity(node) if node else None,
            strict_affinity=strict,
            allocations=(None,) * size,
            unallocated=tuple(range(size)),
        )

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any]) -> Block:
        data = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
        cidr = IPv4Network(data["cidr"])
        allocations = tuple(data.get("allocations") or (None,) * cidr.num_addresses)
        if len(allocations) != cidr.num_addresses:
            raise ValueError(f"block {cidr}: {len(allocations)} allocations, expected size")
        attrs = tuple(
            Attribute(a.get("handle_id"), a.get("secondary")) for a in data.get("attributes") or ()
        )
        return cls(
            cidr=cidr,
            affinity=data.get("affinity"),
            strict_affinity=bool(data.get("strictAffinity", False)),
            allocations=allocations,
            unallocated=tuple(data.get("unallocated") or ()),
            attributes=attrs,
            deleted=bool(data.get("deleted", False)),
            sequence_number=int(data.get("sequenceNumber") or 0),
            seq_for_allocation=dict(data.get("sequenceNumberForAllocation") or {}),
            extra={k: v for k, v in data.items() if k not in _BLOCK_FIELDS},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            {
                "cidr": str(self.cidr),
                "affinity": self.affinity,
                "allocations": list(self.allocations),
                "unallocated": list(self.unallocated),
                "attributes": [a.to_json() for a in self.attributes],
                "deleted": self.deleted,
                "sequenceNumber": self.sequence_number,
                "sequenceNumberForAllocation": dict(self.seq_for_allocation),
                "strictAffinity": self.strict_affinity,
            }
        )
        return out

    def dumps(self) -> bytes:
        return json.dumps(self.to_json()).encode()

    # -- queries --

    @property
    def size(self) -> int:
        return self.cidr.num_addresses

    @property
    def free_count(self) -> int:
        return len(self.unallocated)

    @property
    def used_count(self) -> int:
        return sum(1 for a in self.allocations if a is not None)

    @property
    def is_empty(self) -> bool:
        return self.used_count == 0

    @property
    def node(self) -> str | None:
        """The node this block is affine to, if any."""
        if self.affinity and self.affinity.startswith("host:"):
            return self.affinity[len("host:") :]
        return None

    def ip_at(self, ordinal: int) -> IPv4Address:
        return self.cidr.network_address + ordinal

    def ordinal_of(self, ip: IPv4Address) -> int:
        if ip not in self.cidr:
            raise AddressNotInBlock(f"{ip} is not in block {self.cidr}")
        return int(ip) - int(self.cidr.network_address)

    def handle_of(self, ip: IPv4Address) -> str | None:
        idx = self.allocations[self.ordinal_of(ip)]
        return None if idx is None else self.attributes[idx].handle_id

    def allocated(self) -> dict[IPv4Address, str | None]:
        """Every used address and the handle that holds it."""
        return {
            self.ip_at(o): self.attributes[idx].handle_id
            for o, idx in enumerate(self.allocations)
            if idx is not None
        }

    def ips_by_handle(self, handle_id: str) -> list[IPv4Address]:
        indexes = {i for i, a in enumerate(self.attributes) if a.handle_id == handle_id}
        return [self.ip_at(o) for o, idx in enumerate(self.allocations) if idx in indexes]

    # -- mutations: each returns a new Block --

    def _check_affinity(self, node: str | None) -> None:
        if node is not None and self.strict_affinity and self.affinity != host_affinity(node):
            raise AffinityMismatch(
                f"block {self.cidr} has strict affinity {self.affinity!r}; {node} may not use it"
            )

    def _attribute_index(
        self, handle_id: str, secondary: Mapping[str, str] | None
    ) -> tuple[int, tuple[Attribute, ...]]:
        # One attribute entry is shared by all addresses with the same owner and metadata,
        # as Calico does: a handle with 2 IPs in a block is one attribute, 2 allocations.
        wanted = Attribute(handle_id, dict(secondary) if secondary is not None else None)
        for i, attr in enumerate(self.attributes):
            if attr == wanted:
                return i, self.attributes
        return len(self.attributes), (*self.attributes, wanted)

    def auto_assign(
        self,
        count: int,
        handle_id: str,
        secondary: Mapping[str, str] | None = None,
        node: str | None = None,
    ) -> tuple[Block, list[IPv4Address]]:
        """Take up to `count` free addresses, in `unallocated` order. Returns fewer (maybe
        none) when the block has fewer free; the caller moves on to another block."""
        self._check_affinity(node)
        take = self.unallocated[: max(count, 0)]
        if not take:
            return self, []
        index, attributes = self._attribute_index(handle_id, secondary)
        allocations = list(self.allocations)
        seqs = dict(self.seq_for_allocation)
        for o in take:
            allocations[o] = index
            seqs[str(o)] = self.sequence_number
        new = replace(
            self,
            allocations=tuple(allocations),
            unallocated=self.unallocated[len(take) :],
            attributes=attributes,
            sequence_number=self.sequence_number + 1,
            seq_for_allocation=seqs,
        )
        return new, [self.ip_at(o) for o in take]

    def assign(
        self,
        ip: IPv4Address,
        handle_id: str,
        secondary: Mapping[str, str] | None = None,
        node: str | None = None,
    ) -> Block:
        """Assign one specific address (a `IP=` / `ips` request)."""
        ordinal = self.ordinal_of(ip)
        self._check_affinity(node)
        if self.allocations[ordinal] is not None:
            owner = self.attributes[self.allocations[ordinal]].handle_id  # type: ignore[index]
            raise AddressInUse(f"{ip} is already assigned (handle {owner})")
        index, attributes = self._attribute_index(handle_id, secondary)
        allocations = list(self.allocations)
        allocations[ordinal] = index
        seqs = dict(self.seq_for_allocation)
        seqs[str(ordinal)] = self.sequence_number
        return replace(
            self,
            allocations=tuple(allocations),
            unallocated=tuple(o for o in self.unallocated if o != ordinal),
            attributes=attributes,
            sequence_number=self.sequence_number + 1,
            seq_for_allocation=seqs,
        )

    def release(
        self, ips: Iterable[IPv4Address]
    ) -> tuple[Block, dict[str | None, int], list[IPv4Address]]:
        """Free `ips`. Returns (new block, freed count per handle, the ones that were not
        allocated). Releasing a free address is not an error: DEL must be repeatable."""
        allocations = list(self.allocations)
        unallocated = list(self.unallocated)
        seqs = dict(self.seq_for_allocation)
        per_handle: dict[str | None, int] = {}
        not_allocated: list[IPv4Address] = []
        for ip in ips:
            ordinal = self.ordinal_of(ip)
            idx = allocations[ordinal]
            if idx is None:
                not_allocated.append(ip)
                continue
            handle = self.attributes[idx].handle_id
            per_handle[handle] = per_handle.get(handle, 0) + 1
            allocations[ordinal] = None
            unallocated.append(ordinal)
            seqs.pop(str(ordinal), None)
        if not per_handle:
            return self, {}, not_allocated
        allocations, attributes = _compact_attributes(allocations, self.attributes)
        new = replace(
            self,
            allocations=tuple(allocations),
            unallocated=tuple(unallocated),
            attributes=attributes,
            sequence_number=self.sequence_number + 1,
            seq_for_allocation=seqs,
        )
        return new, per_handle, not_allocated

    def release_by_handle(self, handle_id: str) -> tuple[Block, list[IPv4Address]]:
        ips = self.ips_by_handle(handle_id)
        if not ips:
            return self, []
        new, _, _ = self.release(ips)
        return new, ips

    def with_affinity(self, node: str | None) -> Block:
        """Claim (or with None, drop) the block's affinity, e.g. when a node releases an
        empty block so another node may claim it."""
        return replace(
            self,
            affinity=host_affinity(node) if node else None,
            sequence_number=self.sequence_number + 1,
        )


def _compact_attributes(
    allocations: list[int | None], attributes: Sequence[Attribute]
) -> tuple[list[int | None], tuple[Attribute, ...]]:
    # Drop attributes no allocation refers to any more and renumber the rest, so the block
    # does not grow with every pod that ever lived on it.
    used = sorted({i for i in allocations if i is not None})
    remap = {old: new for new, old in enumerate(used)}
    return (
        [None if i is None else remap[i] for i in allocations],
        tuple(attributes[old] for old in used),
    )


# ---- handles -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Handle:
    """How many addresses one owner (`<network>.<containerID>`) holds in each block: DEL
    reads it to know which blocks to visit instead of scanning all of them."""

    handle_id: str
    block: Mapping[str, int] = field(default_factory=dict)
    deleted: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any]) -> Handle:
        data = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
        return cls(
            handle_id=str(data["handleID"]),
            block={str(k): int(v) for k, v in (data.get("block") or {}).items()},
            deleted=bool(data.get("deleted", False)),
            extra={k: v for k, v in data.items() if k not in ("handleID", "block", "deleted")},
        )

    def to_json(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({"handleID": self.handle_id, "block": dict(self.block), "deleted": self.deleted})
        return out

    def dumps(self) -> bytes:
        return json.dumps(self.to_json()).encode()

    @property
    def total(self) -> int:
        return sum(self.block.values())

    @property
    def is_empty(self) -> bool:
        return self.total == 0

    def blocks(self) -> list[IPv4Network]:
        return [IPv4Network(c) for c in self.block]

    def increment(self, cidr: IPv4Network | str, count: int = 1) -> Handle:
        blocks = dict(self.block)
        blocks[str(cidr)] = blocks.get(str(cidr), 0) + count
        return replace(self, block=blocks)

    def decrement(self, cidr: IPv4Network | str, count: int = 1) -> Handle:
        """Never below zero, and a block at zero is dropped, so an emptied handle can be
        deleted outright."""
        blocks = dict(self.block)
        left = blocks.get(str(cidr), 0) - count
        if left > 0:
            blocks[str(cidr)] = left
        else:
            blocks.pop(str(cidr), None)
        return replace(self, block=blocks)


# ---- choosing where an automatic assignment comes from -----------------------------------


@dataclass(frozen=True)
class Source:
    """Where the next address should come from.

    kind: "affine" - a block this node already owns has room;
          "claim"  - no owned block has room: create `cidr` with this node's affinity;
          "borrow" - every block is taken: use a free address in someone else's block.
    """

    kind: str
    cidr: IPv4Network


def choose_source(
    node: str,
    pools: Sequence[Pool],
    blocks: Iterable[Block],
) -> Source | None:
    """Decide where automatic assignment goes next, from the current blocks of the given
    (already selected) pools. None means every usable pool is full."""
    in_pools = [b for b in blocks if not b.deleted and any(b.cidr.subnet_of(p.cidr) for p in pools)]
    mine = sorted((b for b in in_pools if b.node == node and b.free_count), key=lambda b: b.cidr)
    if mine:
        return Source("affine", mine[0].cidr)
    free = next_free_block(pools, [b.cidr for b in in_pools])
    if free is not None:
        return Source("claim", free)
    # Borrowing is what keeps a small pool usable on many nodes; strict-affinity blocks
    # opt out of it. Prefer the emptiest block, so borrowing spreads rather than piles up.
    lendable = [b for b in in_pools if b.free_count and not b.strict_affinity and b.node != node]
    if lendable:
        best = max(lendable, key=lambda b: (b.free_count, -int(b.cidr.network_address)))
        return Source("borrow", best.cidr)
    return None
