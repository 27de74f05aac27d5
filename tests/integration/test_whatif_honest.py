"""What-if is honest (issue 14): on a dedicated 3-node lab, a chain of random staged changes
(≥ 20), each applied for real, and for each one the cells the what-if said would flip are
exactly the cells whose probes flipped: real TCP from every endpoint's address to every
other's, through the node API, before and after.

One topology (6 busybox httpd pods over network1..3, one on two networks) carries the whole
chain: each change starts from the state the previous one left, whose probes already agreed
with policy. A change is one of: an endpoint's label set or removed (`calicoctl label wep`),
a profile's labelsToApply edited (`calicoctl label profile`), a new GlobalNetworkPolicy or
NetworkPolicy, one of them deleted, a profile rule edit (apply), or a merge patch of a
profile's ingress. Predicted flips come from the core (calico.whatif, what calicoctl
--dry-run prints) and from the console's matrix (console.matrix.stage_into, what :matrix
marks); both must agree with each other and with the probes.

The seed is printed; `CALICO_TEST_SEED=<seed>` replays a run, `CALICO_TEST_CHANGES` sets
how many changes (20). Pods, policies and profile edits are undone at the end, the lab
after the module, even when a check fails.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from calico.datastore import Datastore
from calico.resources import GlobalNetworkPolicy, NetworkPolicy, Profile, WorkloadEndpoint, load
from calico.whatif import Apply, Change, Delete, Label, Patch, StageError, stage, what_if
from calico.whatif_store import commit, read_policy_resources
from console.matrix import Matrix, stage_into

from .conftest import dedicated_lab
from .test_isolation_random import (
    NETWORKS,
    Pod,
    Topology,
    assert_isolation,
    edit_profile,
    probe_matrix,
    random_policy,
    random_rule,
    remove_pod,
    start_pod,
    wait_programmed,
)

pytestmark = [pytest.mark.root, pytest.mark.etcd, pytest.mark.slow]

SEED = int(os.environ.get("CALICO_TEST_SEED") or secrets.randbits(32))
CHANGES = int(os.environ.get("CALICO_TEST_CHANGES") or 20)
CONVERGE = 20.0  # seconds the agents get to program a change before the probes disagree
# A probe round only counts if it starts this long after the commit: a change predicted to
# flip nothing would otherwise be "confirmed" by probes that ran before any agent applied
# it. An incremental apply takes ~50 ms (p99 ~60 ms, bench/bench_agent.py): 1 s is 15x that.
SETTLE = 1.0
PREFIX = "wi" + secrets.token_hex(2)  # names of this run's policies


@pytest.fixture(scope="module")
def lab3(tmp_path_factory) -> Iterator[Any]:
    print(f"\nwhat-if seed {SEED} (replay: CALICO_TEST_SEED={SEED})")
    with dedicated_lab(tmp_path_factory.mktemp("labs-whatif"), 3, NETWORKS) as cluster:
        yield cluster


def random_change(
    rng: random.Random, index: int, resources: list[Any], ours: list[tuple[str, str | None]]
) -> Change:
    """One random change over what etcd holds now (`ours`: the policies made so far)."""
    weps = [r for r in resources if isinstance(r, WorkloadEndpoint)]
    profiles = [r for r in resources if isinstance(r, Profile) and r.metadata.name in NETWORKS]
    used = sorted({p.metadata.name for p in profiles})
    kinds = ["wep-label", "wep-label", "profile-label", "policy", "profile-edit", "patch"]
    if ours:
        kinds.append("delete")
    kind = rng.choice(kinds)
    if kind == "wep-label":
        ep = rng.choice(weps)
        own = [n for n in NETWORKS if n in ep.metadata.labels]
        if own and rng.random() < 0.5:
            return Label("WorkloadEndpoint", ep.metadata.name, "default", remove=(rng.choice(own),))
        # mostly a network it is not on (its profile gives it its own network's label)
        others = [n for n in NETWORKS if n not in ep.spec.profiles]
        net = rng.choice(others if others and rng.random() < 0.8 else list(NETWORKS))
        if net in ep.metadata.labels:
            return Label("WorkloadEndpoint", ep.metadata.name, "default", remove=(net,))
        return Label("WorkloadEndpoint", ep.metadata.name, "default", {net: ""}, overwrite=True)
    if kind == "profile-label":
        prof = rng.choice(profiles)
        net = rng.choice(NETWORKS)
        if net in prof.spec.labels_to_apply and rng.random() < 0.5:
            return Label("Profile", prof.metadata.name, None, remove=(net,))
        return Label("Profile", prof.metadata.name, None, {net: ""}, overwrite=True)
    if kind == "policy":
        doc = random_policy(rng, rng.choice(["GlobalNetworkPolicy", "NetworkPolicy"]), index, used)
        doc["metadata"]["name"] = f"{PREFIX}-{index}-{doc['kind'].lower()}"
        return Apply(load(doc))
    if kind == "delete":
        name, ns = rng.choice(ours)
        return Delete("NetworkPolicy" if ns else "GlobalNetworkPolicy", name, ns)
    prof = rng.choice(profiles)
    if kind == "profile-edit":
        doc = edit_profile(rng, prof.to_dict(), used)
        doc["metadata"]["resourceVersion"] = prof.metadata.resource_version
        return Apply(load(doc))
    rules = [random_rule(rng, "ingress", ["Allow", "Deny"], used) for _ in range(rng.randint(1, 2))]
    return Patch("Profile", prof.metadata.name, None, {"spec": {"ingress": rules}})


def cells(matrix: Matrix, mark: str) -> dict[tuple[str, str], str]:
    """(source address, destination address) -> the mark ('expected', 'staged', 'observed')."""
    return {
        (c.source.address, c.destination.address): getattr(c, mark) for c in matrix.cells.values()
    }


def test_predicted_flips_are_the_probed_flips(lab3):
    rng = random.Random(SEED)
    nodes = lab3.nodes
    dual = rng.randrange(6)
    pods = [
        Pod(nodes[i % 3], rng.sample(NETWORKS, 2) if i == dual else [NETWORKS[i % 3]])
        for i in range(6)
    ]
    topo = Topology(0, pods)
    ds = Datastore.connect(lab3.etcd_endpoints)
    ours: list[tuple[str, str | None]] = []
    originals: dict[str, dict[str, Any]] = {}
    log: list[str] = []
    started = time.monotonic()
    try:
        for pod in pods:
            start_pod(lab3, pod)
        wait_programmed(lab3, pods)
        settled = assert_isolation(lab3, topo)  # probes agree with policy to begin with
        originals = {p.metadata.name: p.to_dict() for p in ds.list(Profile)}
        log.append(
            f"{len(settled.cells)} cells agree at the start ({time.monotonic() - started:.1f} s)"
        )
        total_flips = 0
        for index in range(CHANGES):
            resources = read_policy_resources(ds)
            for _ in range(20):  # a change that cannot be staged here: draw another
                change = random_change(rng, index, resources, ours)
                try:
                    staged = stage(resources, [change])
                except StageError:
                    continue
                if staged.writes:
                    break
            result = what_if(staged)
            predicted = {p.key for p in result.flips}
            # the console's matrix over the same cells (the last probed one), staged
            now = stage_into(settled, result.after)
            marked = {
                (c.source.address, c.destination.address) for c in now.cells.values() if c.flips
            }
            assert marked == predicted, (
                f"change {index} {change.describe()}: console {marked} core {predicted}"
            )
            observed_before = cells(now, "observed")
            assert observed_before == cells(now, "expected"), f"change {index}: not settled before"

            commit(ds, staged)
            committed = time.monotonic()
            if isinstance(change, Apply) and change.resource.KIND.endswith("NetworkPolicy"):
                ours.append((change.resource.metadata.name, change.resource.metadata.namespace))
            if isinstance(change, Delete):
                ours.remove((change.name, change.namespace))
            t0 = time.monotonic()
            while True:
                time.sleep(max(0.0, committed + SETTLE - time.monotonic()))
                after = probe_matrix(lab3, pods)
                observed = {
                    k for k, v in cells(after, "observed").items() if v != observed_before[k]
                }
                if observed == predicted and cells(after, "observed") == cells(after, "expected"):
                    break
                if time.monotonic() - t0 > CONVERGE:
                    raise AssertionError(
                        f"seed {SEED} change {index}: {change.describe()}\n"
                        f"  predicted flips {sorted(predicted)}\n  probed flips {sorted(observed)}\n"
                        + "\n".join(f"  {line}" for line in log)
                    )
            settled = after
            total_flips += len(predicted)
            log.append(
                f"change {index}: {change.describe()}: {len(predicted)} flips predicted and probed"
                f" ({time.monotonic() - t0:.1f} s)"
            )
        print(
            "\n" + "\n".join(log) + f"\n{total_flips} flips in {time.monotonic() - started:.1f} s"
        )
        assert total_flips > 0, "no change flipped anything: the chain tested nothing"
    finally:
        for pod in pods:
            if pod.uuid:
                remove_pod(lab3, pod)
        for name, ns in ours:
            kind = NetworkPolicy if ns else GlobalNetworkPolicy
            try:
                ds.delete(kind, name, ns)
            except Exception:
                pass
        for doc in originals.values():
            doc = json.loads(json.dumps(doc))
            doc["metadata"].pop("resourceVersion", None)
            try:
                ds.apply(load(doc))
            except Exception:
                pass
        ds.close()
