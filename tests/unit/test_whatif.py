"""The what-if core (calico/whatif.py): staging changes over the current resources, and the
pairs whose verdict flips, on the tutorial's two networks."""

from __future__ import annotations

import time
from typing import Any

import pytest

from calico.policy import PolicySet
from calico.resources import Profile, Resource, WorkloadEndpoint, load
from calico.whatif import (
    Apply,
    Delete,
    Label,
    Patch,
    StageError,
    label_edit,
    merge_patch,
    pair_verdict,
    parse_label_args,
    stage,
    what_if,
)

API = "projectcalico.org/v3"


def profile(name: str, rev: str = "10") -> Profile:
    res = load(
        {
            "apiVersion": API,
            "kind": "Profile",
            "metadata": {"name": name, "resourceVersion": rev},
            "spec": {
                "ingress": [{"action": "Allow", "source": {"selector": f"has({name})"}}],
                "egress": [{"action": "Allow"}],
                "labelsToApply": {name: ""},
            },
        }
    )
    assert isinstance(res, Profile)
    return res


def endpoint(name: str, ip: str, net: str, node: str = "n1", cid: str = "", rev: str = "20"):
    res = load(
        {
            "apiVersion": API,
            "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rev},
            "spec": {
                "orchestrator": "cni",
                "node": node,
                "containerID": cid or name,
                "endpoint": "eth0",
                "ipNetworks": [f"{ip}/32"],
                "profiles": [net],
            },
        }
    )
    assert isinstance(res, WorkloadEndpoint)
    return res


def cluster() -> list[Resource]:
    """a1, a2 on network1; b1 on network2."""
    return [
        profile("network1"),
        profile("network2"),
        endpoint("a1", "10.0.0.1", "network1"),
        endpoint("a2", "10.0.0.2", "network1", node="n2"),
        endpoint("b1", "10.0.0.3", "network2"),
    ]


def flips(result: Any) -> set[tuple[str, str, bool]]:
    """(source ip, destination ip, allowed after) of every flipped pair."""
    return {(p.src_ip, p.dst_ip, p.after.allowed) for p in result.flips}


def gnp(name: str, spec: dict[str, Any]) -> Resource:
    return load({"apiVersion": API, "kind": "GlobalNetworkPolicy", "metadata": {"name": name},
                 "spec": spec})  # fmt: skip


def test_no_change_no_flip_and_the_pairs_are_every_ordered_pair_of_endpoints():
    result = what_if(cluster(), [])
    assert len(result.pairs) == 6
    assert result.flips == []
    allowed = {(p.src_ip, p.dst_ip) for p in result.pairs if p.before.allowed}
    assert allowed == {("10.0.0.1", "10.0.0.2"), ("10.0.0.2", "10.0.0.1")}


def test_letting_network2_into_network1_flips_exactly_b1_to_the_a_pods():
    edited = profile("network1")
    edited.spec.ingress.append(
        load_rule({"action": "Allow", "source": {"selector": "has(network2)"}})
    )
    result = what_if(cluster(), [Apply(edited)])
    assert flips(result) == {("10.0.0.3", "10.0.0.1", True), ("10.0.0.3", "10.0.0.2", True)}
    pair = result.flips[0]
    assert "DENIED" in pair.before.explain()[0] and "ALLOWED" in pair.after.explain()[0]
    assert [w.verb for w in result.staged.writes.values()] == ["update"]


def load_rule(data: dict[str, Any]) -> Any:
    return load({"apiVersion": API, "kind": "Profile", "metadata": {"name": "x"},
                 "spec": {"ingress": [data]}}).spec.ingress[0]  # fmt: skip


def test_a_deny_policy_then_deleting_it_flips_back():
    deny = gnp("no-a2", {"selector": "all()", "types": ["Ingress"], "order": 10,
                         "ingress": [{"action": "Deny", "source": {"nets": ["10.0.0.2/32"]}},
                                     {"action": "Pass"}]})  # fmt: skip
    result = what_if(cluster(), [Apply(deny)])
    assert flips(result) == {("10.0.0.2", "10.0.0.1", False)}
    assert result.staged.writes[next(iter(result.staged.writes))].verb == "create"
    deny.metadata.resource_version = "30"
    back = what_if([*cluster(), deny], [Delete("GlobalNetworkPolicy", "no-a2")])
    assert flips(back) == {("10.0.0.2", "10.0.0.1", True)}
    assert [w.verb for w in back.staged.writes.values()] == ["delete"]
    assert back.staged.writes[next(iter(back.staged.writes))].base == 30


def test_an_endpoint_label_moves_it_into_a_network_for_selectors():
    # b1 labelled network1: the profile network1's has(network1) now lets it in
    result = what_if(cluster(), [Label("WorkloadEndpoint", "b1", "default", {"network1": ""})])
    assert flips(result) == {("10.0.0.3", "10.0.0.1", True), ("10.0.0.3", "10.0.0.2", True)}


def test_a_profile_label_is_its_labels_to_apply_and_moves_every_member():
    result = what_if(cluster(), [Label("Profile", "network2", None, {"network1": ""})])
    assert flips(result) == {("10.0.0.3", "10.0.0.1", True), ("10.0.0.3", "10.0.0.2", True)}
    write = next(iter(result.staged.writes.values()))
    assert write.after.spec.labels_to_apply == {"network2": "", "network1": ""}
    # removing network1's own label takes its members out of has(network1): a1 <-> a2 denied
    out = what_if(cluster(), [Label("Profile", "network1", None, remove=("network1",))])
    assert flips(out) == {("10.0.0.1", "10.0.0.2", False), ("10.0.0.2", "10.0.0.1", False)}


