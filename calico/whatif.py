"""What-if: the verdicts of every endpoint pair now and after a staged set of changes.

A change is staged, not written: apply (create or replace) or delete a profile or policy,
edit the labels of an endpoint or a profile, or a JSON merge patch. `stage()` plays the
changes over a copy of the current resources and says exactly which keys would be written,
each with the revision it was read at (so the write is a compare-and-swap: someone else's
change in between makes the commit a conflict, and nothing is written). `what_if()` then
evaluates every ordered pair of endpoints before and after with the one policy evaluator
(`calico.policy.evaluate`, the same truth the agent renders and the console's matrix and
why? show) and lists the pairs whose verdict flips.

Choices:
- A profile's labels here are its `spec.labelsToApply`: those are the labels its endpoints
  inherit and the only profile labels a selector can see (`calico.policy.effective_labels`);
  a profile's own `metadata.labels` select nothing in Calico v3.
- Two endpoints of one pod (same node and container ID) are not a pair: their traffic
  stays in the pod's network namespace and never meets a policy (the console's matrix
  shows such cells as allowed, console/matrix.py SAME_POD).
- An endpoint that exists on one side only (a staged apply of a new WorkloadEndpoint)
  has pairs on that side only; they are reported as appearing, never as flips.
- Removing a label that is not there, setting one that is there with another value without
  `overwrite`, deleting or labelling what does not exist: each is a `StageError` that names
  it, as calicoctl refuses them (no silent no-op).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from calico.keys import key_of, resource_key
from calico.policy import Flow, PolicySet, Verdict, evaluate
from calico.resources import (
    GlobalNetworkPolicy,
    NetworkPolicy,
    Profile,
    Resource,
    ValidationError,
    WorkloadEndpoint,
    kind_class,
    load,
)

POLICY_KINDS: tuple[type[Resource], ...] = (
    Profile,
    GlobalNetworkPolicy,
    NetworkPolicy,
    WorkloadEndpoint,
)
LABEL_KINDS = ("WorkloadEndpoint", "Profile")

__all__ = [
    "LABEL_KINDS",
    "POLICY_KINDS",
    "Apply",
    "Delete",
    "Label",
    "Pair",
    "Patch",
    "StageError",
    "Staged",
    "WhatIf",
    "Write",
    "label_edit",
    "merge_patch",
    "parse_label_args",
    "stage",
    "what_if",
]


class StageError(ValueError):
    """A staged change that cannot be made: says which and why."""


# ---------------------------------------------------------------- changes


@dataclass(frozen=True)
class Apply:
    """Create `resource`, or replace the stored one. A resourceVersion on it is the
    version it was read at: the commit then fails if the stored one moved on since."""

    resource: Resource

    def describe(self) -> str:
        return f"apply {self.resource.ident}"


@dataclass(frozen=True)
class Delete:
    kind: str
    name: str
    namespace: str | None = None

    def describe(self) -> str:
        return f"delete {_ident(self.kind, self.name, self.namespace)}"


@dataclass(frozen=True)
class Label:
    """Set and remove labels of a WorkloadEndpoint (metadata.labels) or a Profile
    (spec.labelsToApply, see the module docstring)."""

    kind: str
    name: str
    namespace: str | None = None
    set: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    overwrite: bool = False

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.set.items())]
        parts += [f"-{k}" for k in self.remove]
        return f"label {_ident(self.kind, self.name, self.namespace)} {' '.join(parts)}"


@dataclass(frozen=True)
class Patch:
    """A JSON merge patch (RFC 7386) on the resource's wire form."""

    kind: str
    name: str
    namespace: str | None
    patch: Mapping[str, Any]

    def describe(self) -> str:
        return f"patch {_ident(self.kind, self.name, self.namespace)}"


Change = Apply | Delete | Label | Patch


def _ident(kind: str, name: str, namespace: str | None) -> str:
    cls = kind_class(kind)
    ns = f"{namespace or 'default'}/" if cls.NAMESPACED else ""
    return f"{cls.KIND}({ns}{name})"


# ---------------------------------------------------------------- pure edits


def parse_label_args(
    items: Iterable[str], remove: bool = False
) -> tuple[dict[str, str], list[str]]:
    """`key=value` words (or bare keys with `remove`) -> (labels to set, keys to remove).

    Words with a leading `-` are removals too (`-team`), the console's label box syntax."""
    to_set: dict[str, str] = {}
    to_remove: list[str] = []
    for item in items:
        word = item.strip()
        if not word:
            continue
        if remove or (word.startswith("-") and "=" not in word):
            key = word.removeprefix("-")
            if "=" in key:
                raise StageError(f"remove takes a label key, not {word!r}")
            to_remove.append(key)
            continue
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise StageError(f"label {word!r}: write key=value (or -key to remove it)")
        to_set[key] = value
    both = set(to_set) & set(to_remove)
    if both:
        raise StageError(f"label {sorted(both)[0]!r} is both set and removed")
    if not to_set and not to_remove:
        raise StageError("no label given: write key=value (or -key to remove it)")
    return to_set, to_remove


