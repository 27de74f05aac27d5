"""`calicoctl node run` on a lab node, as an operator would run it on a host: run again it
changes nothing; every missing prerequisite is one line, exit status 1, and leaves nothing
behind (no pod, no Node resource). The happy path is every `calico-lab up` (the lab starts
its nodes with exactly this command); the BGP side is tests/integration/test_bgp.py."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_tutorial import on, rkt_rows, root_run

pytestmark = [pytest.mark.root, pytest.mark.lab]


def service_pid(lab, node: str) -> int:
    return json.loads((lab.node_dir(node) / "node-service.json").read_text())["pid"]


def test_run_again_changes_nothing(lab) -> None:
    before = service_pid(lab, "calico-01")
    proc = on(lab, "calico-01", "calicoctl", "node", "run", "--name", "calico-01")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"calico-node is already running on calico-01 (pid {before}")
    assert service_pid(lab, "calico-01") == before
    assert [r[1] for r in rkt_rows(lab, "calico-01")].count("node") == 1


def test_another_name_on_a_host_that_runs_one_is_refused(lab) -> None:
    proc = on(lab, "calico-01", "calicoctl", "node", "run", "--name", "calico-99")
    assert proc.returncode == 1
    assert proc.stderr.startswith("calicoctl node run: this host already runs calico-node as")


@pytest.mark.parametrize(
    ("flags", "env", "says"),
    [
        (["--ip-autodetection-method", "interface=nosuch.*"], {},
         "calicoctl node run: ghost-1: no interface matching 'nosuch.*' has an IPv4 address"),
        (["--ip", "300.1.1.1/24"], {},
         "calicoctl node run: ghost-1: --ip '300.1.1.1/24' is not an IPv4 address/prefix"),
        ([], {"ETCD_ENDPOINTS": "http://127.0.0.1:1"}, "etcd unavailable at http://127.0.0.1:1"),
    ],
    ids=["no-address-found", "bad-address", "no-etcd"],
)  # fmt: skip
def test_a_missing_prerequisite_is_one_line_and_leaves_nothing(
    lab, tmp_path, flags, env, says
) -> None:
    """A second node service tried on calico-01 with its own run dir, so only the
    prerequisite stops it."""
    pods_before = {r[0] for r in rkt_rows(lab, "calico-01")}
    argv = ["env", f"CALICO_RUN_DIR={tmp_path}", *(f"{k}={v}" for k, v in env.items()),
            "calicoctl", "node", "run", "--name", "ghost-1", "--wait", "20", *flags]  # fmt: skip
    proc = on(lab, "calico-01", *argv)
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.startswith(says), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert {r[0] for r in rkt_rows(lab, "calico-01")} == pods_before  # the failed pod is gone
    got = root_run(lab, "calicoctl", "get", "node", "ghost-1")
    assert got.returncode == 1 and "resource does not exist: Node(ghost-1)" in got.stderr, got
