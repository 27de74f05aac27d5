"""etcd stopped, then killed, for more than 10 s during pod churn (issue 12, defect 4).

A dedicated 2-node lab (its own etcd, so stopping it touches no other module): a network1
httpd on calico-01, a network1 and a network2 client on calico-02, and one TCP flow from
calico-02 to calico-01 that sends a line every 0.2 s. Then etcd is frozen (SIGSTOP) and
killed (SIGKILL) and, while it is away:

- isolation holds: network2 is still denied the httpd, network1 still reaches it, and the
  established flow keeps flowing;
- every command fails clearly: `rkt run`, `rkt rm`, `rkt gc`, `calicoctl` exit non-zero
  with one line (no traceback); `rkt rm` and `rkt gc` keep their pods to retry;
  `rkt rm --force` removes a pod anyway.

etcd is started again on its data dir and, after `rkt rm` / `rkt gc` retries, nothing is
leaked: `calicoctl ipam check` finds the force-removed pods' endpoints ("pod gone"), gc's
CNI GC and `ipam release --from-report` release them, and then the check is clean with no
endpoint left but the running pods'. Every step waits for a condition, never a fixed time.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import lab_prerequisites_missing

pytestmark = [pytest.mark.root, pytest.mark.fault]

NODES = ("calico-01", "calico-02")
CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
WEP_PREFIX = "/calico/resources/v3/projectcalico.org/workloadendpoints/"
# nc would end at the EOF of its stdin (/dev/null for a detached pod): feed it a sleep
SINK = "sleep 3600 | nc -l -p 7000"
OUTAGE = 10.0  # seconds etcd is away (stopped, then killed), at least


def conf(name: str) -> dict:
    return {"name": name, "cniVersion": "0.1.0", "type": "calico", "ipam": {"type": "calico-ipam"}}


def wait_for(what: str, check, timeout: float = 30.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def one_clear_line(proc: subprocess.CompletedProcess, what: str) -> str:
    """A failed command: non-zero exit, its stderr one line per failure, no traceback."""
    assert proc.returncode != 0, (what, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert err and "Traceback" not in err and "Traceback" not in proc.stdout, (what, err)
    return err


class Outage:
    """The lab and its etcd: freeze, kill and restart it (by the pid we started)."""

    def __init__(self, lab) -> None:
        self.lab = lab
        state = lab._read_state()["etcd"]
        self.pid = int(state["pid"])
        self.url = state["loopback_url"]
        self.log = state["log"]
        with open(f"/proc/{self.pid}/cmdline", "rb") as f:
            self.argv = [a.decode() for a in f.read().split(b"\0") if a]
        self.alive = True

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                return b'"health":"true"' in resp.read()
        except OSError:
            return False

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped by its Popen object already
            pass
        self.alive = False

    def start(self) -> None:
        """etcd again with the same arguments and data dir; recorded in the lab's state so
        `down` stops this one; returns once it answers /health."""
        from lab import fabric

        if self.alive:
            return
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid, self.alive = proc.pid, True
        state = self.lab._read_state()
        state["etcd"]["pid"] = proc.pid
        state["etcd"]["starttime"] = fabric.proc_starttime(proc.pid)
        self.lab._save(state)
        wait_for("etcd healthy again", self.healthy, timeout=30)

    def recover(self) -> None:
        """Whatever state etcd was left in (a failing test), bring it back."""
        if self.alive:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                self.alive = False
        if self.alive:
            wait_for("etcd healthy", self.healthy, timeout=30)
        else:
            self.start()


@pytest.fixture(scope="module")
def olab(tmp_path_factory):
    """A 2-node lab of this module's own, torn down even when the tests fail."""
    from lab.cluster import Lab

    reason = lab_prerequisites_missing()
    if reason:
        pytest.skip(reason)
    name = "ct" + secrets.token_hex(2)
    cluster = Lab(name, state_dir=tmp_path_factory.mktemp("outage") / name)
    try:
        cluster.up(nodes=2)
        for node in NODES:
            for net in ("network1", "network2"):
                cluster.write_net_conf(node, f"10-calico-{net}.conf", conf(net))
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def etcd(olab):
    outage = Outage(olab)
    try:
        yield outage
    finally:
        outage.recover()


