"""What-if against etcd: read what decides flows, and commit a staging in one transaction.

The commit is a single etcd transaction that compares every written key's mod_revision
with the one it was staged from (absent keys: must still be absent) and only then puts
and deletes them all. So a staging is written whole or not at all: if anyone changed one
of its resources since it was staged, nothing is written and the caller gets `Conflict`
naming what moved. Every resource is validated again before anything is sent.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from calico.datastore import Datastore
from calico.errors import Conflict
from calico.resources import Resource
from calico.whatif import POLICY_KINDS, Staged, StageError


def read_policy_resources(ds: Datastore) -> list[Resource]:
    """Profiles, policies and endpoints, each with its resourceVersion (the CAS base)."""
    return [res for kind in POLICY_KINDS for res in ds.list(kind)]


def commit(ds: Datastore, staged: Staged) -> list[str]:
    """Write the staging atomically; returns what was done, one line per key.

    Raises StageError (invalid resource, nothing sent) or Conflict (a resource changed
    since it was staged, nothing written)."""
    if not staged.writes:
        raise StageError("nothing staged")
    t = ds.ops
    compare = []
    ops = []
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for write in staged.writes.values():
        compare.append(
            t.create(write.key) == 0 if write.base == 0 else t.mod(write.key) == write.base
        )
        if write.after is None:
            ops.append(t.delete(write.key))
            continue
        res: Resource = write.after
        try:
            res.validate()
        except ValueError as exc:
            raise StageError(f"{res.ident}: {exc}") from None
        if not res.metadata.uid:
            res.metadata.uid = str(uuid.uuid4())
        if not res.metadata.creation_timestamp:
            res.metadata.creation_timestamp = stamp
        ops.append(t.put(write.key, Datastore._encode(res)))
    ok, _ = ds.kv_txn(compare, ops)
    if not ok:
        moved = []
        for write in staged.writes.values():
            kv = ds.kv_get(write.key)
            now = kv.mod_revision if kv is not None else 0
            if now != write.base:
                was = "absent" if write.base == 0 else f"at revision {write.base}"
                is_ = "is gone" if kv is None else f"is now at revision {now}"
                moved.append(f"{write.ident} was {was} when staged and {is_}")
        raise Conflict(
            "nothing written: changed since it was staged: " + ("; ".join(moved) or "unknown")
        )
    return [f"{w.verb}d {w.ident}" for w in staged.writes.values()]
