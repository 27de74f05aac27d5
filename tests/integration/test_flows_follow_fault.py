"""`calicoctl flows --follow` across an agent's kill -9, on a lab of its own.

The node service restarts the killed agent; its ring starts empty. calicoctl must say on
stderr that the node's stream broke, open it again by itself, and go on printing the new
agent's flows from where it stopped: no flow printed twice, none that the agents still
hold left out, the other node's stream untouched.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from calico.nodeapi import NodeClient
from tests.integration.conftest import dedicated_lab

pytestmark = [pytest.mark.root, pytest.mark.etcd, pytest.mark.fault, pytest.mark.slow]

CALICOCTL = str(Path(sys.executable).with_name("calicoctl"))
HTTPD = "192.168.0.100"


@pytest.fixture(scope="module")
def flab(tmp_path_factory):
    with dedicated_lab(tmp_path_factory.mktemp("flowfault"), 2, ("network1", "network2")) as lab:
        proc = lab.exec("calico-01", ["rkt", "run", "--detach", f"--net=network1:IP={HTTPD}",
                                      "docker://busybox", "--exec", "httpd", "--", "-f", "-h", "/"])  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        yield lab


def agent(lab, node: str) -> dict:
    return next(n for n in lab.status()["nodes"] if n["name"] == node)["agent"]


def denied(lab) -> float:
    """A connect from network2 on calico-02 to the httpd, which calico-01 drops; its time."""
    sock = lab.state_dir / "nodes" / "calico-02" / "agent.sock"
    t = time.time()
    with NodeClient(f"unix://{sock}") as client:
        assert client.probe(HTTPD, 80, network="network2", timeout=1.5)["result"] == "timed out"
    return t


def test_follow_reopens_a_stream_whose_agent_was_killed(flab):
    lab = flab
    denied(lab)  # the probe pod starts here: not part of what is watched
    proc = subprocess.Popen(
        [CALICOCTL, "--etcd-endpoints", lab.etcd_endpoints, "flows", "-f", "-o", "json",
         "--verdict", "DENIED", "--to-ip", HTTPD],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    errors: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [errors.put(x) for x in proc.stderr], daemon=True).start()

    def flows_after(t: float, timeout: float = 10.0) -> list[dict]:
        got, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = json.loads(lines.get(timeout=0.5))
            except queue.Empty:
                if got:
                    break
                continue
            printed.append(item)
            if item["time"] >= t:
                got.append(item)
        return got

    printed: list[dict] = []
    try:
        time.sleep(1.0)  # the streams open
        before = flows_after(denied(lab))
        assert before and {r["node"] for r in before} == {"calico-01"}

        old = agent(lab, "calico-01")
        os.kill(old["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = agent(lab, "calico-01")
            if now["healthy"] and now["pid"] not in (None, old["pid"]):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the agent did not come back: {agent(lab, 'calico-01')}")
        said = errors.get(timeout=10)
        assert said.startswith("calicoctl flows: calico-01: ") and "retrying" in said, said

        time.sleep(2.5)  # calicoctl retries every 2 s
        after = flows_after(denied(lab), timeout=15)
        assert after, "no flow from the restarted agent was streamed"
        assert {r["node"] for r in after} == {"calico-01"}
        assert proc.poll() is None
        keys = [json.dumps(r, sort_keys=True) for r in printed]
        assert len(keys) == len(set(keys)), "a flow was printed twice"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    rest = []
    while not errors.empty():
        rest.append(errors.get())
    assert all("calico-01" in line for line in rest), rest  # calico-02's stream never broke
