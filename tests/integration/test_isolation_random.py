"""Randomized isolation on a dedicated 3-node lab (issue 12): for random topologies, where
about one pod in five is on two calico networks, every ordered pair of endpoints (per
endpoint, not per pod) is expected (calico.policy, through the console's matrix code) as
observed (real TCP from the source endpoint's address, through the node API's batch
probes, as the console's :matrix does).

Each topology: 4-6 busybox httpd pods on random nodes over network1..3, then maybe a
random GlobalNetworkPolicy, NetworkPolicy or profile rule change. The seed is printed and
`CALICO_TEST_SEED=<seed>` replays a run; `CALICO_TEST_TOPOLOGIES` sets how many (5).
Pods, policies and profile edits are undone after each topology, the lab after the module,
even when a check fails.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from calico.datastore import Datastore
from calico.policy import PolicySet
from calico.resources import (
    GlobalNetworkPolicy,
    NetworkPolicy,
    Profile,
    Resource,
    WorkloadEndpoint,
    load,
)
from console.matrix import UNKNOWN, Matrix, build
from console.model import ClusterState, NodeInfo
from console.screens.matrix import pod_targets

from .conftest import dedicated_lab
from .walkthrough import node_api

pytestmark = [pytest.mark.root, pytest.mark.etcd, pytest.mark.slow]

NETWORKS = ["network1", "network2", "network3"]
PORT = 80  # busybox httpd's
PROBE_TIMEOUT = 1.0  # a lab connect answers in milliseconds; silence for 1 s is a deny
CONVERGE = 20.0  # seconds the agents get to program a topology before a cell is wrong
SEED = int(os.environ.get("CALICO_TEST_SEED") or secrets.randbits(32))
TOPOLOGIES = int(os.environ.get("CALICO_TEST_TOPOLOGIES") or 5)
V3 = "projectcalico.org/v3"
PREFIX = "ct" + secrets.token_hex(2)  # names of this run's policies


@pytest.fixture(scope="module")
def lab3(tmp_path_factory) -> Iterator[Any]:
    """A dedicated 3-node lab with network1..3 (calico + calico-ipam) on every node."""
    print(f"\nisolation seed {SEED} (replay: CALICO_TEST_SEED={SEED})")
    with dedicated_lab(tmp_path_factory.mktemp("labs3"), 3, NETWORKS) as cluster:
        yield cluster


# ---------------------------------------------------------------- a random topology


@dataclass
class Pod:
    node: str
    networks: list[str]
    uuid: str = ""

    def __str__(self) -> str:
        return f"{self.uuid[:8] or '?'} on {self.node}: {','.join(self.networks)}"


@dataclass
class Topology:
    index: int
    pods: list[Pod]
    policies: list[dict[str, Any]] = field(default_factory=list)
    profile_edits: list[dict[str, Any]] = field(default_factory=list)  # the edited profiles
    rounds: int = 0  # probe rounds until every cell agreed
    timings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"topology {self.index} (seed {SEED}, replay: CALICO_TEST_SEED={SEED}):"]
        lines += [f"  pod {p}" for p in self.pods]
        for doc in self.policies + self.profile_edits:
            lines.append(f"  {doc['kind']} {doc['metadata']['name']}: {json.dumps(doc['spec'])}")
        return "\n".join(lines)


def selector(rng: random.Random, used: list[str]) -> str:
    net = rng.choice(used)
    return rng.choice([f"has({net})", f"has({net})", f"!has({net})", "all()"])


def random_rule(
    rng: random.Random, direction: str, actions: list[str], used: list[str]
) -> dict[str, Any]:
    rule: dict[str, Any] = {"action": rng.choice(actions)}
    peer = "source" if direction == "ingress" else "destination"
    rule[peer] = {"selector": selector(rng, used)}
    if rng.random() < 0.5:
        rule["protocol"] = "TCP"
        rule["destination"] = {**rule.get("destination", {}), "ports": [rng.choice([80, 80, 8080])]}
    return rule


def random_policy(rng: random.Random, kind: str, index: int, used: list[str]) -> dict[str, Any]:
    """A policy on the endpoints of one of the networks in use, one direction, 1-2 rules, maybe a final Pass (to
    the profiles) or not (the end of the tier denies)."""
    direction = rng.choice(["ingress", "egress"])
    rules = [random_rule(rng, direction, ["Allow", "Deny"], used) for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.6:
        rules.append({"action": "Pass"})
    doc: dict[str, Any] = {
        "apiVersion": V3,
        "kind": kind,
        "metadata": {"name": f"{PREFIX}-{index}-{kind.lower()}"},
        "spec": {
            "order": rng.choice([10, 100, 500]),
            "selector": f"has({rng.choice(used)})",
            "types": [direction.capitalize()],
            direction: rules,
        },
    }
    if kind == "NetworkPolicy":
        doc["metadata"]["namespace"] = "default"
    return doc


def edit_profile(rng: random.Random, profile: dict[str, Any], used: list[str]) -> dict[str, Any]:
    """The profile with one rule changed: another network let in, everyone let in, or
    egress to a network denied."""
    doc = json.loads(json.dumps(profile))
    doc["metadata"].pop("resourceVersion", None)
    spec = doc["spec"]
    change = rng.choice(["let-in", "open", "deny-egress"])
    if change == "let-in":
        spec["ingress"] = [*spec.get("ingress", []), random_rule(rng, "ingress", ["Allow"], used)]
    elif change == "open":
        spec["ingress"] = [{"action": "Allow"}]
    else:
        spec["egress"] = [random_rule(rng, "egress", ["Deny"], used), *spec.get("egress", [])]
    return doc


def random_topology(index: int, nodes: list[str]) -> tuple[Topology, random.Random]:
    rng = random.Random(f"{SEED}-{index}")
    count = rng.randint(4, 6)
    dual = set(rng.sample(range(count), max(1, round(count / 5))))  # one pod in five
    pods = []
    for i in range(count):
        nets = rng.sample(NETWORKS, 2) if i in dual else [rng.choice(NETWORKS)]
        pods.append(Pod(rng.choice(nodes), nets))
    return Topology(index, pods), rng


# ---------------------------------------------------------------- running it


def start_pod(lab, pod: Pod) -> None:
    argv = ["rkt", "run", f"--net={','.join(pod.networks)}", "--detach", "docker://busybox",
            "--exec=httpd", "--", "-f", "-h", "/"]  # fmt: skip
    proc = lab.exec(pod.node, argv, timeout=60)
    assert proc.returncode == 0, f"{' '.join(argv)} on {pod.node}: {proc.stderr}"
    pod.uuid = proc.stdout.strip().splitlines()[-1]


def remove_pod(lab, pod: Pod) -> None:
    lab.exec(pod.node, ["rkt", "stop", "--force", pod.uuid], timeout=60)
    lab.exec(pod.node, ["rkt", "rm", pod.uuid], timeout=60)


def node_pods(lab, pods: list[Pod]) -> dict[str, list[dict[str, Any]]]:
    """What each node's API lists of these pods."""
    ours = {p.uuid for p in pods}
    out = {}
    for node in sorted({p.node for p in pods}):
        with node_api(lab, node, timeout=30) as client:
            out[node] = [p for p in client.pods() if p.get("uuid") in ours]
    return out


