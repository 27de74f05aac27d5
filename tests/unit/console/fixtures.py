"""A fixed cluster for console tests: the seed tutorial after step 4, on two nodes."""

from __future__ import annotations

import json

from calico.datastore import KV
from calico.keys import key_of
from calico.resources import load
from console.model import ClusterState, NodeInfo

V3 = "projectcalico.org/v3"


def profile(net):
    return {
        "apiVersion": V3,
        "kind": "Profile",
        "metadata": {"name": net},
        "spec": {
            "ingress": [{"action": "Allow", "source": {"selector": f"has({net})"}}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {net: ""},
        },
    }


def wep(node, cid, ip, net, iface):
    return {
        "apiVersion": V3,
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
            "interfaceName": iface,
            "mac": "ee:ee:ee:ee:ee:ee",
            "ipNetworks": [f"{ip}/32"],
            "profiles": [net],
        },
    }


def seed_state() -> ClusterState:
    docs = [
        profile("network1"),
        profile("network2"),
        {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
         "spec": {"cidr": "192.168.0.0/16", "blockSize": 26}},
        {"apiVersion": V3, "kind": "Node", "metadata": {"name": "calico-01"},
         "spec": {"bgp": {"ipv4Address": "10.213.0.11/24"}}},
        {"apiVersion": V3, "kind": "Node", "metadata": {"name": "calico-02"},
         "spec": {"bgp": {"ipv4Address": "10.213.0.12/24"}}},
        wep("calico-01", "6876aae5" + "0" * 24, "192.168.0.1", "network1", "cali6876aae5000"),
        wep("calico-02", "9a1b2c3d" + "0" * 24, "192.168.0.65", "network1", "cali9a1b2c3d000"),
        wep("calico-02", "77e0f00d" + "0" * 24, "192.168.0.66", "network2", "cali77e0f00d000"),
        {"apiVersion": V3, "kind": "GlobalNetworkPolicy", "metadata": {"name": "allow-web"},
         "spec": {"order": 100, "selector": "has(network1)", "types": ["Ingress"],
                  "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": "has(network2)"},
                               "destination": {"ports": [80]}},
                              {"action": "Pass"}]}},
    ]  # fmt: skip
    state = ClusterState()
    kvs = []
    for rev, doc in enumerate(docs, start=2):
        res = load(doc)
        kvs.append(KV(key_of(res), json.dumps(doc).encode(), rev, rev))
    state.replace_all(kvs)
    state.blocks = {
        "192.168.0.0/26": {
            "cidr": "192.168.0.0/26",
            "affinity": "host:calico-01",
            "allocations": [0, None, *[None] * 62],
        },
        "192.168.0.64/26": {
            "cidr": "192.168.0.64/26",
            "affinity": "host:calico-02",
            "allocations": [None, 0, 1, *[None] * 61],
        },
    }
    state.felix = {
        "/calico/felix/v2/no-region/host/calico-01/workload/cni/"
        + state_wep_name("calico-01", "6876aae5")
        + "/endpoint/eth0": {"status": "up"},
    }
    state.nodes = {
        "calico-01": NodeInfo(reachable=True, health={"in_sync": True}, pods=[
            {"uuid": "b52bba11-0000", "app": "node", "image": "calico/node", "state": "running",
             "networks": [], "created": "2 minutes ago"},
            {"uuid": "6876aae5-0000", "app": "busybox", "image": "docker://busybox", "state": "running",
             "networks": [{"name": "network1", "ip": "192.168.0.1"}, {"name": "default-restricted", "ip": "172.31.0.2"}],
             "created": "11 seconds ago"},
        ], networks=[{"name": "network1", "type": "calico"}, {"name": "network2", "type": "calico"}],
           bgp={"backend": "bird", "running": True, "router_id": "10.213.1.11", "error": None,
                "peers": [
            {"peer_address": "10.213.1.254", "peer_type": "node specific", "state": "up",
             "since": "07:09:34", "info": "Established", "name": "Node_10_213_1_254"},
            {"peer_address": "10.213.2.12", "peer_type": "global", "state": "start",
             "since": "07:09:35", "info": "Active Socket: Connection refused",
             "name": "Global_10_213_2_12"},
        ]}),
        "calico-02": NodeInfo(reachable=False, error="connection refused"),
    }  # fmt: skip
    return state


def state_wep_name(node: str, cid8: str) -> str:
    return f"{node.replace('-', '--')}-cni-{cid8}{'0' * 24}-eth0"
