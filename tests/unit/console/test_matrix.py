"""The matrix: expected from policy, observed from probes, wrong cells and their command."""

from calico.policy import PolicySet
from calico.resources import WorkloadEndpoint
from console.matrix import ALLOWED, DENIED, UNKNOWN, Target, build, render_text

from .fixtures import seed_state


def seed_matrix(port=81):
    state = seed_state()
    ps = PolicySet.from_resources(list(state.resources.values()))
    weps = [r for r in state.resources.values() if isinstance(r, WorkloadEndpoint)]
    dsts = [
        Target(f"{w.spec.profiles[0]}@{w.spec.node}", w.spec.node, w.spec.profiles[0],
               w.spec.ip_networks[0].split("/")[0], endpoint=w)
        for w in weps
    ]  # fmt: skip
    srcs = [
        Target(f"{n}@{node}", node, n)
        for n in ("network1", "network2")
        for node in ("calico-01", "calico-02")
    ]
    return build(ps, srcs, dsts, port=port)


def test_expected_follows_the_profiles():
    m = seed_matrix(port=81)
    # network1 sources reach network1 pods on both nodes; network2 sources do not
    assert [m.cell(0, j).expected for j in range(3)] == [ALLOWED, ALLOWED, DENIED]
    assert [m.cell(2, j).expected for j in range(3)] == [DENIED, DENIED, ALLOWED]
    assert m.summary() == "0 correct, 0 wrong, 12 pending"


def test_policy_opens_port_80_for_network2_only():
    m = seed_matrix(port=80)
    assert m.cell(2, 0).expected == ALLOWED
    assert "allow-web" in " ".join(m.cell(2, 0).verdict.explain())


def test_observed_results_make_cells_right_or_wrong():
    m = seed_matrix(port=81)
    m.record((0, 0), {"result": "connected", "seconds": 0.01})
    m.record((2, 0), {"result": "timed out", "seconds": 3.0})
    m.record((2, 1), {"result": "connected", "seconds": 0.02})  # should have been denied
    m.record((1, 1), {"result": "error", "error": "node unreachable"})
    assert m.cell(0, 0).observed == ALLOWED and not m.cell(0, 0).wrong
    assert m.cell(2, 0).observed == DENIED and not m.cell(2, 0).wrong
    assert m.cell(2, 1).wrong
    assert m.cell(1, 1).observed == UNKNOWN and "node unreachable" in m.cell(1, 1).detail
    assert m.summary() == "2 correct, 1 wrong, 9 pending"
    cmd = m.cell(2, 1).reproduce(81)
    assert cmd == ("calico-lab exec calico-01 -- rkt run --net=network2 docker://busybox "
                   "--exec=/bin/wget -- -T 3 -O - http://192.168.0.65:81/")  # fmt: skip
    text = "\n".join(render_text(m))
    assert "X/.!" in text and "2 correct, 1 wrong" in text


def test_probe_requests_cover_every_cell():
    m = seed_matrix()
    reqs = m.probe_requests()
    assert len(reqs) == 12
    assert {r["node"] for _, r in reqs} == {"calico-01", "calico-02"}
    assert all(r["network"] and r["pod"] is None for _, r in reqs)
