"""Benchmark: calicoctl listings and the PrefixSyncer watch, beside etcdctl doing the same.

    python bench/bench_datastore.py [--endpoints N] [--runs 5]

Starts its own etcd in a temporary directory, writes N (default 10,000) WorkloadEndpoints
shaped as the CNI plugin writes them, and measures in the same run:

1. `calicoctl get profiles` (2 profiles: the start-up floor, issue budget <= 3x) and
   `calicoctl get workloadendpoints` wall time (subprocess, p50) against `etcdctl get
   --prefix <the same prefix> -w json` (p50): the full CLI path, start-up included. The two
   commands' runs alternate, so load from elsewhere on the machine hits both alike; each
   gets one untimed run first. Python runs with its bytecode cache, as a pip-installed
   calicoctl does (PYTHONDONTWRITEBYTECODE, if set, is dropped for the measured commands:
   with it every run compiles calicoctl's modules again).
2. Watch throughput: events/s the PrefixSyncer delivers while one writer puts N keys as
   fast as it can (transactions of 100 puts), against `etcdctl watch --prefix` consuming
   the same N events; time runs from the first put to the N-th event received.

Prints a markdown table: | measure | calico-rkt | etcdctl | ratio | (ratio = calico-rkt
time / etcdctl time, or etcdctl rate / calico-rkt rate: above 1 means calico-rkt is slower).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from calico.datastore import Change, Datastore, PrefixSyncer, SyncStatus  # noqa: E402
from calico.keys import key_of, kind_prefix  # noqa: E402
from calico.resources import load  # noqa: E402
from lab.etcd import local_etcd  # noqa: E402
from plugin.veth import host_ifname  # noqa: E402

NODES = [f"calico-{i:02d}" for i in range(1, 11)]
BATCH = 100  # puts per transaction (etcd's default --max-txn-ops is 128)


def calicoctl_command() -> list[str]:
    script = Path(sys.executable).parent / "calicoctl"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "calicoctl"]


def workload_endpoint(i: int) -> dict:
    """The i-th endpoint as the calico CNI plugin creates it for a rkt pod."""
    node = NODES[i % len(NODES)]
    container_id = hashlib.sha256(f"pod-{i}".encode()).hexdigest()  # 64 hex, like rkt's
    network = f"network{i % 3 + 1}"
    ip = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            # Calico's non-Kubernetes name: dashes in the node name doubled
            "name": f"{node.replace('-', '--')}-cni-{container_id}-eth0",
            "namespace": "default",
            "labels": {
                "projectcalico.org/namespace": "default",
                "projectcalico.org/orchestrator": "cni",
            },
            "uid": str(hashlib.md5(container_id.encode()).hexdigest()),
            "creationTimestamp": "2024-05-01T12:00:00Z",
        },
        "spec": {
            "orchestrator": "cni",
            "workload": container_id,
            "node": node,
            "containerID": container_id,
            "endpoint": "eth0",
            "interfaceName": host_ifname(container_id, "eth0"),
            "mac": f"2a:5f:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            "ipNetworks": [f"{ip}/32"],
            "profiles": [network],
        },
    }


def put_batched(ds: Datastore, items: list[tuple[str, str]]) -> None:
    ops = ds.ops
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        ds.kv_txn([], [ops.put(k, v) for k, v in chunk])


def write_endpoints(ds: Datastore, n: int) -> None:
    items = []
    for i in range(n):
        res = load(workload_endpoint(i))  # validated, as the plugin's write would be
        items.append((key_of(res), ds._encode(res)))
    put_batched(ds, items)


def wall(cmd: list[str], env: dict[str, str], check_lines: int = 0) -> float:
    """Seconds one run of `cmd` takes (it must succeed and print `check_lines` lines)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed: {proc.stderr.decode(errors='replace')[-500:]}")
    lines = proc.stdout.count(b"\n")
    if check_lines and lines < check_lines:
        raise SystemExit(f"{cmd} printed {lines} lines, want {check_lines}")
    return took


def p50_pair(
    ours: list[str], theirs: list[str], env: dict[str, str], runs: int, lines: tuple[int, int]
) -> tuple[float, float]:
    """p50 wall time of each command, their runs alternating (after one untimed run each)."""
    wall(ours, env, lines[0])
    wall(theirs, env, lines[1])
    a: list[float] = []
    b: list[float] = []
    for run in range(runs):
        pair = ((ours, a, lines[0]), (theirs, b, lines[1]))
        for cmd, times, want in pair if run % 2 == 0 else pair[::-1]:
            times.append(wall(cmd, env, want))
    return statistics.median(a), statistics.median(b)


# ---------------------------------------------------------------- watch throughput


def watch_calico(ds: Datastore, writer: Datastore, prefix: str, n: int) -> float:
    """Seconds from the first put until the syncer delivered the n-th change."""
    stop = threading.Event()
    ready = threading.Event()
    done = threading.Event()
    seen: set[str] = set()
    result: dict[str, float] = {}

    def consume() -> None:
        for update in PrefixSyncer(ds, prefix).updates(stop):
            if isinstance(update, SyncStatus) and update.state == "in-sync":
                ready.set()
            elif isinstance(update, Change):
                seen.add(update.key)
                if len(seen) == n:
                    result["end"] = time.perf_counter()
                    done.set()
                    return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise SystemExit("PrefixSyncer never got in sync")
    items = [(f"{prefix}{i:06d}", json.dumps(workload_endpoint(i))) for i in range(n)]
    start = time.perf_counter()
    put_batched(writer, items)
    if not done.wait(120):
        raise SystemExit(f"PrefixSyncer delivered {len(seen)} of {n} events")
    stop.set()
    thread.join(10)
    return result["end"] - start


