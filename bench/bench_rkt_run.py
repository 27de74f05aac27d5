#!/usr/bin/env python3
"""Benchmark: `rkt run --detach` of an httpd pod until its first TCP answer on port 80.

Prints a markdown table: the p50 over N pods beside a reference measured in the same run -
`ip netns add` + the reference `ptp` ADD (host-local IPAM) + one process start, i.e. the
kernel and plugin work no runtime can avoid - and their ratio. Budgets: p50 <= 150 ms, and
(issue 15) p50 <= 3x the reference. A pod on a user network also joins rkt's
`default-restricted` network, so rkt runs two ptp ADDs where the reference runs one.

Everything happens inside a throwaway network namespace acting as the node (name prefix
`rktbench-`), with a temporary --dir/--local-config and a private 10.199.x.0/24 ptp network;
the script re-executes itself inside that namespace (`ip netns exec`) with a private tmpfs
on /run/netns, so the reference's `ip netns add` entries never appear on the host. All pods,
namespaces and files are removed at the end, also on failure. Needs root.

Then `--trace-pods` more pods run with `rkt --debug`, whose lines time each step of the run
(planned, recorded, netns, each ADD, recorded running, app exec'd); a second table gives
when each was reached and what it took, from the spawn to the first TCP answer.

    python bench/bench_rkt_run.py [--pods 25] [--trace-pods 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REF_PLUGIN_DIR = "/usr/lib/cni"
BUDGET_MS = 150.0
BUDGET_RATIO = 3.0


def rkt_cmd() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "rkt")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "rkt.cli"]


def wait_tcp(ip: str, port: int, deadline: float) -> None:
    """Connect until the pod answers (a refused connect means httpd is not listening yet)."""
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            s.connect((ip, port))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ip}:{port} did not answer") from None
            time.sleep(0.0005)
        finally:
            s.close()


class PodRun(NamedTuple):
    spawned: float  # time.monotonic() just before rkt was spawned
    exited_ms: float  # rkt exited, its UUID read
    answered_ms: float  # the pod's httpd accepted a TCP connection
    stderr: str


def run_httpd_pod(rkt: list[str], data: str) -> PodRun:
    """`rkt run --detach` of an httpd pod, timed from the spawn to rkt's exit and to the
    pod's first TCP answer on port 80."""
    t0 = time.monotonic()
    out = subprocess.run(
        [*rkt, "run", "--detach", "--net=benchnet", "docker://busybox",
         "--exec", "httpd", "--", "-f", "-h", "/"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    exited = time.monotonic()
    with open(os.path.join(data, "pods", out.stdout.strip(), "pod.json")) as f:
        ip = json.load(f)["networks"][0]["ip4"]
    wait_tcp(ip, 80, time.monotonic() + 5)
    answered = time.monotonic()
    return PodRun(t0, (exited - t0) * 1000, (answered - t0) * 1000, out.stderr)


def pct(values: list[float], p: float) -> float:
    vs = sorted(values)
    return vs[min(len(vs) - 1, int(round(p / 100 * (len(vs) - 1))))]


def inner(args: argparse.Namespace) -> int:
    """Runs inside the node namespace (and a private mount namespace from `ip netns exec`)."""
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "rktbench-netns", "/run/netns"], check=True
    )
    work = args.work
    cfg, data = os.path.join(work, "cfg"), os.path.join(work, "dir")
    rkt = [*rkt_cmd(), f"--dir={data}", f"--local-config={cfg}"]
    subnet = f"10.199.{args.octet}.0/24"
    conf = {
        "cniVersion": "0.1.0",
        "name": "benchnet",
        "type": "ptp",
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": os.path.join(work, "leases")},
    }
    os.makedirs(os.path.join(cfg, "net.d"))
    with open(os.path.join(cfg, "net.d", "10-bench.conf"), "w") as f:
        json.dump(conf, f)
    ref_conf = dict(
        conf, name="benchref", ipam=dict(conf["ipam"], subnet=f"10.198.{args.octet}.0/24")
    )
    ref_bytes = json.dumps(ref_conf).encode()
    # rkt's second network (default-restricted), done the reference way: a second ptp ADD
    # into the same namespace, timed apart so the reference stays as it was.
    ref2_bytes = json.dumps(
        dict(conf, name="benchref2", ipam=dict(conf["ipam"], subnet=f"10.196.{args.octet}.0/24"))
    ).encode()
    subprocess.run([*rkt, "image", "import", "docker://busybox"], check=True, capture_output=True)

    run_ms: list[float] = []
    ref_ms: list[float] = []
    traces: list[dict[str, float]] = []
    parts: dict[str, list[float]] = {"netns": [], "ptp": [], "proc": [], "ptp2": []}
    ref_netns: list[str] = []
    try:
        for i in range(args.pods):
            # -- the runtime --
            run = run_httpd_pod(rkt, data)
            run_ms.append(run.answered_ms)

            # -- the reference: ip netns add + ptp ADD + a process start --
            name = f"rktbench-ref{i}"
            t1 = time.perf_counter()
            subprocess.run(["ip", "netns", "add", name], check=True)
            t2 = time.perf_counter()
            ref_netns.append(name)
            env = dict(
                os.environ,
                CNI_COMMAND="ADD",
                CNI_CONTAINERID=f"rktbench{i}",
                CNI_NETNS=f"/run/netns/{name}",
                CNI_IFNAME="eth0",
                CNI_PATH=REF_PLUGIN_DIR,
            )
            subprocess.run(
                [f"{REF_PLUGIN_DIR}/ptp"], input=ref_bytes, env=env, check=True, capture_output=True
            )
            t3 = time.perf_counter()
            subprocess.run(["/bin/true"], check=True)
            t4 = time.perf_counter()
            env2 = dict(env, CNI_IFNAME="eth1")
            subprocess.run(
                [f"{REF_PLUGIN_DIR}/ptp"],
                input=ref2_bytes,
                env=env2,
                check=True,
                capture_output=True,
            )
            parts["ptp2"].append((time.perf_counter() - t4) * 1000)
            parts["netns"].append((t2 - t1) * 1000)
            parts["ptp"].append((t3 - t2) * 1000)
            parts["proc"].append((t4 - t3) * 1000)
            ref_ms.append((t4 - t1) * 1000)

        # -- where a run's milliseconds go: the same run with --debug, on more pods --
        for _ in range(args.trace_pods):
            run = run_httpd_pod([*rkt, "--debug"], data)
            marks = debug_marks(run.stderr, run.spawned)
            marks["rkt exited (the caller has the UUID)"] = run.exited_ms
            marks["first TCP answer"] = run.answered_ms
            traces.append(marks)
    finally:
        listed = subprocess.run(
            [*rkt, "list", "--no-legend", "--full"], capture_output=True, text=True
        )
        uuids = [line.split("\t")[0] for line in listed.stdout.splitlines() if line.strip()]
        if uuids:
            subprocess.run([*rkt, "stop", "--force", *uuids], capture_output=True)
            subprocess.run([*rkt, "rm", *uuids], capture_output=True)
        for i, name in enumerate(ref_netns):
            env = dict(
                os.environ,
                CNI_COMMAND="DEL",
                CNI_CONTAINERID=f"rktbench{i}",
                CNI_NETNS=f"/run/netns/{name}",
                CNI_IFNAME="eth0",
                CNI_PATH=REF_PLUGIN_DIR,
            )
            subprocess.run([f"{REF_PLUGIN_DIR}/ptp"], input=ref_bytes, env=env, capture_output=True)
            subprocess.run(
                [f"{REF_PLUGIN_DIR}/ptp"], input=ref2_bytes, env=dict(env, CNI_IFNAME="eth1"),
                capture_output=True,
            )  # fmt: skip
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    p50_run, p50_ref = statistics.median(run_ms), statistics.median(ref_ms)
    print(f"### `rkt run --detach` httpd pod -> first TCP answer ({args.pods} pods)\n")
    print("| measurement | p50 ms | p90 ms | min ms |")
    print("|---|---:|---:|---:|")
    print(
        f"| rkt run --detach -> TCP answer on :80 | {p50_run:.1f} | {pct(run_ms, 90):.1f} | {min(run_ms):.1f} |"
    )
    print(
        f"| reference: ip netns add + ptp ADD + process start | {p50_ref:.1f} | {pct(ref_ms, 90):.1f} | {min(ref_ms):.1f} |"
    )
    print(f"| &nbsp;&nbsp;ip netns add | {statistics.median(parts['netns']):.1f} | | |")
    print(f"| &nbsp;&nbsp;ptp + host-local ADD | {statistics.median(parts['ptp']):.1f} | | |")
    print(f"| &nbsp;&nbsp;process start (/bin/true) | {statistics.median(parts['proc']):.1f} | | |")
    ref2 = [r + p for r, p in zip(ref_ms, parts["ptp2"], strict=True)]
    p50_ref2 = statistics.median(ref2)
    print(
        f"| reference + a second ptp ADD (rkt's two networks) | {p50_ref2:.1f} | "
        f"{pct(ref2, 90):.1f} | {min(ref2):.1f} |"
    )
    ratio = p50_run / p50_ref
    print(f"\nratio rkt / reference (p50): **{ratio:.2f}x**; "
          f"budget p50 <= {BUDGET_MS:.0f} ms: **{'met' if p50_run <= BUDGET_MS else 'MISSED'}**; "
          f"budget <= {BUDGET_RATIO:.0f}x: **{'met' if ratio <= BUDGET_RATIO else 'MISSED'}**; "
          f"against the two-ADD reference: **{p50_run / p50_ref2:.2f}x**")  # fmt: skip
    if traces:
        print_steps(traces)
    return 0


