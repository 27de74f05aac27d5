""":matrix and why? with a pod on two networks: one row and one column per endpoint, each
judged by its own profiles and probed from its own address. Fixed data, fake node answers.

Update after an intended change:
pytest tests/unit/console/test_snapshots_multiendpoint.py --snapshot-update
"""

from __future__ import annotations

import json

import pytest

import console.screens.matrix as matrix_screen
from calico.datastore import KV
from calico.keys import key_of
from calico.resources import load

from .fixtures import wep
from .test_snapshots_matrix import (
    FakeNode,
    cluster,
    fake_nodes,  # noqa: F401  (TZ, and undone after each test)
    make_app,
    open_matrix,
)

SIZE = (150, 34)
DUAL = "5e1f0c2a-0000"  # httpd on calico-01: eth0 in network1, eth1 in network2
DUAL_CID = "5e1f0c2a" + "0" * 24
NETWORK_OF = {  # every endpoint address of the cluster and its network
    "192.168.0.1": "network1",
    "192.168.0.2": "network1",
    "192.168.0.3": "network2",
    "192.168.0.65": "network1",
    "192.168.0.66": "network2",
}
POD_OF = {"192.168.0.2": DUAL, "192.168.0.3": DUAL}


def dual_endpoint(ip: str, net: str, iface: str) -> dict:
    doc = wep("calico-01", DUAL_CID, ip, net, f"cali{iface}5e1f0c2")
    doc["metadata"]["name"] = doc["metadata"]["name"].replace("-eth0", f"-{iface}")
    doc["spec"]["endpoint"] = iface
    return doc


def dual_cluster():
    state = cluster()
    for rev, doc in enumerate(
        [dual_endpoint("192.168.0.2", "network1", "eth0"),
         dual_endpoint("192.168.0.3", "network2", "eth1")], start=100,
    ):  # fmt: skip
        res = load(doc)
        state.apply_kv(key_of(res), KV(key_of(res), json.dumps(doc).encode(), rev, rev))
    state.nodes["calico-01"].pods.append(
        {"uuid": DUAL, "app": "httpd", "image": "docker://busybox", "state": "running",
         "networks": [{"name": "network1", "ip": "192.168.0.2", "ifName": "eth0"},
                      {"name": "network2", "ip": "192.168.0.3", "ifName": "eth1"}],
         "created": "5 seconds ago"}
    )  # fmt: skip
    return state


class PerInterfaceNode(FakeNode):
    """Answers as the dataplane does: the source is the address the probe leaves from
    (`source_ip`), a network2 endpoint takes only network2 sources (or its own pod),
    a network1 endpoint everyone on port 80 (allow-web). Records every request."""

    requests: list[dict] = []

    def probes(self, requests, timeout=3.0):
        out = []
        for r in requests:
            self.requests.append(r)
            src = r.get("source_ip")
            net = NETWORK_OF[src] if src else r["network"]
            same_pod = src is not None and POD_OF.get(src, src) == POD_OF.get(r["address"])
            denied = NETWORK_OF[r["address"]] == "network2" and net != "network2"
            ok = same_pod or not denied
            out.append({"result": "connected" if ok else "timed out", "seconds": 0.01})
        return out


@pytest.fixture(autouse=True)
def per_interface_nodes(request, monkeypatch):
    request.getfixturevalue("fake_nodes")  # first: it patches too, and undoes everything
    PerInterfaceNode.requests = []
    monkeypatch.setattr(matrix_screen, "NodeClient", PerInterfaceNode)


def test_matrix_by_pod_has_a_row_and_a_column_per_endpoint(snap_compare):
    async def go(pilot):
        screen = await open_matrix(pilot, "m")
        labels = [s.label for s in screen.matrix.sources]
        assert labels == ["busybox/6876aae5", "httpd/5e1f0c2a/eth0", "httpd/5e1f0c2a/eth1",
                          "httpd/9a1b2c3d", "httpd/77e0f00d"]  # fmt: skip
        assert screen.matrix.summary() == "25 correct, 0 wrong"
        # every probe from a pod leaves from that endpoint's own address
        pod_probes = [r for r in PerInterfaceNode.requests if r.get("pod")]
        assert pod_probes and all(r.get("source_ip") for r in pod_probes)
        await pilot.press("down", "down", "right")  # eth1 -> eth0 of its own pod

    assert snap_compare(make_app(dual_cluster()), terminal_size=SIZE, run_before=go)


def test_why_names_the_endpoint_of_a_two_network_pod(snap_compare):
    async def go(pilot):
        await open_matrix(pilot, "m")
        await pilot.press("right", "right", "w")  # busybox (network1) -> httpd/.../eth1
        await pilot.pause()

    assert snap_compare(make_app(dual_cluster()), terminal_size=SIZE, run_before=go)


def test_matrix_by_network_judges_each_endpoint_by_its_own_profile(snap_compare):
    async def go(pilot):
        screen = await open_matrix(pilot)
        m = screen.matrix
        eth0 = next(j for j, d in enumerate(m.destinations) if d.label.endswith("/eth0"))
        eth1 = next(j for j, d in enumerate(m.destinations) if d.label.endswith("/eth1"))
        for i, src in enumerate(m.sources):
            assert m.cell(i, eth0).expected == "."  # network1 + allow-web: everyone on :80
            want = "." if src.network == "network2" else "X"
            assert m.cell(i, eth1).expected == want, src.label
        assert screen.matrix.summary() == "20 correct, 0 wrong"

    assert snap_compare(make_app(dual_cluster()), terminal_size=SIZE, run_before=go)