def rkt(lab, node: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return lab.exec(node, ["rkt", *argv], timeout=timeout)


def calicoctl(lab, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "ETCD_ENDPOINTS": lab.etcd_endpoints}
    return subprocess.run(
        [CALICOCTL, *argv], capture_output=True, text=True, timeout=timeout, env=env
    )


def retry_until_ok(lab, node: str, *argv: str, timeout: float = 15.0) -> None:
    """Once etcd is back, the command succeeds within seconds; each failure is clear."""

    def ok() -> bool:
        proc = rkt(lab, node, *argv)
        if proc.returncode != 0:
            one_clear_line(proc, f"rkt {argv[0]} retried")
        return proc.returncode == 0

    wait_for(f"rkt {' '.join(argv)} to succeed", ok, timeout=timeout, every=0.5)


def pods(lab, node: str) -> dict[str, dict]:
    out = rkt(lab, node, "list", "--format=json")
    assert out.returncode == 0, out.stderr
    return {p["name"]: p for p in json.loads(out.stdout or "[]")}


def run_detached(lab, node: str, net: str, *app: str) -> str:
    proc = rkt(lab, node, "run", f"--net={net}", "--detach", "docker://busybox", *app)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def run_exited(lab, node: str, net: str = "network1") -> str:
    proc = rkt(lab, node, "run", f"--net={net}", "--uuid-file-save=/dev/stdout",
               "docker://busybox", "--exec=/bin/true")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    uuid = proc.stdout.strip()[:36]
    assert pods(lab, node)[uuid]["state"] == "exited"
    return uuid


def pod_ip(lab, node: str, uuid: str, net: str = "network1") -> str:
    return next(n["ip"] for n in pods(lab, node)[uuid]["networks"] if n["netName"] == net)


def connects(lab, node: str, uuid: str, ip: str, port: int = 80, timeout: float = 2.0) -> bool:
    """A new TCP connection from inside the pod's netns: True connected, False timed out."""
    pin = f"{lab.node_dir(node)}/rkt/pods/{uuid}/netns"
    code = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout({timeout})\n"
        f"try: s.connect(({ip!r},{port})); print('connected')\n"
        "except OSError as e: print(type(e).__name__)\n"
    )
    out = lab.exec(node, ["nsenter", f"--net={pin}", sys.executable, "-c", code], timeout=30)
    assert out.stdout.strip() in ("connected", "TimeoutError"), (out.stdout, out.stderr)
    return out.stdout.strip() == "connected"


def flow_lines(lab, node: str, uuid: str) -> int:
    log = Path(f"{lab.node_dir(node)}/rkt/pods/{uuid}/log")
    return len(log.read_text(errors="replace").split()) if log.exists() else 0


def endpoints_in_etcd(lab) -> list[dict]:
    from calico.datastore import Datastore

    ds = Datastore.connect(lab.etcd_endpoints)
    try:
        return [kv.json() for kv in ds.kv_list(WEP_PREFIX)[0]]
    finally:
        ds.close()


