"""rkt end to end on real namespaces: a throwaway netns plays the node, pods run in their own.

Every test gets its own node namespace (``rkttest-<hex>``), --dir, --local-config and a
ptp + host-local network on a private 10.199.x.0/24 that exists only inside that node. The
node has a blackhole route for the subnet, so an address nobody holds is silently dropped
(as a policy drop would) instead of answered with "unreachable". Commands run as the issue
says an operator would: ``ip netns exec <node> rkt ...``. Teardown stops and removes every
pod and deletes the namespace even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

RKT = os.path.join(os.path.dirname(sys.executable), "rkt")


class Node:
    def __init__(self, tmp: Path) -> None:
        tag = os.urandom(3).hex()
        self.name = f"rkttest-{tag}"
        self.octet = 100 + int(tag, 16) % 100
        self.subnet = f"10.199.{self.octet}.0/24"
        self.free_ip = f"10.199.{self.octet}.250"
        self.dir = tmp / "dir"
        self.cfg = tmp / "cfg"
        self.leases = tmp / "leases"
        (self.cfg / "net.d").mkdir(parents=True)
        self.write_net(
            "10-ptpnet.conf",
            {
                "cniVersion": "0.1.0",
                "name": "ptpnet",
                "type": "ptp",
                "ipam": {"type": "host-local", "subnet": self.subnet, "dataDir": str(self.leases)},
            },
        )
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.sh("ip", "link", "set", "lo", "up")
        self.sh("ip", "route", "add", "blackhole", self.subnet)

    def write_net(self, fname: str, conf: dict) -> None:
        (self.cfg / "net.d" / fname).write_text(json.dumps(conf))

    def sh(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=True, **kw)

    def rkt(self, *argv: str, env=None, timeout: float = 30) -> subprocess.CompletedProcess:
        cmd = [
            "ip",
            "netns",
            "exec",
            self.name,
            RKT,
            f"--dir={self.dir}",
            f"--local-config={self.cfg}",
        ]
        return subprocess.run(
            [*cmd, *argv], capture_output=True, text=True, timeout=timeout, env=env
        )

    def pods_json(self) -> list[dict]:
        return json.loads(self.rkt("list", "--format=json").stdout)

    def links(self) -> list[str]:
        out = self.sh("ip", "-o", "link", "show", capture_output=True, text=True).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def leases_held(self) -> list[str]:
        """host-local keeps one file per allocated address (plus its lock and cursor)."""
        held = []
        for base in (self.leases, self.dir / "networks"):
            for p in base.glob("*/*"):
                if p.name != "lock" and not p.name.startswith("last_reserved_ip"):
                    held.append(str(p))
        return held

    def cleanup(self) -> None:
        if self.dir.exists():
            uuids = [p["name"] for p in self.pods_json()] if (self.dir / "pods").exists() else []
            if uuids:
                self.rkt("stop", "--force", *uuids)
                self.rkt("rm", *uuids)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    try:
        yield n
    finally:
        n.cleanup()


def pod_ip(node: Node, uuid: str, net: str = "ptpnet") -> str:
    pod = next(p for p in node.pods_json() if p["name"] == uuid)
    return next(n["ip"] for n in pod["networks"] if n["netName"] == net)


def run_httpd(node: Node) -> tuple[str, str]:
    r = node.rkt(
        "run",
        "--detach",
        "--net=ptpnet",
        "docker://busybox",
        "--exec",
        "httpd",
        "--",
        "-f",
        "-h",
        "/",
    )
    assert r.returncode == 0, r.stderr
    uuid = r.stdout.strip()
    return uuid, pod_ip(node, uuid)


def assert_one_line_error(r: subprocess.CompletedProcess) -> None:
    assert r.returncode != 0
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_tutorial_flow(node):
    uuid, ip = run_httpd(node)
    assert ip.startswith(f"10.199.{node.octet}.")

    # Allowed: the download arrives on rkt's stdout (wget's own lines are on it too).
    r = node.rkt(
        "run", "--net=ptpnet", "docker://busybox", "--exec=/bin/wget", "--",
        "-T", "3", f"http://{ip}/etc/passwd", "-O", "-",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "root:x:0:0:root:/root:/bin/sh" in r.stdout
    assert f"Connecting to {ip}" in r.stdout

    # Nobody answers: busybox's own timeout message after ~3 s, non-zero exit.
    t0 = time.monotonic()
    r = node.rkt(
        "run", "--net=ptpnet", "docker://busybox", "--exec=/bin/wget", "--",
        "-T", "3", f"http://{node.free_ip}/etc/passwd",
    )  # fmt: skip
    took = time.monotonic() - t0
    assert r.returncode != 0
    assert r.stdout.strip().splitlines()[-1] == "wget: download timed out"
    assert "Terminated" not in r.stdout
    assert 2.5 < took < 6, took

    # rkt list: tab-separated, httpd running, the two wget pods exited, default-restricted too.
    listing = node.rkt("list").stdout.splitlines()
    assert listing[0].split("\t")[0] == "UUID"
    rows = [[c for c in line.split("\t") if c] for line in listing[1:]]
    assert len(rows) == 3
    states = {row[0]: row[3] for row in rows}
    assert states[uuid[:8]] == "running"
    assert sorted(states.values()) == ["exited", "exited", "running"]
    httpd_row = next(r for r in rows if r[0] == uuid[:8])
    assert httpd_row[1] == "busybox"
    assert httpd_row[-1].startswith(f"ptpnet:ip4={ip}, default-restricted:ip4=172.31.")

    st = node.rkt("status", uuid[:8]).stdout.splitlines()
    assert "state=running" in st and "exited=false" in st

    # The tutorial's cleanup.
    assert node.rkt("stop", "--force", uuid[:8]).returncode == 0
    st = node.rkt("status", uuid[:8]).stdout.splitlines()
    assert "state=exited" in st and "app-busybox=137" in st
    clean = subprocess.run(
        f"ip netns exec {node.name} {RKT} --dir={node.dir} --local-config={node.cfg} list --no-legend"
        f" | cut -f1 | xargs ip netns exec {node.name} {RKT} --dir={node.dir} --local-config={node.cfg} rm",
        shell=True, capture_output=True, text=True,
    )  # fmt: skip
    assert clean.returncode == 0, clean.stderr
    assert os.listdir(node.dir / "pods") == []
    assert node.links() == ["lo"]
    assert node.leases_held() == []


def test_debug_says_when_each_step_of_a_run_was_done(node):
    """`rkt --debug run` prints each step on stderr, in order and with growing times, and
    still prints only the UUID on stdout; without --debug, a run's stderr stays empty."""
    r = node.rkt(
        "--debug", "run", "--detach", "--net=ptpnet", "docker://busybox",
        "--exec", "httpd", "--", "-f", "-h", "/",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (uuid,) = r.stdout.split()
    pod = json.loads((node.dir / "pods" / uuid / "pod.json").read_text())
    ips = [n["ip4"] for n in pod["networks"]]
    lines = r.stderr.splitlines()
    assert all(line.startswith("rkt: debug: +") for line in lines), lines
    times = [float(line.split("+", 1)[1].split(" ms ", 1)[0]) for line in lines]
    steps = [line.split(" ms ", 1)[1] for line in lines]
    assert steps[0].startswith("rkt loaded at monotonic ")
    assert steps[1:] == [
        "planned: image registry-1.docker.io/library/busybox:latest;"
        " networks: ptpnet (eth0), default-restricted (eth1)",
        f"pod {uuid} recorded (prepared)",
        "network namespace made",
        f"network ptpnet added (eth0: {ips[0]})",
        f"network default-restricted added (eth1: {ips[1]})",
        f"recorded running (app pid {pod['pid']})",
        "app started: httpd exec'd",
    ]
    assert times == sorted(times) and times[-1] < 10_000
    quiet = node.rkt("run", "--net=ptpnet", "docker://busybox", "--exec=/bin/true")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_exit_code_and_output_streams(node, tmp_path):
    uuid_file = tmp_path / "uuid"
    r = node.rkt(
        "run", "--net=none", f"--uuid-file-save={uuid_file}", "docker://busybox", "--exec=/bin/sh",
        "--", "-c", "echo out; echo err >&2; exit 7",
    )  # fmt: skip
    assert r.returncode == 7
    assert r.stdout.splitlines() == ["out", "err"]  # the app's stderr goes to rkt's stdout
    assert r.stderr == ""
    (pod,) = node.pods_json()
    assert uuid_file.read_text() == pod["name"]
    assert pod["state"] == "exited" and pod["apps"][0]["exit_code"] == 7
    # The pod writes into its own overlay, never into the image.
    r = node.rkt(
        "run",
        "--net=none",
        "docker://busybox",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo x > /etc/passwd",
    )
    assert r.returncode == 0
    image_passwd = node.dir / "images" / "busybox@latest" / "rootfs" / "etc" / "passwd"
    assert "root:x:0:0" in image_passwd.read_text()


def root_ns_rkt(node: Node) -> list[str]:
    """rkt in the node's netns but the root mount namespace (like a lab node's persistent
    one), so that a pod's netns pin stays visible to a later `rkt rm`."""
    return ["nsenter", f"--net=/run/netns/{node.name}", RKT, f"--dir={node.dir}",
            f"--local-config={node.cfg}"]  # fmt: skip


def assert_httpd_answers(node: Node, pod: dict) -> None:
    """wget from another pod gets a file from the pod's httpd. "running" is recorded at the
    app's exec, a moment before httpd listens: a refused connection is tried again."""
    for _ in range(20):
        r = node.rkt("run", "--net=ptpnet", "docker://busybox", "--exec=/bin/wget", "--",
                     "-q", "-T", "3", "-O", "-", f"http://{pod['networks'][0]['ip']}/etc/group")  # fmt: skip
        if r.returncode == 0 or "refused" not in r.stdout + r.stderr:
            break
        time.sleep(0.1)
    assert r.returncode == 0 and "root:x:0:" in r.stdout


def assert_stop_and_rm_leave_nothing(node: Node, base: list[str], pod: dict) -> None:
    """`rkt stop` the pod, `rkt rm` every pod: no pod dir (and so no pin), link or lease."""
    assert subprocess.run([*base, "stop", pod["name"][:8]], capture_output=True).returncode == 0
    uuids = [p["name"] for p in node.pods_json()]
    r = subprocess.run([*base, "rm", *uuids], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (node.dir / "pods" / pod["name"]).exists()
    assert node.links() == ["lo"]
    assert node.leases_held() == []


def test_pod_survives_the_cli_and_rm_deletes_pinned_netns(node):
    """Foreground CLI killed: the supervisor keeps the pod, and `rkt rm` unmounts its pin."""
    base = root_ns_rkt(node)
    cli = subprocess.Popen(
        [*base, "run", "--net=ptpnet", "docker://busybox", "--exec", "httpd", "--", "-f", "-h", "/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not [p for p in node.pods_json() if p["state"] == "running"]:
            assert time.monotonic() < deadline and cli.poll() is None
            time.sleep(0.02)
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
        (pod,) = node.pods_json()
        assert pod["state"] == "running"
        pin = node.dir / "pods" / pod["name"] / "netns"
        assert os.stat(pin).st_dev != os.stat(pin.parent).st_dev  # a live netns mount
        assert_httpd_answers(node, pod)
        assert_stop_and_rm_leave_nothing(node, base, pod)
        assert not pin.exists()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_a_caller_that_stops_reading_gets_an_error_and_a_pod_that_works(node):
    """`rkt run --detach` whose stdout is closed before the UUID is written says so on stderr
    and exits 254; the pod it started stays running, supervised and answering, for `rkt rm`
    to remove like any other. (It used to wait for the app forever; interrupted between go
    and the app's start, its undo left the app running outside any pod.)"""
    base = root_ns_rkt(node)
    cli = subprocess.Popen(
        [*base, "run", "--detach", "--net=ptpnet", "docker://busybox",
         "--exec", "httpd", "--", "-f", "-h", "/"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        cli.stdout.close()  # rkt writes the UUID ~40 ms later, once the app has started
        assert cli.wait(timeout=15) == 254
        (pod,) = node.pods_json()
        assert cli.stderr.read() == (
            f"rkt: pod {pod['name']} is running, but stdout is closed: its UUID is not sent\n"
        )
        assert pod["state"] == "running"
        assert_httpd_answers(node, pod)
        assert_stop_and_rm_leave_nothing(node, base, pod)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        cli.stderr.close()


def test_bad_inputs_leave_nothing(node):
    cases = [
        ("run", "--net=nosuchnet", "docker://busybox"),
        ("run", "--net=ptpnet:IP", "docker://busybox"),
        ("run", "--net=a:b:c", "docker://busybox"),
        ("run", "--net=ptpnet", "docker://nosuchimage"),
        ("status", "deadbeef"),
        ("stop", "deadbeef"),
        ("rm", "deadbeef"),
    ]
    for argv in cases:
        assert_one_line_error(node.rkt(*argv))
    pods = node.dir / "pods"
    assert not pods.exists() or os.listdir(pods) == []
    assert node.links() == ["lo"]


def test_failed_add_tears_down_what_was_added(node, tmp_path):
    """ptpnet is added, then the next network's plugin fails: ptpnet is deleted again."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    bad = plugins / "failing"
    bad.write_text(
        '#!/bin/sh\ncat >/dev/null\n'
        'echo \'{"cniVersion":"0.1.0","code":11,"msg":"no addresses left","details":"pool 10.0.0.0/30"}\'\n'
        "exit 1\n"
    )  # fmt: skip
    bad.chmod(0o755)
    node.write_net("20-bad.conf", {"cniVersion": "0.1.0", "name": "badnet", "type": "failing"})
    env = dict(os.environ, CNI_PATH=f"{plugins}:/usr/lib/cni")
    r = node.rkt("run", "--net=ptpnet,badnet", "docker://busybox", "--exec=/bin/true", env=env)
    assert_one_line_error(r)
    assert "no addresses left: pool 10.0.0.0/30" in r.stderr
    assert os.listdir(node.dir / "pods") == []
    assert node.links() == ["lo"]
    assert node.leases_held() == []
    # The supervisor and the app (forked before the ADDs, waiting for go) are gone too.
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, str(node.dir))]


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def test_ambiguous_prefix_and_gc(node):
    uuids = []
    for _ in range(3):
        r = node.rkt("run", "--net=ptpnet", "docker://busybox", "--exec=/bin/true")
        assert r.returncode == 0, r.stderr
    uuids = [p["name"] for p in node.pods_json()]
    common = os.path.commonprefix(uuids)
    if common:  # random UUIDs rarely share a prefix; when they do it must be refused
        assert_one_line_error(node.rkt("rm", common))
    assert node.rkt("gc", "--grace-period=30m").returncode == 0
    assert {p["state"] for p in node.pods_json()} == {"garbage"}
    assert node.leases_held() == []  # gc tore the networks down
    assert node.rkt("gc", "--grace-period=0s").returncode == 0
    assert node.pods_json() == []
    assert shutil.which("ip")