def watch_etcdctl(endpoints: str, writer: Datastore, prefix: str, n: int) -> float:
    env = dict(os.environ, ETCDCTL_API="3")
    proc = subprocess.Popen(
        ["etcdctl", "--endpoints", endpoints, "watch", "--prefix", prefix],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # etcdctl prints nothing once its watch is up: a sentinel key, put until it shows
        # up in the output, says it is.
        sentinel = f"{prefix}~ready".encode()
        seen_sentinel = threading.Event()

        def poke() -> None:
            while not seen_sentinel.wait(0.1):
                writer.kv_put(sentinel.decode(), "1")

        poker = threading.Thread(target=poke, daemon=True)
        poker.start()
        assert proc.stdout is not None
        while proc.stdout.readline().rstrip(b"\n") != sentinel:
            if proc.poll() is not None:
                raise SystemExit("etcdctl watch exited")
        seen_sentinel.set()
        poker.join()
        items = [(f"{prefix}{i:06d}", json.dumps(workload_endpoint(i))) for i in range(n)]
        data_key = prefix.encode()
        start = time.perf_counter()
        put_batched(writer, items)
        events = 0
        for line in proc.stdout:  # "PUT", key, value per event; count our keys
            if line.startswith(data_key) and line[len(data_key) : len(data_key) + 1].isdigit():
                events += 1
                if events == n:
                    break
        end = time.perf_counter()
        if events != n:
            raise SystemExit(f"etcdctl watch delivered {events} of {n} events")
        return end - start
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000, help="WorkloadEndpoints (N)")
    parser.add_argument("--runs", type=int, default=5, help="runs per listing measure")
    parser.add_argument(
        "--short-runs", type=int, default=31, help="runs per start-up measure (get profiles)"
    )
    opts = parser.parse_args()
    if not shutil.which("etcd") or not shutil.which("etcdctl"):
        raise SystemExit("needs etcd and etcdctl (Debian etcd-server, etcd-client)")
    n = opts.endpoints
    base = Path(tempfile.mkdtemp(prefix="calico-bench-"))
    server = local_etcd(base, name="bench")
    server.start()
    rows = []
    try:
        ds = Datastore.connect(server.endpoints, timeout=60)
        env = dict(os.environ, ETCD_ENDPOINTS=server.endpoints, ETCDCTL_API="3")
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached
        env["CALICOCTL_CONFIG"] = "/nonexistent"  # this etcd, whatever /etc/calico says
        ctl = calicoctl_command()

        for name in ("network1", "network2"):
            ds.create(load({
                "apiVersion": "projectcalico.org/v3", "kind": "Profile",
                "metadata": {"name": name},
                "spec": {"labelsToApply": {name: ""}, "egress": [{"action": "Allow"}]},
            }))  # fmt: skip
        etcdctl = ["etcdctl", "--endpoints", server.endpoints, "get", "--prefix"]
        profiles = kind_prefix("Profile")
        ours, theirs = p50_pair([*ctl, "get", "profiles"], [*etcdctl, profiles, "-w", "json"],
                                env, opts.short_runs, (3, 1))  # fmt: skip
        rows.append(("`get profiles` (2), wall p50 (budget 3x)", f"{ours * 1000:.1f} ms",
                     f"{theirs * 1000:.1f} ms", ours / theirs))  # fmt: skip
        one = key_of(load({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
                           "metadata": {"name": "network1"}}))  # fmt: skip
        ours, theirs = p50_pair([*ctl, "get", "profile", "network1", "-o", "yaml"],
                                ["etcdctl", "--endpoints", server.endpoints, "get", one, "-w", "json"],
                                env, opts.short_runs, (3, 1))  # fmt: skip
        rows.append(("`get profile network1 -o yaml`, wall p50", f"{ours * 1000:.1f} ms",
                     f"{theirs * 1000:.1f} ms", ours / theirs))  # fmt: skip

        t0 = time.perf_counter()
        write_endpoints(ds, n)
        print(f"wrote {n} WorkloadEndpoints in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        weps = kind_prefix("WorkloadEndpoint")
        for fmt in ("ps", "yaml"):
            ours, theirs = p50_pair([*ctl, "get", "workloadendpoints", "-o", fmt],
                                    [*etcdctl, weps, "-w", "json"], env, opts.runs, (n + 1, 1))  # fmt: skip
            rows.append((f"`get workloadendpoints -o {fmt}` ({n}), wall p50",
                         f"{ours * 1000:.0f} ms", f"{theirs * 1000:.0f} ms", ours / theirs))  # fmt: skip

        writer = Datastore.connect(server.endpoints, timeout=60)
        ours = watch_calico(ds, writer, "/calico/bench/watch-syncer/", n)
        theirs = watch_etcdctl(server.endpoints, writer, "/calico/bench/watch-etcdctl/", n)
        rows.append((f"watch {n} puts, events/s", f"{n / ours:,.0f}", f"{n / theirs:,.0f}",
                     ours / theirs))  # fmt: skip
        writer.close()
        ds.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)

    print("| measure | calico-rkt | etcdctl | ratio |")
    print("|---|---|---|---|")
    for measure, ours_s, theirs_s, ratio in rows:
        print(f"| {measure} | {ours_s} | {theirs_s} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
