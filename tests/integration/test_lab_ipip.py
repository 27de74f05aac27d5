"""IPIP on a real lab: a flat 2-node lab whose pool is switched to ipipMode Always in the
direct backend. Each node's calico-node runs calico-tunl (a TUN tunl0 on this kernel);
the agent gets a tunnel address through IPAM, puts it on tunl0 and routes the other
node's block through it. The seed tutorial (`calico-lab tutorial`) then passes, and its
pod-to-pod traffic went through tunl0 (its packet counters moved) while isolation
(network2 denied) held. A dedicated lab, torn down even on failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from calico import keys
from lab.cluster import DEFAULT_POOL_NAME, plugin_dir
from tests.integration.conftest import dedicated_lab
from tests.integration.test_tutorial import wait_for

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def ipip_lab(tmp_path_factory):
    with dedicated_lab(tmp_path_factory.mktemp("ipiplab"), 2) as cluster:
        yield cluster


def tunl0(lab, node: str) -> dict:
    proc = lab.exec(node, ["ip", "-s", "-j", "addr", "show", "dev", "tunl0"], timeout=30)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 and proc.stdout.strip() else {}


def test_tutorial_through_tunl0_with_isolation(ipip_lab):
    from calico.datastore import Datastore
    from calico.resources import IPPool, Node

    lab = ipip_lab
    ds = Datastore.connect(lab.etcd_endpoints)
    try:
        pool = ds.get(IPPool, DEFAULT_POOL_NAME)
        pool.spec.ipip_mode = "Always"
        ds.update(pool)

        def addressed() -> dict | None:
            out = {}
            for node in lab.nodes:
                bgp = ds.get(Node, node).spec.bgp
                addr = bgp.ipv4_ipip_tunnel_addr if bgp else None
                link = tunl0(lab, node)
                have = [a["local"] for a in link.get("addr_info", [])]
                if not addr or have != [addr] or link.get("mtu") != 1480:
                    return None
                out[node] = addr
            return out

        addrs = wait_for(addressed, 60, "every node's tunl0 with its tunnel address")
        assert len(set(addrs.values())) == len(lab.nodes)
        a, b = lab.nodes[:2]

        def tunnelled() -> bool:  # BIRD's routes to the other blocks, now through tunl0
            out = lab.exec(a, ["ip", "-j", "route", "show", "proto", "bird"]).stdout
            routes = json.loads(out or "[]")
            return any(r.get("dev") == "tunl0" and "onlink" in r.get("flags", []) for r in routes)

        wait_for(tunnelled, 15, f"{a}'s routes to remote blocks through tunl0")
        before = {n: tunl0(lab, n)["stats64"]["rx"]["packets"] for n in lab.nodes}

        proc = subprocess.run(
            [str(Path(plugin_dir()) / "calico-lab"), "tutorial", "--name", lab.name],
            capture_output=True, text=True, timeout=240, env={**os.environ, **lab.root_env()},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        verdicts = re.findall(r"^   (PASS|FAIL) \(", proc.stdout, re.M)
        assert verdicts and set(verdicts) == {"PASS"}, proc.stdout
        after = {n: tunl0(lab, n)["stats64"]["rx"]["packets"] for n in lab.nodes}
        assert all(after[n] > before[n] for n in lab.nodes), (before, after)
        print("tunnel addresses", addrs, "tunl0 rx packets", before, "->", after)

        # IPIP off again: the addresses are released and taken off tunl0.
        pool = ds.get(IPPool, DEFAULT_POOL_NAME)
        pool.spec.ipip_mode = "Never"
        ds.update(pool)
        wait_for(
            lambda: (
                all(not tunl0(lab, n).get("addr_info") for n in lab.nodes)
                and all(not (ds.get(Node, n).spec.bgp.ipv4_ipip_tunnel_addr) for n in lab.nodes)
            ),
            60,
            "tunnel addresses released",
        )
        assert not ds.kv_list(keys.handle_key("ipip-tunnel-addr-"))[0]
    finally:
        ds.close()