def wait_programmed(lab, pods: list[Pod], timeout: float = 30.0) -> None:
    """Until every pod runs with an address per network and its node's agent reports each
    of its endpoints programmed (interface up, chains in place)."""
    deadline = time.monotonic() + timeout
    want = {p.uuid: len(p.networks) for p in pods}
    while True:
        listed = {p["uuid"]: p for items in node_pods(lab, pods).values() for p in items}
        missing = []
        for uuid, count in want.items():
            p = listed.get(uuid) or {}
            addresses = [n for n in p.get("networks", []) if n.get("name") in NETWORKS]
            up = [e for e in p.get("endpoints", []) if e.get("status") == "up"]
            if p.get("state") != "running" or len(addresses) != count or len(up) != count:
                shown = {k: p.get(k) for k in ("state", "networks", "endpoints")}
                missing.append(f"{uuid[:8]}: {json.dumps(shown)}")
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError("pods not programmed in time:\n  " + "\n  ".join(missing))
        time.sleep(0.1)


def policy_set(lab) -> PolicySet:
    ds = Datastore.connect(lab.etcd_endpoints)
    try:
        kinds = (Profile, GlobalNetworkPolicy, NetworkPolicy, WorkloadEndpoint)
        return PolicySet.from_resources([r for kind in kinds for r in ds.list(kind)])
    finally:
        ds.close()


def probe_matrix(lab, pods: list[Pod]) -> Matrix:
    """The console's matrix by pod over these pods (expected from calico.policy), every cell
    probed now through the source node's API in one batch per node."""
    pset = policy_set(lab)
    state = ClusterState()
    state.nodes = {
        node: NodeInfo(reachable=True, pods=items) for node, items in node_pods(lab, pods).items()
    }
    targets = pod_targets(state, pset, NETWORKS)
    matrix = build(pset, targets, targets, PORT)
    by_node: dict[str, list[tuple[tuple[int, int], dict[str, Any]]]] = defaultdict(list)
    for key, req in matrix.probe_requests():
        node = req.pop("node")
        req = {k: v for k, v in req.items() if v is not None}
        by_node[node].append((key, {**req, "timeout": PROBE_TIMEOUT}))

    def batch(node: str) -> list[dict[str, Any]]:
        with node_api(lab, node, timeout=30) as client:
            return client.probes([r for _, r in by_node[node]], timeout=PROBE_TIMEOUT)

    with ThreadPoolExecutor(max_workers=len(by_node) or 1) as pool:  # every node at once
        answers = dict(zip(by_node, pool.map(batch, by_node), strict=True))
    for node, items in by_node.items():
        for (key, _), result in zip(items, answers[node], strict=True):
            matrix.record(key, result)
    return matrix