def label_edit(
    resource: Resource,
    to_set: Mapping[str, str],
    to_remove: Iterable[str] = (),
    overwrite: bool = False,
) -> Resource:
    """A copy of `resource` with its labels edited (validated); the original is untouched."""
    if resource.KIND not in LABEL_KINDS:
        raise StageError(f"labels of a {resource.KIND} do not decide flows; label a "
                         "WorkloadEndpoint or a Profile")  # fmt: skip
    out = copy.deepcopy(resource)
    labels = out.metadata.labels if isinstance(out, WorkloadEndpoint) else out.spec.labels_to_apply
    for key, value in to_set.items():
        if key in labels and labels[key] != value and not overwrite:
            raise StageError(
                f"{resource.ident} already has label {key}={labels[key]!r}: "
                f"use --overwrite to set {key}={value!r}"
            )
        labels[key] = value
    for key in to_remove:
        if key not in labels:
            raise StageError(f"{resource.ident} has no label {key!r} to remove")
        del labels[key]
    try:
        out.validate()
    except ValidationError as exc:
        raise StageError(f"{resource.ident}: {exc}") from None
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null deletes, anything else
    (lists included) replaces. Returns a new value; neither input is changed."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _patched(resource: Resource, patch: Mapping[str, Any]) -> Resource:
    data = merge_patch(resource.to_dict(), dict(patch))
    for locked in ("kind", "apiVersion"):
        if data.get(locked) != resource.to_dict().get(locked):
            raise StageError(f"a patch cannot change {locked} of {resource.ident}")
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    if meta.get("name") != resource.metadata.name or meta.get("namespace") != (
        resource.metadata.namespace
    ):
        raise StageError(f"a patch cannot rename {resource.ident}")
    try:
        out = load(data)
    except ValidationError as exc:
        raise StageError(f"patched {resource.ident}: {exc}") from None
    out.metadata.resource_version = resource.metadata.resource_version
    return out


# ---------------------------------------------------------------- staging


@dataclass
class Write:
    """One key the commit writes: `base` is the revision it must still have (0: must be
    absent), `after` the resource to store (None: delete it)."""

    key: str
    base: int
    before: Resource | None
    after: Resource | None
    changes: list[str] = field(default_factory=list)

    @property
    def verb(self) -> str:
        if self.after is None:
            return "delete"
        return "create" if self.before is None else "update"

    @property
    def ident(self) -> str:
        res = self.after or self.before
        return res.ident if res is not None else self.key


@dataclass
class Staged:
    """Resources after the staged changes, and the writes that would make them so."""

    before: list[Resource]
    after: list[Resource]
    writes: dict[str, Write]
    changes: list[Change]

    def describe(self) -> list[str]:
        return [f"{w.verb} {w.ident}" for w in self.writes.values()]


def _revision(res: Resource | None) -> int:
    if res is None:
        return 0
    try:
        return int(res.metadata.resource_version or 0)
    except ValueError:
        return 0


def stage(resources: Iterable[Resource], changes: Iterable[Change]) -> Staged:
    """Play `changes` in order over the current `resources` (read with their
    resourceVersion). Raises StageError for a change that cannot be made."""
    before = list(resources)
    current: dict[str, Resource] = {key_of(r): r for r in before}
    working = dict(current)
    writes: dict[str, Write] = {}
    changes = list(changes)

    def record(key: str, after: Resource | None, change: Change, base: int | None = None) -> None:
        if key not in writes:
            start = current.get(key)
            writes[key] = Write(key, _revision(start) if base is None else base, start, None)
        writes[key].after = after
        writes[key].changes.append(change.describe())
        if after is None:
            working.pop(key, None)
        else:
            working[key] = after

    def existing(kind: str, name: str, namespace: str | None) -> tuple[str, Resource]:
        cls = kind_class(kind)
        key = resource_key(cls, name, namespace if cls.NAMESPACED else None)
        found = working.get(key)
        if found is None:
            raise StageError(f"{_ident(kind, name, namespace)} does not exist")
        return key, found

    for change in changes:
        if isinstance(change, Apply):
            res = copy.deepcopy(change.resource)
            if res.NAMESPACED and not res.metadata.namespace:
                res.metadata.namespace = "default"
            try:
                res.validate()
            except ValidationError as exc:
                raise StageError(f"{res.ident}: {exc}") from None
            key = key_of(res)
            stored = working.get(key)
            # The version the edit was read at, when it carries one: a newer stored version
            # makes the commit a conflict rather than undoing someone's change.
            base = _revision(res) if res.metadata.resource_version else None
            if stored is not None:
                res.metadata.uid = res.metadata.uid or stored.metadata.uid
                res.metadata.creation_timestamp = (
                    res.metadata.creation_timestamp or stored.metadata.creation_timestamp
                )
            res.metadata.resource_version = stored.metadata.resource_version if stored else None
            record(key, res, change, base)
        elif isinstance(change, Delete):
            key, _ = existing(change.kind, change.name, change.namespace)
            record(key, None, change)
        elif isinstance(change, Label):
            key, res = existing(change.kind, change.name, change.namespace)
            record(key, label_edit(res, change.set, change.remove, change.overwrite), change)
        elif isinstance(change, Patch):
            key, res = existing(change.kind, change.name, change.namespace)
            record(key, _patched(res, change.patch), change)
        else:  # pragma: no cover - the union is closed
            raise StageError(f"unknown change {change!r}")
    # A key put back exactly as it was is no write at all.
    for key in [k for k, w in writes.items() if _same(w.before, w.after)]:
        del writes[key]
    return Staged(before, list(working.values()), writes, changes)


