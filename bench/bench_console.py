"""Console responsiveness at scale: first paint, a fully loaded Endpoints view at 10,000
endpoints, and the longest event-loop pause while it loads.

    sudo .venv/bin/python bench/bench_console.py [--endpoints 10000]

Starts its own etcd (loopback, temp dir), writes N WorkloadEndpoints the way the CNI plugin
does, then runs the real console headless (Textual's test driver) and measures:
- first paint: app start -> the browse screen composed and showing its first view;
- loaded: app start -> the Endpoints view holding all N rows;
- longest pause: the largest gap seen by a 5 ms ticker on the event loop during the load.
Reference in the same run: `etcdctl get --prefix` of the same endpoints (the raw read).
Budgets (issue 7): first paint <= 1 s, no pause > 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calico.datastore import Datastore  # noqa: E402
from calico.keys import key_of
from calico.resources import load  # noqa: E402
from lab.etcd import local_etcd  # noqa: E402
from plugin.veth import host_ifname  # noqa: E402


def wep_doc(i: int) -> dict:
    cid = f"{i:08x}" + "ab" * 28
    node = f"calico-{i % 20 + 1:02d}"
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": f"{node.replace('-', '--')}-cni-{cid}-eth0",
            "namespace": "default",
            "labels": {
                "projectcalico.org/namespace": "default",
                "projectcalico.org/orchestrator": "cni",
            },
        },
        "spec": {
            "orchestrator": "cni",
            "node": node,
            "containerID": cid,
            "endpoint": "eth0",
            "interfaceName": host_ifname(cid, "eth0"),
            "mac": "ee:ee:ee:ee:ee:ee",
            "ipNetworks": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32"],
            "profiles": [f"network{i % 4 + 1}"],
        },
    }


def fill(ds: Datastore, n: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def put(i: int) -> None:
        doc = wep_doc(i)
        ds.kv_put(key_of(load(doc)), json.dumps(doc, separators=(",", ":")))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(n)))


async def measure(endpoints: str, n: int) -> dict[str, float]:
    from console.app import CalicoConsole

    gaps: list[float] = []
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    app = CalicoConsole(endpoints=endpoints, cluster_name="bench")
    app.browse.view = __import__("console.model", fromlist=["VIEWS"]).VIEWS["endpoints"]

    async def ticker() -> None:
        last = time.perf_counter()
        while "loaded" not in marks:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last - 0.005)
            last = now

    async with app.run_test(size=(160, 48)) as pilot:
        marks["first_paint"] = time.perf_counter() - t0
        tick = asyncio.create_task(ticker())
        table = app.screen.query_one("#table")
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            if table.row_count >= n:
                marks["loaded"] = time.perf_counter() - t0
                break
            await pilot.pause(0.01)
        else:
            marks["loaded"] = float("nan")
        await tick
    marks["longest_pause"] = max(gaps) if gaps else 0.0
    return marks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", type=int, default=10_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-console-"))
    etcd = local_etcd(base)
    etcd.start()
    try:
        ds = Datastore.connect(etcd.endpoints)
        t = time.perf_counter()
        fill(ds, args.endpoints)
        print(
            f"wrote {args.endpoints} endpoints in {time.perf_counter() - t:.1f} s", file=sys.stderr
        )
        ref = float("nan")
        if shutil.which("etcdctl"):
            t = time.perf_counter()
            subprocess.run(
                ["etcdctl", f"--endpoints={etcd.endpoints}", "get", "--prefix",
                 "/calico/resources/v3/projectcalico.org/workloadendpoints/", "-w", "json"],
                env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True, check=True,
            )  # fmt: skip
            ref = time.perf_counter() - t
        marks = asyncio.run(measure(etcd.endpoints, args.endpoints))
        ds.close()
    finally:
        etcd.stop()
        shutil.rmtree(base, ignore_errors=True)
    fp, loaded, pause = marks["first_paint"], marks["loaded"], marks["longest_pause"]
    print(f"\n| measure ({args.endpoints} endpoints) | console | reference | budget | verdict |")
    print("|---|---:|---:|---:|---|")
    print(f"| first paint | {fp * 1000:.0f} ms | | <= 1000 ms | {'ok' if fp <= 1 else 'MISSED'} |")
    print(
        f"| Endpoints view fully loaded | {loaded:.2f} s | etcdctl read {ref:.2f} s "
        f"(x{loaded / ref:.1f}) | | |"
    )
    print(
        f"| longest event-loop pause while loading | {pause * 1000:.0f} ms | | <= 100 ms | "
        f"{'ok' if pause <= 0.1 else 'MISSED'} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