def bad_cells(matrix: Matrix, pods: list[Pod]) -> list[str]:
    out = []
    for _, c in sorted(matrix.cells.items()):
        if c.wrong or UNKNOWN in (c.expected, c.observed):
            s, d = c.source, c.destination
            why = c.verdict.decision if c.verdict is not None else c.note or "no verdict"
            out.append(
                f"{s.label} [{s.network} {s.address} on {s.node}] -> {d.label} [{d.network} "
                f"{d.address} on {d.node}]: expected {c.expected} ({why}), observed "
                f"{c.observed} ({c.detail})"
            )
    if len(matrix.sources) != sum(len(p.networks) for p in pods):
        out.append(f"{len(matrix.sources)} endpoints in the matrix for pods {pods}")
    return out


def pod_routing(lab, matrix: Matrix, bad: list[str]) -> str:
    """`ip addr`, `ip rule` and every routing table inside the pods of the wrong cells."""
    text = []
    seen = set()
    for line in bad:
        for t in matrix.sources:
            if line.startswith(t.label + " ") and t.pod not in seen:
                seen.add(t.pod)
                netns = f"/var/lib/rkt/pods/{t.pod}/netns"
                for cmd in ("ip -br addr", "ip rule", "ip route show table all"):
                    argv = ["nsenter", f"--net={netns}", *cmd.split()]
                    proc = lab.exec(t.node, argv, timeout=10)
                    where = f"{t.pod[:8]} on {t.node}"
                    text.append(f"  [{where}] {cmd}:\n{proc.stdout}{proc.stderr}")
    return "\n".join(text)


def assert_isolation(lab, topo: Topology) -> Matrix:
    """Probe until every cell agrees (the agents program asynchronously) or CONVERGE."""
    deadline = time.monotonic() + CONVERGE
    while True:
        matrix = probe_matrix(lab, topo.pods)
        bad = bad_cells(matrix, topo.pods)
        topo.rounds += 1
        if not bad:
            return matrix
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{topo.describe()}\n{len(bad)} of {len(matrix.cells)} cells wrong:\n  "
                + "\n  ".join(bad)
                + "\n"
                + pod_routing(lab, matrix, bad)
            )


def apply(ds: Datastore, doc: dict[str, Any]) -> Resource:
    return ds.apply(load(doc))


@pytest.mark.parametrize("index", range(TOPOLOGIES))
def test_every_endpoint_pair_is_isolated_as_policy_says(lab3, index):
    topo, rng = random_topology(index, lab3.nodes)
    ds = Datastore.connect(lab3.etcd_endpoints)
    originals: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for pod in topo.pods:
            start_pod(lab3, pod)
        topo.timings.append(f"started {time.monotonic() - started:.1f}")
        wait_programmed(lab3, topo.pods)
        topo.timings.append(f"programmed {time.monotonic() - started:.1f}")
        before = assert_isolation(lab3, topo)  # the networks' profiles alone
        topo.timings.append(f"agreed {time.monotonic() - started:.1f}")

        change = rng.choice(["none", "GlobalNetworkPolicy", "NetworkPolicy", "profile"])
        used = sorted({n for p in topo.pods for n in p.networks})
        if change in ("GlobalNetworkPolicy", "NetworkPolicy"):
            doc = random_policy(rng, change, index, used)
            topo.policies.append(doc)
            apply(ds, doc)
        elif change == "profile":
            original = ds.get(Profile, rng.choice(used)).to_dict()
            originals.append(original)
            edited = edit_profile(rng, original, used)
            topo.profile_edits.append(edited)
            apply(ds, edited)
        if change != "none":
            after = assert_isolation(lab3, topo)
            moved = sum(after.cells[k].expected != c.expected for k, c in before.cells.items())
        else:
            moved = 0
        print(
            f"\n{topo.describe()}\n  {len(before.cells)} cells correct"
            f"{f'; after the {change} change too ({moved} moved)' if change != 'none' else ''}"
            f" in {time.monotonic() - started:.1f} s ({', '.join(topo.timings)} s;"
            f" {topo.rounds} probe rounds)"
        )
    finally:
        for pod in topo.pods:
            if pod.uuid:
                remove_pod(lab3, pod)
        for doc in topo.policies:
            kind = GlobalNetworkPolicy if doc["kind"] == "GlobalNetworkPolicy" else NetworkPolicy
            try:
                ds.delete(kind, doc["metadata"]["name"], doc["metadata"].get("namespace"))
            except Exception:
                pass
        for original in originals:
            doc = json.loads(json.dumps(original))
            doc["metadata"].pop("resourceVersion", None)
            apply(ds, doc)
        ds.close()
