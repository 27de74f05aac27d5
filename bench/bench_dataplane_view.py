"""Benchmark: `:dataplane` at 1,000 endpoints, from the kernel's rules to the screen drawn.

    sudo .venv/bin/python bench/bench_dataplane_view.py [--endpoints 1000] [--runs 7]

Builds a throwaway network namespace `cdpb<hex>` (deleted in a finally, with everything in
it), calculates the dataplane of one node with --endpoints local WorkloadEndpoints (two
network profiles, one policy; the agent's own calculation) and programs it there with the
agent's own applier (ipsets, one iptables-legacy-restore; routes to interfaces that do not
exist are skipped, as for endpoints whose veth is not up yet). The root namespace is never
touched. Then, p50 of --runs, all in that namespace:

- reference: `iptables-legacy-save -c -t filter` of the same rules (a subprocess, wall
  time): what reading the counters costs at all.
- node API: what GET /v1/dataplane does before the transport: the save, the parse, each
  rule joined to its origin (agent/api/dataplane.py), JSON encoded.
- console: a DataplaneScreen pushed in a headless Textual app (`App.run_test`) whose fetch
  does the node API's work above in the namespace and decodes the JSON, until every chain
  and rule is in the table and the screen has drawn a frame: what "opens" means.
- the same two for one endpoint (`?endpoint=`), which is what a row's `D` opens.

Prints a markdown table; the budget is the console's open at 1,000 endpoints, <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.api.counters import read_chain_counters  # noqa: E402
from agent.api.dataplane import dataplane_view  # noqa: E402
from agent.calc.calculator import calculate  # noqa: E402
from agent.calc.model import Dataplane, Inputs  # noqa: E402
from agent.dataplane.apply import Applier  # noqa: E402
from calico.resources import Resource  # noqa: E402
from kernel.ns import run_in_netns  # noqa: E402
from plugin.veth import host_ifname  # noqa: E402

API = "projectcalico.org/v3"
NODE = "bench-01"


def resource(doc: dict[str, Any]) -> Resource:
    return Resource.from_dict({"apiVersion": API, **doc})


def inputs(endpoints: int) -> Inputs:
    """`endpoints` local endpoints, half network1, half network2, and a policy on network1."""
    profiles = {
        net: resource({"kind": "Profile", "metadata": {"name": net},
                       "spec": {"ingress": [{"action": "Allow", "source": {"selector": f"has({net})"}}],
                                "egress": [{"action": "Allow"}], "labelsToApply": {net: ""}}})
        for net in ("network1", "network2")
    }  # fmt: skip
    policy = resource({"kind": "GlobalNetworkPolicy", "metadata": {"name": "allow-web"},
                       "spec": {"order": 100, "selector": "has(network1)", "types": ["Ingress"],
                                "ingress": [{"action": "Allow", "protocol": "TCP",
                                             "source": {"selector": "has(network2)"},
                                             "destination": {"ports": [80]}},
                                            {"action": "Deny", "protocol": "TCP",
                                             "destination": {"ports": [81]}},
                                            {"action": "Pass"}]}})  # fmt: skip
    weps = []
    base = ipaddress.ip_address("10.70.0.0")
    for i in range(endpoints):
        cid = f"{i:08x}" + "b" * 56
        net = "network1" if i % 2 == 0 else "network2"
        weps.append(resource({
            "kind": "WorkloadEndpoint",
            "metadata": {"name": f"bench--01-cni-{cid}-eth0", "namespace": "default"},
            "spec": {"node": NODE, "orchestrator": "cni", "containerID": cid, "endpoint": "eth0",
                     "interfaceName": host_ifname(cid, "eth0"),
                     "ipNetworks": [f"{base + i + 2}/32"], "profiles": [net]},
        }))  # fmt: skip
    return Inputs(node=NODE, profiles=profiles, policies=[policy], endpoints=weps)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def api_work(ns: str, desired: Dataplane, endpoint: str | None) -> str:
    """GET /v1/dataplane's work in `ns`, as JSON text (what goes on the socket)."""
    kernel = run_in_netns(ns, read_chain_counters)
    if not kernel:
        raise SystemExit("iptables-legacy-save read nothing in the namespace")
    return json.dumps({"node": NODE, **dataplane_view(desired, kernel, endpoint)})


def console_open(ns: str, desired: Dataplane, endpoint: str | None) -> tuple[float, int]:
    """ms from pushing the screen to a drawn frame holding every chain and rule."""
    from console.app import CalicoConsole
    from console.screens.dataplane import DataplaneScreen

    def fetch(node: str, ep: str | None) -> dict[str, Any]:
        return json.loads(api_work(ns, desired, ep))

    out: dict[str, float] = {}

    async def run() -> None:
        app = CalicoConsole(endpoints="http://127.0.0.1:1", follow=False)
        async with app.run_test(size=(160, 44)) as pilot:
            await pilot.pause()
            screen = DataplaneScreen(NODE, endpoint, fetch=fetch, poll=3600)
            t0 = time.perf_counter()
            app.push_screen(screen)
            while screen.polls < 1:
                await asyncio.sleep(0.002)
            await pilot.pause()  # a frame drawn with the table filled
            out["ms"] = (time.perf_counter() - t0) * 1000
            table = screen.query_one("#dp-rules")
            assert table.row_count == len(screen.keys) > 0, (table.row_count, len(screen.keys))
            out["rows"] = table.row_count

    asyncio.run(run())
    return out["ms"], int(out["rows"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoints", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    for tool in ("ip", "iptables-legacy-save", "iptables-legacy-restore", "ipset"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 2
    ns = "cdpb" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        desired = calculate(inputs(args.endpoints))
        result = run_in_netns(ns, Applier().apply, desired, True)
        if result.errors:
            raise SystemExit(f"programming the namespace failed: {result.errors[:3]}")
        rules = desired.rule_count()
        one = desired.endpoints[len(desired.endpoints) // 2].name

        def save() -> None:
            subprocess.run(["ip", "netns", "exec", ns, "iptables-legacy-save", "-c", "-t",
                            "filter"], check=True, capture_output=True)  # fmt: skip

        rows = []
        for label, endpoint in ((f"node, {args.endpoints} endpoints", None),
                                (f"one endpoint of {args.endpoints}", one)):  # fmt: skip
            ref = statistics.median(timed(save)[0] for _ in range(args.runs))
            api = [timed(lambda e=endpoint: api_work(ns, desired, e)) for _ in range(args.runs)]
            api_ms = statistics.median(ms for ms, _ in api)
            size = len(api[0][1])
            opens = [console_open(ns, desired, endpoint) for _ in range(args.runs)]
            open_ms = statistics.median(ms for ms, _ in opens)
            shown = opens[0][1]
            rows.append((label, shown, size, ref, api_ms, open_ms))
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n{rules} rules, {len(desired.ipsets)} ipsets, "
              f"{sum(len(s.members) for s in desired.ipsets.values())} members; p50 of {args.runs}; "
              f"load average {load} on {os.cpu_count()} cores (the figures move with it)\n")  # fmt: skip
        print(
            "| :dataplane of | table rows | JSON | iptables-legacy-save -c (reference) "
            "| node API work | console open (budget <= 1 s) | open / save | open / API |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, shown, size, ref, api_ms, open_ms in rows:
            print(f"| {label} | {shown} | {size / 1024:.0f} KiB | {ref:.1f} ms | {api_ms:.1f} ms "
                  f"| **{open_ms:.0f} ms** | {open_ms / ref:.1f}x | {open_ms / api_ms:.1f}x |")  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