def test_label_refusals_name_what_is_wrong():
    wep = endpoint("a1", "10.0.0.1", "network1")
    wep.metadata.labels = {"team": "red"}
    with pytest.raises(StageError, match="already has label team='red': use --overwrite"):
        label_edit(wep, {"team": "blue"})
    assert label_edit(wep, {"team": "blue"}, overwrite=True).metadata.labels == {"team": "blue"}
    assert wep.metadata.labels == {"team": "red"}  # the original is untouched
    assert label_edit(wep, {"team": "red"}).metadata.labels == {"team": "red"}  # same value
    with pytest.raises(StageError, match="has no label 'ghost' to remove"):
        label_edit(wep, {}, ["ghost"])
    with pytest.raises(StageError, match="label"):
        label_edit(wep, {"bad key!": "x"})
    with pytest.raises(StageError, match="does not exist"):
        stage(cluster(), [Label("WorkloadEndpoint", "nope", "default", {"a": "b"})])
    with pytest.raises(StageError, match="does not exist"):
        stage(cluster(), [Delete("Profile", "nope")])
    with pytest.raises(StageError, match="do not decide flows"):
        label_edit(gnp("p", {"selector": "all()"}), {"a": "b"})


def test_parse_label_args():
    assert parse_label_args(["a=1", "b=", "-c"]) == ({"a": "1", "b": ""}, ["c"])
    assert parse_label_args(["team"], remove=True) == ({}, ["team"])
    for bad in (["novalue"], ["a=1", "-a"], [], ["=x"]):
        with pytest.raises(StageError):
            parse_label_args(bad)


def test_merge_patch_is_rfc7386():
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(target, {"a": {"b": None, "c": [3]}, "e": {"f": 1}}) == {
        "a": {"c": [3]}, "d": 1, "e": {"f": 1},
    }  # fmt: skip
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch({"a": 1}, ["x"]) == ["x"]


def test_a_patch_flips_and_cannot_rename_or_break_the_resource():
    patch = {"spec": {"ingress": [{"action": "Allow"}]}}  # network2 lets everyone in
    result = what_if(cluster(), [Patch("Profile", "network2", None, patch)])
    assert flips(result) == {("10.0.0.1", "10.0.0.3", True), ("10.0.0.2", "10.0.0.3", True)}
    with pytest.raises(StageError, match="rename"):
        stage(cluster(), [Patch("Profile", "network2", None, {"metadata": {"name": "x"}})])
    with pytest.raises(StageError, match="patched"):
        stage(
            cluster(),
            [Patch("Profile", "network2", None, {"spec": {"ingress": [{"action": "Maybe"}]}})],
        )


def test_changes_compose_and_a_change_undone_is_no_write():
    edited = profile("network1")
    edited.spec.ingress = []
    staged = stage(cluster(), [Apply(edited), Apply(profile("network1"))])
    assert staged.writes == {}
    staged = stage(
        cluster(),
        [Label("WorkloadEndpoint", "a1", "default", {"x": "1"}),
         Label("WorkloadEndpoint", "a1", "default", {"y": "2"})],
    )  # fmt: skip
    (write,) = staged.writes.values()
    assert write.base == 20 and write.after.metadata.labels == {"x": "1", "y": "2"}
    assert len(write.changes) == 2


def test_an_edit_read_at_an_older_version_keeps_that_version_as_its_base():
    old = profile("network1", rev="7")  # the console read it at 7; the store has 10 now
    assert stage(cluster(), [Apply(old)]).writes == {}  # same content: nothing to write
    old.spec.egress = []
    staged = stage(cluster(), [Apply(old)])
    assert next(iter(staged.writes.values())).base == 7


def test_same_pod_endpoints_are_no_pair_and_a_new_endpoint_only_appears():
    res = [*cluster(), endpoint("a1-eth1", "10.0.1.1", "network2", cid="a1")]
    res[-1].spec.endpoint = "eth1"
    result = what_if(res, [])
    ends = {(p.src_ip, p.dst_ip) for p in result.pairs}
    assert ("10.0.0.1", "10.0.1.1") not in ends and ("10.0.1.1", "10.0.0.1") not in ends
    new = endpoint("c1", "10.0.0.9", "network1", rev="")
    new.metadata.resource_version = None
    added = what_if(cluster(), [Apply(new)])
    assert added.flips == [] and len(added.appearing) == 6
    assert all(p.before is None for p in added.appearing)


def test_invalid_apply_is_refused_at_staging():
    bad = profile("network1")
    bad.spec.ingress.append(load_rule({"action": "Allow"}))
    bad.spec.ingress[-1].action = "Sometimes"
    with pytest.raises(StageError, match="network1"):
        stage(cluster(), [Apply(bad)])


def test_pair_verdict_is_policy_evaluate():
    res = cluster()
    ps = PolicySet.from_resources(res)
    v = pair_verdict(ps, res[2], res[3])
    assert v.allowed and v.flow.src_ip == "10.0.0.1" and v.flow.dst_ip == "10.0.0.2"


def test_thirty_pods_what_if_is_fast_enough_to_follow_an_edit():
    """900 pairs twice; the bench (bench/bench_whatif.py) measures it against a reference."""
    res: list[Resource] = [profile("network1"), profile("network2")]
    for i in range(30):
        res.append(endpoint(f"p{i}", f"10.0.0.{i + 1}", f"network{1 + i % 2}", node=f"n{i % 3}"))
    started = time.perf_counter()
    result = what_if(res, [Label("Profile", "network2", None, {"network1": ""})])
    took = time.perf_counter() - started
    assert len(result.pairs) == 870 and len(result.flips) == 15 * 15
    assert took < 5.0  # a sanity bound for a slow CI box, not the figure