def debug_marks(stderr: str, t0: float) -> dict[str, float]:
    """`rkt --debug`'s steps as ms since the caller's t0 (time.monotonic() before the
    spawn): its first line says when rkt's clock started, so the interpreter's start counts
    too. Variable parts (the UUID, addresses, the pid) are dropped from the step names."""
    marks: dict[str, float] = {}
    loaded_at = None
    for line in stderr.splitlines():
        m = re.match(r"rkt: debug: \+([0-9.]+) ms (.*)$", line)
        if not m:
            continue
        ms, step = float(m.group(1)), m.group(2)
        loaded = re.match(r"rkt loaded at monotonic ([0-9.]+) s", step)
        if loaded:
            loaded_at = (float(loaded.group(1)) - t0) * 1000
            marks["interpreter started, rkt's code loaded"] = loaded_at
            continue
        if loaded_at is None:
            continue
        step = re.sub(r"^pod \S+ ", "pod ", step)
        step = re.sub(r" \((eth\d+): [^)]*\)$", r" (\1)", step)
        step = re.sub(r" \(app pid \d+\)$", "", step)
        step = re.sub(r"^planned: .*", "planned (imports, net.d, the image)", step)
        marks[step] = loaded_at + ms
    return marks


def print_steps(traces: list[dict[str, float]]) -> None:
    """A run's steps in order: when each was reached (p50 over the traced pods) and what
    it took after the one before."""
    steps = [s for s in traces[0] if all(s in t for t in traces)]
    steps.sort(key=lambda s: statistics.median(t[s] for t in traces))
    print(f"\n### Where a run's milliseconds go (`rkt --debug run`, {len(traces)} more pods)\n")
    print("| step | reached at, p50 ms | took, p50 ms |")
    print("|---|---:|---:|")
    before = None
    for step in steps:
        at = statistics.median(t[step] for t in traces)
        took = statistics.median(t[step] - (t[before] if before else 0.0) for t in traces)
        print(f"| {step} | {at:.1f} | {took:.1f} |")
        before = step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=25)
    ap.add_argument("--trace-pods", type=int, default=15, help="more pods, run with --debug")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--octet", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        return inner(args)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    # An installed package has bytecode; this checkout may run with PYTHONDONTWRITEBYTECODE.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            os.path.join(REPO, "agent"),
            os.path.join(REPO, "kernel"),
            os.path.join(REPO, "rkt"),
        ],
        capture_output=True,
    )
    tag = os.urandom(3).hex()
    node = f"rktbench-{tag}"
    work = tempfile.mkdtemp(prefix=f"rktbench-{tag}-")
    os.makedirs("/run/netns", exist_ok=True)
    try:
        subprocess.run(["ip", "netns", "add", node], check=True)
        subprocess.run(["ip", "netns", "exec", node, "ip", "link", "set", "lo", "up"], check=True)
        octet = 100 + int(tag, 16) % 100
        return subprocess.run(
            ["ip", "netns", "exec", node, sys.executable, os.path.abspath(__file__), "--inner",
             f"--pods={args.pods}", f"--trace-pods={args.trace_pods}", f"--work={work}",
             f"--octet={octet}"],
            cwd=REPO,
        ).returncode  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", node], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
