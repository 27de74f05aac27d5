"""Pure parts of plugin/endpoint.py: Calico's endpoint naming, the seed profile, and the
append/remove of a second network on one endpoint."""

from __future__ import annotations

from plugin import endpoint


def test_names_escape_dashes_as_calico_does() -> None:
    assert endpoint.endpoint_name("node1", "abc", "eth0") == "node1-cni-abc-eth0"
    assert endpoint.endpoint_name("my-node", "ab-c", "eth0") == "my--node-cni-ab--c-eth0"
    assert endpoint.endpoint_key("n", "c", "eth1").endswith(
        "/workloadendpoints/default/n-cni-c-eth1"
    )


def test_seed_profile() -> None:
    data = endpoint.network_profile("network1").to_dict()
    assert data["spec"] == {
        "ingress": [{"action": "Allow", "source": {"selector": "has(network1)"}}],
        "egress": [{"action": "Allow"}],
        "labelsToApply": {"network1": ""},
    }


def _info(network: str = "net1", ip: str = "10.0.0.1/32") -> endpoint.EndpointInfo:
    return endpoint.EndpointInfo(
        node="n1",
        container_id="cid",
        ifname="eth0",
        host_ifname="calicid",
        mac="02:00:00:00:00:01",
        ip_networks=[ip],
        network=network,
    )


def test_endpoint_fields() -> None:
    data = endpoint.build_endpoint(_info()).to_dict()
    assert data["metadata"]["name"] == "n1-cni-cid-eth0"
    assert data["metadata"]["namespace"] == "default"
    assert data["metadata"]["labels"] == {
        "projectcalico.org/namespace": "default",
        "projectcalico.org/orchestrator": "cni",
    }
    spec = data["spec"]
    assert spec["orchestrator"] == "cni" and spec["node"] == "n1"
    assert spec["containerID"] == "cid" and spec["endpoint"] == "eth0"
    assert spec["interfaceName"] == "calicid" and spec["mac"] == "02:00:00:00:00:01"
    assert spec["ipNetworks"] == ["10.0.0.1/32"] and spec["profiles"] == ["net1"]


def test_second_network_appends_then_removes() -> None:
    first = endpoint.build_endpoint(_info()).to_dict()
    both = endpoint.merge(first, _info("net2", "10.1.0.1/32"))
    assert both["spec"]["profiles"] == ["net1", "net2"]
    assert both["spec"]["ipNetworks"] == ["10.0.0.1/32", "10.1.0.1/32"]
    assert endpoint.merge(both, _info("net2", "10.1.0.1/32")) == both  # idempotent
    back = endpoint.unmerge(both, "net2", ["10.1.0.1"])
    assert back is not None
    assert back["spec"]["profiles"] == ["net1"]
    assert back["spec"]["ipNetworks"] == ["10.0.0.1/32"]
    assert endpoint.unmerge(back, "net1", ["10.0.0.1"]) is None
