"""calicoctl node run/status: the pure parts (the command line, judging a start-up, the
peers table). The commands themselves run on lab nodes in tests/integration/test_bgp.py
and through every `calico-lab up`."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico.bgp import PeerStatus
from calico.health import Verdict
from calicoctl.cli import main
from calicoctl.node_commands import (
    RunOptions,
    cni_bin_dir,
    judge_start,
    render_peers,
    service_argv,
)
from lab.topology import Options, TopologyError


def opts(**kw) -> RunOptions:
    base = dict(
        name="calico-01", ip="autodetect", method="first-found", as_number=None,
        backend="bird", cni_bin_dir="/opt/cni/bin", run_dir=Path("/run/c1"),
    )  # fmt: skip
    return RunOptions(**{**base, **kw})


def test_the_service_is_the_rkt_pod_node_on_the_host_network() -> None:
    argv = service_argv(opts(as_number="65001"), "/venv/bin/calico-node")
    assert argv[:4] == ["run", "--detach", "--net=host", "--uuid-file-save=/run/c1/node.uuid"]
    assert argv[4:7] == ["calico/node", "--exec=/venv/bin/calico-node", "--"]
    flags = dict(zip(argv[7::2], argv[8::2], strict=True))
    assert flags == {
        "--name": "calico-01", "--ip": "autodetect", "--ip-autodetection-method": "first-found",
        "--backend": "bird", "--run-dir": "/run/c1", "--cni-bin-dir": "/opt/cni/bin",
        "--state-file": "/run/c1/node-service.json", "--as": "65001",
    }  # fmt: skip
    assert "--as" not in service_argv(opts(), "calico-node")


def test_the_plugins_go_where_the_runtime_looks() -> None:
    assert cni_bin_dir("/x", {"CNI_PATH": "/a:/b"}) == "/x"
    assert cni_bin_dir(None, {"CNI_PATH": "/a:/b"}) == "/a"
    assert cni_bin_dir(None, {}) == "/opt/cni/bin"


def healthy() -> Verdict:
    return Verdict(True, True, 0.5, "healthy")


@pytest.mark.parametrize(
    ("state", "service", "agent", "verdict", "done", "error"),
    [
        ({}, False, False, None, False, None),  # not written yet: wait
        ({"phase": "starting", "pid": 1}, True, False, None, False, None),
        ({"phase": "failed", "error": "no IPv4 address found"}, False, False, None,
         False, "no IPv4 address found"),
        ({"phase": "running", "pid": 1}, False, False, None, False,
         "calico-node exited during start-up (see rkt status)"),
        ({"phase": "running", "pid": 1}, True, False, None, False, None),
        ({"phase": "running", "pid": 1}, True, True, Verdict(False, False, None, "stale"),
         False, None),
        ({"phase": "running", "pid": 1}, True, True, healthy(), True, None),
    ],
)  # fmt: skip
def test_judging_a_start_up(state, service, agent, verdict, done, error) -> None:
    p = judge_start(state, service, agent, verdict)
    assert (p.done, p.error) == (done, error)


def test_the_peers_table_is_calicos() -> None:
    peers = [
        PeerStatus("10.213.0.12", "node-to-node mesh", "up", "14:52:38.311", "Established", "m"),
        PeerStatus("10.254.254.254", "node specific", "start", "14:53:00", "Active", "n"),
    ]
    lines = render_peers(peers).splitlines()
    assert lines[0] == lines[2] == lines[-1] and set(lines[0]) == {"+", "-"}
    assert [c.strip() for c in lines[1].strip("|").split("|")] == [
        "PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO",
    ]  # fmt: skip
    assert lines[3].split("|")[1:-1] == [
        " 10.213.0.12    ", " node-to-node mesh ", " up    ", " 14:52:38.311 ", " Established ",
    ]  # fmt: skip
    assert len({len(line) for line in lines}) == 1


def test_node_run_refuses_without_root(monkeypatch, capsys) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["node", "run", "--name", "x"]) == 1
    assert capsys.readouterr().err == "calicoctl node run must be run as root\n"
    assert main(["node"]) == 1
    assert "a subcommand is required (run, status)" in capsys.readouterr().err


def test_node_status_says_when_nothing_runs(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("CALICO_RUN_DIR", str(tmp_path))
    assert main(["node", "status"]) == 1
    assert capsys.readouterr().out == "calico-node is not running on this host.\n"


def test_direct_routes_only_on_a_flat_lab() -> None:
    Options("flat", backend="direct").check(2)
    with pytest.raises(TopologyError, match="only works on one L2 segment"):
        Options("routed", tor_bgp=True, backend="direct").check(3)
    with pytest.raises(TopologyError, match="--backend must be one of bird, direct"):
        Options(backend="gobgp").check(2)