def test_etcd_stopped_and_killed_during_churn(olab, etcd, tmp_path):
    lab = olab
    one, two = NODES
    # -- before: servers, clients, a flow, and pods to churn --------------------------------
    httpd = run_detached(lab, one, "network1", "--exec=/bin/httpd", "--", "-f", "-h", "/")
    sink = run_detached(lab, one, "network1", "--exec=/bin/sh", "--", "-c", SINK)
    httpd_ip, sink_ip = pod_ip(lab, one, httpd), pod_ip(lab, one, sink)
    client1 = run_detached(lab, two, "network1", "--exec=/bin/sleep", "--", "3600")
    client2 = run_detached(lab, two, "network2", "--exec=/bin/sleep", "--", "3600")
    wait_for("network1 reaches the httpd", lambda: connects(lab, two, client1, httpd_ip))
    assert not connects(lab, two, client2, httpd_ip)
    script = f"i=0; while :; do echo $i; i=$((i+1)); sleep 0.2; done | nc {sink_ip} 7000"
    sender = run_detached(lab, two, "network1", "--exec=/bin/sh", "--", "-c", script)
    wait_for("the flow flows", lambda: flow_lines(lab, one, sink) >= 3)
    kept_rm = run_exited(lab, two)  # rm fails, kept, retried
    kept_gc = run_exited(lab, two)  # gc fails, kept as garbage, retried
    forced_one = run_exited(lab, one)  # rm --force: gone, found by ipam check
    forced_two = run_exited(lab, two)  # rm --force: gone, released by gc's CNI GC
    before = {e["spec"]["containerID"] for e in endpoints_in_etcd(lab)}
    assert {kept_rm, kept_gc, forced_one, forced_two, httpd, client1} <= before

    # -- the outage -------------------------------------------------------------------------
    started = time.monotonic()
    etcd.stop()
    try:
        err = one_clear_line(rkt(lab, two, "rm", kept_rm), "rkt rm")
        assert len(err.splitlines()) == 1 and "network1" in err and "pod kept" in err, err
        assert pods(lab, two)[kept_rm]["state"] == "deleting"

        err = one_clear_line(
            rkt(lab, two, "run", "--net=network1", "docker://busybox", "--exec=/bin/true"),
            "rkt run",
        )
        assert len(err.splitlines()) == 1 and "network1" in err, err

        err = one_clear_line(calicoctl(lab, "get", "profiles"), "calicoctl get")
        assert len(err.splitlines()) == 1 and "etcd" in err, err

        forced = rkt(lab, one, "rm", "--force", forced_one)
        assert forced.returncode == 0 and forced_one not in pods(lab, one), forced.stderr
        assert "removed anyway" in forced.stderr and "Traceback" not in forced.stderr

        # isolation holds, the established flow keeps flowing
        assert not connects(lab, two, client2, httpd_ip)
        assert connects(lab, two, client1, httpd_ip)
        n = flow_lines(lab, one, sink)
        wait_for(
            "the flow to go on while etcd is frozen", lambda n=n: flow_lines(lab, one, sink) > n
        )

        etcd.kill()
        err = one_clear_line(rkt(lab, two, "gc", "--grace-period=0s"), "rkt gc")
        assert "network1" in err and "Traceback" not in err, err
        assert pods(lab, two)[kept_gc]["state"] == "garbage"
        assert kept_rm in pods(lab, two)
        forced = rkt(lab, two, "rm", "--force", forced_two)
        assert forced.returncode == 0 and forced_two not in pods(lab, two), forced.stderr
        err = one_clear_line(calicoctl(lab, "ipam", "check"), "calicoctl ipam check")
        assert len(err.splitlines()) == 1, err

        # the outage lasts OUTAGE s; isolation and the flow are watched all along
        while time.monotonic() - started < OUTAGE:
            assert not connects(lab, two, client2, httpd_ip, timeout=1.0)
            n = flow_lines(lab, one, sink)
            wait_for(
                "the flow to go on while etcd is dead", lambda n=n: flow_lines(lab, one, sink) > n
            )
        assert time.monotonic() - started >= OUTAGE
    finally:
        etcd.recover()

    # -- after: retries, GC, check, release: nothing leaked ---------------------------------
    # A warm agent reconnects within its gRPC backoff (at most 1 s): the first retry may
    # still fail, clearly; a retry within seconds succeeds.
    retry_until_ok(lab, two, "rm", kept_rm)
    assert kept_rm not in pods(lab, two)
    report = tmp_path / "report.json"
    check = calicoctl(lab, "ipam", "check", "-o", str(report))
    assert check.returncode == 0, check.stderr
    stale = {e["containerID"]: e for e in json.loads(report.read_text())["staleEndpoints"]}
    assert set(stale) == {forced_one, forced_two, kept_gc}, check.stdout
    assert stale[forced_one]["reason"] == stale[forced_two]["reason"] == "pod gone"
    assert "teardown failed" in stale[kept_gc]["reason"]
    assert "Check complete" in check.stdout and "nodes not checked" not in check.stdout

    retry_until_ok(lab, two, "gc", "--grace-period=0s")  # kept_gc; CNI GC frees forced_two
    assert kept_gc not in pods(lab, two)
    released = calicoctl(lab, "ipam", "release", f"--from-report={report}")
    assert released.returncode == 0, released.stderr
    assert released.stdout.count("Skipped endpoint default/") == 2  # gc got there first
    assert "Removed 1 of 3 stale endpoints" in released.stdout, released.stdout

    check = calicoctl(lab, "ipam", "check")
    assert check.returncode == 0 and "Check complete; found 0 problems." in check.stdout, (
        check.stdout
    )
    left = {e["spec"]["containerID"] for e in endpoints_in_etcd(lab)}
    assert left == {httpd, sink, client1, client2, sender}, left
    assert flow_lines(lab, one, sink) > n
    for node in NODES:
        for uuid, pod in pods(lab, node).items():
            if "node" not in pod.get("app_names", []):
                rkt(lab, node, "stop", "--force", uuid)
                assert rkt(lab, node, "rm", uuid).returncode == 0
    assert rkt(lab, one, "gc").returncode == 0
    assert endpoints_in_etcd(lab) == []
    assert "found 0 problems" in calicoctl(lab, "ipam", "check").stdout


