"""What-if recomputation after a staged edit, on a 30-pod matrix, against the full matrix
evaluation it stands beside (issue 14: <= 200 ms).

    .venv/bin/python bench/bench_whatif.py [--pods 30] [--runs 15]

No root, no lab: the cluster is plain data shaped as the CNI plugin writes it (N endpoints
over network1..3 on 3 nodes, one profile per network, two policies: a GlobalNetworkPolicy
letting network2 into network1 on TCP 80 and a NetworkPolicy denying network3's egress to
port 8080). Measured in the same run, p50 of `--runs`:

1. reference: the console's full matrix by pod (N sources x N destinations, every cell
   through calico.policy.evaluate): what `:matrix` computes before probing.
2. console what-if: after one more staged label edit, the staging replayed over the state
   (`Staging.after`) and every cell's staged mark (`console.matrix.stage_into`): what
   `:matrix` recomputes when a change is staged.
3. core what-if: `calico.whatif.what_if` over every ordered endpoint pair, before and
   after: what `calicoctl ... --dry-run` computes.

The three are interleaved run by run (other work on the machine falls on all alike).
Ratio = what-if time / the full matrix evaluation (about 1: a staged edit costs one more
matrix evaluation; the what-if evaluates before and after, so the core is near 2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calico.datastore import KV  # noqa: E402
from calico.keys import key_of  # noqa: E402
from calico.policy import PolicySet  # noqa: E402
from calico.resources import load  # noqa: E402
from calico.whatif import Label, what_if  # noqa: E402
from console.matrix import Target, build, stage_into  # noqa: E402
from console.model import ClusterState  # noqa: E402
from console.staging import Staging, policy_resources  # noqa: E402

V3 = "projectcalico.org/v3"
NETWORKS = ("network1", "network2", "network3")
BUDGET_MS = 200.0


def cluster(pods: int) -> ClusterState:
    docs: list[dict] = []
    for net in NETWORKS:
        docs.append({"apiVersion": V3, "kind": "Profile", "metadata": {"name": net},
                     "spec": {"ingress": [{"action": "Allow", "source": {"selector": f"has({net})"}}],
                              "egress": [{"action": "Allow"}], "labelsToApply": {net: ""}}})  # fmt: skip
    docs.append({"apiVersion": V3, "kind": "GlobalNetworkPolicy", "metadata": {"name": "web"},
                 "spec": {"order": 100, "selector": "has(network1)", "types": ["Ingress"],
                          "ingress": [{"action": "Allow", "protocol": "TCP",
                                       "source": {"selector": "has(network2)"},
                                       "destination": {"ports": [80]}}, {"action": "Pass"}]}})  # fmt: skip
    docs.append({"apiVersion": V3, "kind": "NetworkPolicy",
                 "metadata": {"name": "no-8080", "namespace": "default"},
                 "spec": {"order": 50, "selector": "has(network3)", "types": ["Egress"],
                          "egress": [{"action": "Deny", "protocol": "TCP",
                                      "destination": {"ports": [8080]}}, {"action": "Pass"}]}})  # fmt: skip
    for i in range(pods):
        node, cid = f"calico-0{i % 3 + 1}", f"{i:08x}" + "cd" * 28
        docs.append({"apiVersion": V3, "kind": "WorkloadEndpoint",
                     "metadata": {"name": f"{node.replace('-', '--')}-cni-{cid}-eth0",
                                  "namespace": "default",
                                  "labels": {"projectcalico.org/namespace": "default",
                                             "projectcalico.org/orchestrator": "cni"}},
                     "spec": {"orchestrator": "cni", "node": node, "containerID": cid,
                              "endpoint": "eth0", "ipNetworks": [f"192.168.{i // 200}.{i % 200 + 1}/32"],
                              "profiles": [NETWORKS[i % 3]]}})  # fmt: skip
    state = ClusterState()
    kvs = []
    for rev, doc in enumerate(docs, start=2):
        kvs.append(KV(key_of(load(doc)), json.dumps(doc).encode(), rev, rev))
    state.replace_all(kvs)
    return state


def targets(state: ClusterState) -> list[Target]:
    """The matrix-by-pod targets the console builds from the node API's pod list."""
    ps = PolicySet.from_resources(policy_resources(state))
    out = []
    for ep in ps.endpoints:
        ip = ep.spec.ip_networks[0].split("/")[0]
        out.append(Target(ep.spec.container_id[:8], ep.spec.node, ep.spec.profiles[0], ip,
                          ep.spec.container_id, ep, "eth0"))  # fmt: skip
    return out


def p50s_ms(fns: list, runs: int) -> list[float]:
    """p50 of each function, the functions interleaved run by run so that load from other
    work on the machine falls on all of them alike."""
    for fn in fns:
        fn()  # warm: imports, caches
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000)
    return [statistics.median(t) for t in times]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    state = cluster(args.pods)
    tg = targets(state)
    # the staged edit: network3's profile hands its members network1's label too
    edit = Label("Profile", "network3", None, {"network1": ""})
    staging = Staging()
    staging.add(edit, state)

    def full_matrix():
        return build(PolicySet.from_resources(policy_resources(state)), tg, tg)

    matrix = full_matrix()
    flips = []

    def console_whatif():
        _, after = staging.after(state)
        stage_into(matrix, after)
        flips[:] = matrix.flips()

    def core_whatif():
        return what_if(policy_resources(state), [edit])

    ref, ours, core = p50s_ms([full_matrix, console_whatif, core_whatif], args.runs)
    result = core_whatif()
    cells = len(matrix.cells)
    print(f"\n{args.pods} pods, {cells} cells; the staged edit flips {len(flips)} cells "
          f"({len(result.flips)} of {len(result.pairs)} endpoint pairs); p50 of {args.runs}\n")  # fmt: skip
    print("| measure | calico-rkt | full matrix evaluation (reference) | ratio | budget |")
    print("|---|---:|---:|---:|---|")
    for name, ms in (("console what-if: restage + staged marks", ours),
                     ("core what-if (calicoctl --dry-run): before and after", core)):  # fmt: skip
        verdict = "ok" if ms <= BUDGET_MS else "MISSED"
        print(
            f"| {name} | {ms:.1f} ms | {ref:.1f} ms | {ms / ref:.2f} | <= {BUDGET_MS:.0f} ms {verdict} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
