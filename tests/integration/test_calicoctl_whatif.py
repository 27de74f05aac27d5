"""`calicoctl label`, `calicoctl patch` and `--dry-run` (what-if) against a real etcd, and on
the shared lab with real pods: the pairs a dry run prints are the probes that flip once
the change is applied for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calico.datastore import Datastore
from calico.nodeapi import NodeClient
from calico.resources import Profile, WorkloadEndpoint, load
from calicoctl.cli import main

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
API = "projectcalico.org/v3"


def profile_doc(name: str) -> dict:
    return {
        "apiVersion": API,
        "kind": "Profile",
        "metadata": {"name": name},
        "spec": {
            "ingress": [{"action": "Allow", "source": {"selector": f"has({name})"}}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {name: ""},
        },
    }


def wep_doc(name: str, ip: str, net: str) -> dict:
    return {
        "apiVersion": API,
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"orchestrator": "cni", "node": "n1", "containerID": name, "endpoint": "eth0",
                 "ipNetworks": [f"{ip}/32"], "profiles": [net]},
    }  # fmt: skip


@pytest.fixture
def ctl(datastore, etcd_server, monkeypatch, capsys):
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd_server.endpoints)

    def run(*argv: str):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def seeded(datastore):
    """network1 (a1, a2) and network2 (b1), as the CNI plugin writes them."""
    for doc in (profile_doc("network1"), profile_doc("network2"),
                wep_doc("a1", "10.9.0.1", "network1"), wep_doc("a2", "10.9.0.2", "network1"),
                wep_doc("b1", "10.9.0.3", "network2")):  # fmt: skip
        datastore.create(load(doc))
    return datastore


pytestmark = pytest.mark.etcd


def test_label_dry_run_prints_the_flips_and_writes_nothing(ctl, seeded):
    rev = seeded.revision()
    code, out, err = ctl("label", "wep", "b1", "network1=", "--dry-run")
    assert (code, err) == (0, "")
    assert "Dry run, nothing written. Staged: update WorkloadEndpoint(default/b1)" in out
    assert "2 of 6 endpoint pairs would change verdict (TCP/80):" in out
    lines = [line for line in out.splitlines() if "(10.9.0.3)" in line]
    assert len(lines) == 2 and all("denied" in ln and "allowed" in ln for ln in lines)
    assert all("profile network1 ingress rule 0 (Allow)" in ln for ln in lines)
    assert seeded.revision() == rev


def test_label_sets_overwrites_and_removes(ctl, seeded):
    assert ctl("label", "wep", "a1", "team=red") == (
        0, "Successfully set label team=red on WorkloadEndpoint(default/a1)\n", "",
    )  # fmt: skip
    code, out, err = ctl("label", "wep", "a1", "team=blue")
    assert code == 1 and out == ""
    assert "already has label team='red': use --overwrite" in err
    assert ctl("label", "wep", "a1", "team=blue", "--overwrite")[0] == 0
    assert seeded.get(WorkloadEndpoint, "a1", "default").metadata.labels == {"team": "blue"}
    assert ctl("label", "wep", "a1", "team", "--remove")[0] == 0
    assert seeded.get(WorkloadEndpoint, "a1", "default").metadata.labels == {}
    code, _, err = ctl("label", "wep", "a1", "--remove", "team")  # either order
    assert code == 1 and "has no label 'team' to remove" in err
    code, _, err = ctl("label", "wep", "ghost", "a=b")
    assert code == 1 and "resource does not exist: WorkloadEndpoint(default/ghost)" in err
    code, _, err = ctl("label", "ippool", "x", "a=b")
    assert code == 1 and "label works on workloadendpoints and profiles" in err


def test_label_on_a_profile_edits_labels_to_apply(ctl, seeded):
    code, out, _ = ctl("label", "profile", "network2", "network1=", "--dry-run")
    assert code == 0 and "2 of 6 endpoint pairs would change verdict" in out
    assert ctl("label", "profile", "network2", "network1=")[0] == 0
    assert seeded.get(Profile, "network2").spec.labels_to_apply == {"network2": "", "network1": ""}


def test_patch_merges_and_refuses_what_would_not_validate(ctl, seeded):
    patch = json.dumps({"spec": {"ingress": [{"action": "Allow"}]}})
    code, out, _ = ctl("patch", "profile", "network2", "-p", patch, "--dry-run")
    assert code == 0 and "2 of 6 endpoint pairs would change verdict" in out
    assert ctl("patch", "profile", "network2", "-p", patch) == (
        0, "Successfully patched 1 'Profile' resource\n", "",
    )  # fmt: skip
    prof = seeded.get(Profile, "network2")
    assert [r.action for r in prof.spec.ingress] == ["Allow"]
    assert prof.spec.labels_to_apply == {"network2": ""}  # untouched by the merge
    rev = seeded.revision()
    code, _, err = ctl(
        "patch", "profile", "network2", "-p", '{"spec": {"ingress": [{"action": "No"}]}}'
    )
    assert code == 1 and "Failed to patch resource" in err
    code, _, err = ctl("patch", "profile", "network2", "-p", "{not json")
    assert code == 1 and "not JSON" in err
    code, _, err = ctl("patch", "profile", "network2", "-p", "{}", "--type", "json")
    assert code == 1 and "use --type merge" in err
    assert seeded.revision() == rev


def test_apply_dry_run_of_a_policy_file(ctl, seeded, tmp_path):
    doc = {"apiVersion": API, "kind": "GlobalNetworkPolicy", "metadata": {"name": "deny-a2"},
           "spec": {"order": 10, "selector": "all()", "types": ["Ingress"],
                    "ingress": [{"action": "Deny", "source": {"nets": ["10.9.0.2/32"]}},
                                {"action": "Pass"}]}}  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps(doc))
    rev = seeded.revision()
    code, out, err = ctl("apply", "--dry-run", "-f", str(path))
    assert (code, err) == (0, "")
    assert "Staged: create GlobalNetworkPolicy(deny-a2)" in out
    assert "1 of 6 endpoint pairs would change verdict (TCP/80):" in out
    (row,) = [ln for ln in out.splitlines() if "default/a2 (10.9.0.2)" in ln.split("   ")[0]]
    assert "global policy deny-a2 ingress rule 0 (Deny)" in row
    assert seeded.revision() == rev
    code, out, _ = ctl("apply", "--dry-run", "--port", "8080", "-f", str(path))
    assert "(TCP/8080)" in out


def test_a_change_made_meanwhile_is_a_conflict_and_nothing_is_written(seeded):
    """The commit is one CAS transaction over every staged key."""
    from calico.errors import Conflict
    from calico.whatif import Label, stage
    from calico.whatif_store import commit, read_policy_resources

    staged = stage(
        read_policy_resources(seeded),
        [Label("WorkloadEndpoint", "a1", "default", {"x": "1"}),
         Label("Profile", "network2", None, {"y": "2"})],
    )  # fmt: skip
    other = seeded.get(Profile, "network2")
    other.spec.labels_to_apply["z"] = "3"
    seeded.update(other)  # someone else, after the staging
    with pytest.raises(Conflict, match=r"nothing written: .*Profile\(network2\) was at revision"):
        commit(seeded, staged)
    assert seeded.get(WorkloadEndpoint, "a1", "default").metadata.labels == {}
    restaged = stage(read_policy_resources(seeded), staged.changes)
    assert sorted(commit(seeded, restaged)) == [
        "updated Profile(network2)", "updated WorkloadEndpoint(default/a1)",
    ]  # fmt: skip
    assert seeded.get(Profile, "network2").spec.labels_to_apply == {
        "network2": "", "z": "3", "y": "2",
    }  # fmt: skip


# ---------------------------------------------------------------- on the lab, with real pods


def _pods(lab, node: str) -> list[dict]:
    with NodeClient(f"unix://{lab.state_dir / 'nodes' / node / 'agent.sock'}", timeout=30) as c:
        return [p for p in c.pods() if p.get("app") not in ("node", "probe")]


def _probe(lab, node: str, pod: str, address: str) -> str:
    with NodeClient(f"unix://{lab.state_dir / 'nodes' / node / 'agent.sock'}", timeout=30) as c:
        (answer,) = c.probes([{"pod": pod, "address": address, "port": 80}], timeout=1.0)
    return answer["result"]


def _wait(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.slow
def test_on_the_lab_the_dry_run_names_the_probes_that_flip(lab):
    for node in lab.nodes:
        for net in ("network1", "network2"):
            conf = {"name": net, "cniVersion": "0.1.0", "type": "calico",
                    "ipam": {"type": "calico-ipam"}}  # fmt: skip
            lab.write_net_conf(node, f"10-calico-{net}.conf", conf)
    started = []
    for node, net in (("calico-01", "network1"), ("calico-02", "network2")):
        argv = ["rkt", "run", f"--net={net}", "--detach", "docker://busybox", "--exec=httpd",
                "--", "-f", "-h", "/"]  # fmt: skip
        proc = lab.exec(node, argv, timeout=60)
        assert proc.returncode == 0, proc.stderr
        started.append((node, proc.stdout.strip().splitlines()[-1]))
    env = {**os.environ, "ETCD_ENDPOINTS": lab.etcd_endpoints}
    ds = Datastore.connect(lab.etcd_endpoints)
    try:

        def running() -> dict[str, str]:
            out = {}
            for node, uuid in started:
                for p in _pods(lab, node):
                    ip = next((n.get("ip") for n in p.get("networks", []) if n.get("ip")), "")
                    if p.get("uuid") == uuid and p.get("state") == "running" and ip:
                        out[uuid] = ip.split("/")[0]
            return out

        assert _wait(lambda: len(running()) == 2), running()
        ips = running()
        (n1_node, n1), (n2_node, n2) = started
        b_wep = next(
            w for w in ds.list(WorkloadEndpoint) if w.spec.ip_networks[0].startswith(ips[n2] + "/")
        )
        assert _wait(lambda: _probe(lab, n2_node, n2, ips[n1]) == "timed out")
        before = ds.revision()
        dry = subprocess.run(
            [CALICOCTL, "label", "wep", b_wep.metadata.name, "network1=", "--dry-run"],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert dry.returncode == 0, dry.stderr
        flips = [ln for ln in dry.stdout.splitlines() if "denied" in ln and "allowed" in ln]
        assert len(flips) == 1 and f"({ips[n2]})" in flips[0].split("   ")[0]
        assert f"({ips[n1]})" in flips[0]
        assert ds.revision() == before  # nothing written
        assert _probe(lab, n2_node, n2, ips[n1]) == "timed out"  # nothing changed either
        real = subprocess.run(
            [CALICOCTL, "label", "wep", b_wep.metadata.name, "network1="],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert real.returncode == 0, real.stderr
        assert _wait(lambda: _probe(lab, n2_node, n2, ips[n1]) == "connected")
        assert _probe(lab, n1_node, n1, ips[n2]) == "timed out"  # the other way: no flip
    finally:
        ds.close()
        for node, uuid in started:
            lab.exec(node, ["rkt", "stop", "--force", uuid], timeout=60)
            lab.exec(node, ["rkt", "rm", uuid], timeout=60)