def test_defect4_rkt_rm_while_etcd_down_keeps_the_pod_until_it_can_remove_it(olab, etcd):
    """Defect 4: rm exited 0 and forgot the pod; its endpoint and address stayed for good."""
    lab, node = olab, NODES[0]
    uuid = run_exited(lab, node)
    etcd.kill()
    err = one_clear_line(rkt(lab, node, "rm", uuid), "rkt rm")
    assert len(err.splitlines()) == 1 and "'network1'" in err and "rkt rm --force" in err
    assert pods(lab, node)[uuid]["state"] == "deleting"
    again = rkt(lab, node, "rm", uuid)  # still down: still kept
    assert again.returncode != 0 and uuid in pods(lab, node)
    etcd.start()
    retry_until_ok(lab, node, "rm", uuid)
    assert uuid not in pods(lab, node)
    assert uuid not in {e["spec"]["containerID"] for e in endpoints_in_etcd(lab)}
    assert "found 0 problems" in calicoctl(lab, "ipam", "check").stdout


def test_a_node_whose_api_does_not_answer_is_not_checked(olab):
    """ipam check never calls a node clean that it could not ask."""
    from calico.datastore import Datastore

    ghost = "ct-ghost-" + secrets.token_hex(2)
    node_key = f"/calico/resources/v3/projectcalico.org/nodes/{ghost}"
    wep_key = f"{WEP_PREFIX}default/{ghost}-cni-deadbeef-eth0"
    ds = Datastore.connect(olab.etcd_endpoints)
    try:
        node = {"apiVersion": "projectcalico.org/v3", "kind": "Node",
                "metadata": {"name": ghost,
                             "annotations": {"calico-rkt.io/api": "unix:///nonexistent.sock"}},
                "spec": {}}  # fmt: skip
        wep = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
               "metadata": {"name": f"{ghost}-cni-deadbeef-eth0", "namespace": "default"},
               "spec": {"node": ghost, "orchestrator": "cni", "containerID": "deadbeef",
                        "endpoint": "eth0", "ipNetworks": []}}  # fmt: skip
        ds.kv_put(node_key, json.dumps(node))
        ds.kv_put(wep_key, json.dumps(wep))
        check = calicoctl(olab, "ipam", "check")
        assert check.returncode == 0, check.stderr
        assert f"{ghost}: 1 endpoints not checked: node API not reachable" in check.stdout
        assert "Check incomplete (1 nodes not checked)" in check.stdout
    finally:
        ds.kv_delete(wep_key)
        ds.kv_delete(node_key)
        ds.close()
