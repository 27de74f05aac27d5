"""Health freshness (calico.health), rejected resources (agent.sync), the console's node
and endpoint rows, and the node service supervising real (harmless) processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from agent.status import Health
from agent.sync import ClusterCache
from calico.datastore import KV, Snapshot
from calico.health import assess, stamp
from calico.keys import RESOURCE_ROOT, endpoint_status_key
from console.model import ClusterState, NodeInfo, endpoint_rows, node_rows
from kernel.proc import proc_starttime


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def healthy_record(**over) -> dict:
    h = Health("n1", ready=True, in_sync=True, datastore_ok=True)
    return {**h.to_dict(), **over}


def test_a_fresh_healthy_record_is_healthy():
    v = assess(healthy_record())
    assert v.healthy and v.fresh and v.reason == ""


def test_a_stale_record_is_unhealthy_whatever_it_says():
    rec = healthy_record(heartbeat=stamp(time.time() - 60), stale_after=5)
    v = assess(rec)
    assert not v.healthy and not v.fresh and "stale" in v.reason


def test_a_dead_writer_is_unhealthy_and_no_stamp_is_unhealthy():
    assert "dead" in assess(healthy_record(), writer_alive=False).reason
    assert not assess({"healthy": True}).healthy
    assert not assess(None).healthy


def test_live_answers_use_the_agents_own_age():
    rec = healthy_record(heartbeat=stamp(time.time() - 3600), age=0.2)  # reader's clock off
    assert assess(rec, live=True).healthy
    assert not assess(healthy_record(age=60.0, stale_after=5), live=True).healthy


def test_not_in_sync_says_so():
    v = assess(healthy_record(in_sync=False, healthy=False))
    assert not v.healthy and v.fresh and "not in sync" in v.reason


WEP_PREFIX = f"{RESOURCE_ROOT}workloadendpoints/default/"


def kv(key: str, value: dict | str, rev: int = 5) -> KV:
    raw = value if isinstance(value, str) else json.dumps(value)
    return KV(key, raw.encode(), rev, rev)


def bad_wep(name: str) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"node": "n1", "orchestrator": "cni", "endpoint": "eth0",
                     "interfaceName": "cali123"}}  # fmt: skip


def test_a_wep_that_fails_validation_is_kept_as_rejected_with_its_node():
    cache = ClusterCache()
    key = WEP_PREFIX + "n1-cni-BAD"
    assert cache.update(RESOURCE_ROOT, Snapshot({key: kv(key, bad_wep("n1-cni-BAD"))}, 5))
    r = cache.rejected[key]
    assert (r.node, r.orchestrator, r.name, r.endpoint) == ("n1", "cni", "n1-cni-BAD", "eth0")
    assert r.reason and key not in cache.resources
    # Gone from etcd (a new snapshot without it): no longer rejected.
    assert cache.update(RESOURCE_ROOT, Snapshot({}, 6))
    assert cache.rejected == {}


def test_not_json_is_rejected_without_a_node():
    cache = ClusterCache()
    key = WEP_PREFIX + "junk"
    cache.update(RESOURCE_ROOT, Snapshot({key: kv(key, "{not json")}, 5))
    assert cache.rejected[key].node is None


def test_health_counts_and_lists_rejected():
    h = Health("n1", rejected={"/k": "illegal name"})
    d = h.to_dict()
    assert d["rejected"] == 1 and d["rejected_keys"] == [{"key": "/k", "reason": "illegal name"}]


def test_console_node_rows_stale_and_unreachable_are_unhealthy_with_why():
    state = ClusterState(nodes={
        "a": NodeInfo(reachable=True, health=healthy_record()),
        "b": NodeInfo(reachable=True, health=healthy_record(age=99.0, stale_after=5)),
        "c": NodeInfo(reachable=False, error="connection refused"),
    })  # fmt: skip
    rows = {r.cells[0]: r for r in node_rows(state)}
    assert rows["a"].cells[2] == "ready" and rows["a"].state == "running"
    assert rows["b"].cells[2] == "unhealthy" and "stale" in rows["b"].data["health"]
    assert rows["c"].cells[2] == "unreachable" and rows["c"].data["health"] == "connection refused"


def test_console_shows_an_endpoint_no_agent_can_program():
    key = endpoint_status_key("n1", "cni", "n1-cni-BAD", "eth0")
    state = ClusterState(felix={key: {"status": "error", "reason": "illegal name"}})
    (row,) = endpoint_rows(state)
    assert row.state == "error" and row.cells[:2] == ("n1-cni-BAD", "n1")
    assert row.data["reason"] == "illegal name"


# -- the node service, supervising `sleep` instead of the agent ------------------------------

SUPERVISE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from agent.node_service import Program, Supervisor
    sys.exit(Supervisor([Program("sleeper", ["sleep", "300"], restart_argv=["sleep", "301"])],
                        state_file=Path(sys.argv[1]), stable_after=60).run())
""")


def start_service(tmp_path) -> tuple[subprocess.Popen, object]:
    state = tmp_path / "state.json"
    log = open(tmp_path / "log", "wb")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISE, str(state)], stderr=log)
    return proc, state


def child(state) -> dict:
    try:
        return json.loads(state.read_text())["programs"]["sleeper"]
    except (OSError, ValueError, KeyError):
        return {}


def test_node_service_restarts_a_killed_program_and_logs_why(tmp_path):
    proc, state = start_service(tmp_path)
    try:
        first = wait_until(lambda: child(state).get("pid"), 10, "the first start")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: child(state).get("pid") not in (None, first), 10, "a restart")
        rec = child(state)
        assert rec["restarts"] == 1 and rec["last_exit"] == "killed by signal SIGKILL"
        assert "sleeper killed by signal SIGKILL" in (tmp_path / "log").read_text()
        second = rec["pid"]
        # every start after the first runs the restart argv (BIRD's -R)
        assert Path(f"/proc/{second}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"301"]
        assert rec["argv"] == ["sleep", "301"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc_starttime(second) is None
        assert child(state)["state"] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_node_service_killed_takes_its_programs_with_it(tmp_path):
    proc, state = start_service(tmp_path)
    try:
        pid = wait_until(lambda: child(state).get("pid"), 10, "the start")
        proc.kill()
        proc.wait()
        wait_until(lambda: proc_starttime(pid) is None, 10, "the program gone too")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
