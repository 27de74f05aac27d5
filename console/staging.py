"""The console's staged changes (what-if), as plain data.

An edit (`e`), a new resource (`c`) or a label edit (`l`) can be staged instead of written.
The staging lives in the app, so the browse screen adds to it and the matrix shows it; it
is a list of `calico.whatif` changes, played over the cluster state the console holds every
time it is asked (so a change arriving from etcd meanwhile is seen, and a staged write
whose base moved is a conflict when applied: nothing is written then).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calico.policy import PolicySet
from calico.resources import Resource
from calico.whatif import POLICY_KINDS, Change, Staged, stage
from console.model import ClusterState


def policy_resources(state: ClusterState) -> list[Resource]:
    """What decides flows, from the console's state (each with its resourceVersion)."""
    return [r for r in state.resources.values() if isinstance(r, POLICY_KINDS)]


@dataclass
class Staging:
    changes: list[Change] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def add(self, change: Change, state: ClusterState) -> Staged:
        """Stage one more change; raises calico.whatif.StageError (and keeps the staging
        as it was) when it cannot be made over the current state."""
        staged = stage(policy_resources(state), [*self.changes, change])
        self.changes.append(change)
        return staged

    def clear(self) -> None:
        self.changes.clear()

    def staged(self, state: ClusterState) -> Staged:
        return stage(policy_resources(state), self.changes)

    def after(self, state: ClusterState) -> tuple[Staged, PolicySet]:
        staged = self.staged(state)
        return staged, PolicySet.from_resources(staged.after)


def summary(staged: Staged) -> str:
    """`update Profile(network1), delete GlobalNetworkPolicy(x)`, or what is left."""
    writes = staged.describe()
    if not writes:
        return "the staged changes change nothing"
    return ", ".join(writes)