def _same(a: Resource | None, b: Resource | None) -> bool:
    if a is None or b is None:
        return a is b
    return _content(a) == _content(b)


def _content(res: Resource) -> dict[str, Any]:
    data = res.to_dict()
    data["metadata"] = {
        k: v
        for k, v in data["metadata"].items()
        if k not in ("resourceVersion", "uid", "creationTimestamp")
    }
    return data


# ---------------------------------------------------------------- verdicts, before and after


@dataclass
class Pair:
    """One ordered endpoint pair: its verdict now and after (None: absent on that side)."""

    source: WorkloadEndpoint
    destination: WorkloadEndpoint
    src_ip: str
    dst_ip: str
    before: Verdict | None
    after: Verdict | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.src_ip, self.dst_ip)

    @property
    def flipped(self) -> bool:
        return (
            self.before is not None
            and self.after is not None
            and self.before.allowed != self.after.allowed
        )

    def describe(self) -> str:
        def word(v: Verdict | None) -> str:
            return "absent" if v is None else ("allowed" if v.allowed else "denied")

        src = f"{self.source.metadata.namespace or 'default'}/{self.source.metadata.name}"
        dst = f"{self.destination.metadata.namespace or 'default'}/{self.destination.metadata.name}"
        return (
            f"{src} ({self.src_ip}) -> {dst} ({self.dst_ip}): "
            f"{word(self.before)} -> {word(self.after)}"
        )


@dataclass
class WhatIf:
    staged: Staged
    before: PolicySet
    after: PolicySet
    pairs: list[Pair]
    port: int
    protocol: str

    @property
    def flips(self) -> list[Pair]:
        return [p for p in self.pairs if p.flipped]

    @property
    def appearing(self) -> list[Pair]:
        return [p for p in self.pairs if (p.before is None) != (p.after is None)]


def _address(ep: WorkloadEndpoint) -> str:
    """The endpoint's first IPv4 address (the lab's pods have one per endpoint), else first."""
    nets = [n.split("/")[0] for n in ep.spec.ip_networks]
    return next((a for a in nets if ":" not in a), nets[0] if nets else "")


def _same_pod(a: WorkloadEndpoint, b: WorkloadEndpoint) -> bool:
    if a is b:
        return True
    return bool(a.spec.container_id) and (a.spec.node, a.spec.container_id) == (
        b.spec.node,
        b.spec.container_id,
    )


def pair_verdict(
    policy_set: PolicySet,
    source: WorkloadEndpoint,
    destination: WorkloadEndpoint,
    port: int = 80,
    protocol: str = "TCP",
) -> Verdict:
    """The verdict of a connection from `source`'s address to `destination`'s."""
    return evaluate(
        policy_set,
        Flow(
            source,
            destination,
            protocol,
            dst_port=port,
            src_ip=_address(source) or None,
            dst_ip=_address(destination) or None,
        ),
    )


def policy_set_of(resources: Iterable[Resource]) -> PolicySet:
    return PolicySet.from_resources(resources)


def what_if(
    resources: Iterable[Resource] | Staged,
    changes: Iterable[Change] = (),
    port: int = 80,
    protocol: str = "TCP",
) -> WhatIf:
    """Every ordered pair of endpoints (with an address, not of one pod), evaluated on the
    current resources and on the staged ones. Pass a `Staged` to reuse a staging."""
    staged = resources if isinstance(resources, Staged) else stage(resources, changes)
    before, after = policy_set_of(staged.before), policy_set_of(staged.after)

    def endpoints(ps: PolicySet) -> dict[str, WorkloadEndpoint]:
        return {key_of(ep): ep for ep in ps.endpoints if _address(ep)}

    eps_before, eps_after = endpoints(before), endpoints(after)
    keys = list(eps_before) + [k for k in eps_after if k not in eps_before]
    pairs = []
    for sk in keys:
        for dk in keys:
            s_b, d_b = eps_before.get(sk), eps_before.get(dk)
            s_a, d_a = eps_after.get(sk), eps_after.get(dk)
            src, dst = s_a or s_b, d_a or d_b
            assert src is not None and dst is not None
            if _same_pod(src, dst) or sk == dk:
                continue
            v_b = pair_verdict(before, s_b, d_b, port, protocol) if s_b and d_b else None
            v_a = pair_verdict(after, s_a, d_a, port, protocol) if s_a and d_a else None
            pairs.append(Pair(src, dst, _address(src), _address(dst), v_b, v_a))
    return WhatIf(staged, before, after, pairs, port, protocol)
