"""Pure parts of plugin/endpoint.py: Calico's endpoint naming, the seed profile, and the
append/remove of a second network on one endpoint."""

from __future__ import annotations

import random
import string

from calico.resources import load
from plugin import endpoint


def test_names_escape_dashes_as_calico_does() -> None:
    assert endpoint.endpoint_name("node1", "abc", "eth0") == "node1-cni-abc-eth0"
    assert endpoint.endpoint_name("my-node", "ab-c", "eth0") == "my--node-cni-ab--c-eth0"
    assert endpoint.endpoint_key("n", "c", "eth1").endswith(
        "/workloadendpoints/default/n-cni-c-eth1"
    )


def test_every_id_the_spec_allows_gets_a_valid_unique_stable_name() -> None:
    # Regression (issue 12): an upper-case or long ID gave a name the agent rejects as
    # "illegal name", so the pod had an address and no traffic.
    rng = random.Random(12)
    alphabet = string.ascii_letters + string.digits + "_.-"
    ids = {"AbC", "abc", "ABC", "a_b", "a-b", "a.b", "a--b", "x" * 300, "X" * 300, "A-", "a" * 5000}
    while len(ids) < 3000:
        size = rng.choice([1, 2, 5, 11, 12, 64, 200, 260, 1000])
        ids.add(
            rng.choice(string.ascii_letters + string.digits)
            + "".join(rng.choice(alphabet) for _ in range(size - 1))
        )
    for cid in sorted(ids)[:300]:  # what every agent does with an endpoint it reads
        load(endpoint.build_endpoint(_info(cid=cid)).to_dict())
    names: dict[str, str] = {}
    for cid in sorted(ids):
        for ifname in ("eth0", "eth1", "Net_B"):
            name = endpoint.endpoint_name("calico-01", cid, ifname)
            wep = endpoint.build_endpoint(_info(cid=cid, ifname=ifname, node="calico-01"))
            wep.validate()  # what every agent checks before programming it
            assert wep.metadata.name == name
            assert name == endpoint.endpoint_name("calico-01", cid, ifname)
            assert name.startswith(endpoint.name_prefix("calico-01"))
            assert names.setdefault(name, f"{cid}/{ifname}") == f"{cid}/{ifname}", name
    assert endpoint.endpoint_name("n", "AbC", "eth0") != endpoint.endpoint_name("n", "abc", "eth0")


def test_valid_names_keep_calico_escaping_and_never_meet_hashed_ones() -> None:
    assert endpoint.endpoint_name("n", "abc-def", "eth0") == "n-cni-abc--def-eth0"
    hashed = endpoint.endpoint_name("n", "Abc", "eth0")
    digest = hashed.split("-")[-2]
    assert hashed == f"n-cni-abc-{digest}-eth0"
    # The ID whose escaped name would look like the hashed one contains `-` + digest;
    # escaping doubles that dash, so the two names differ.
    assert endpoint.endpoint_name("n", f"abc-{digest}", "eth0") != hashed
    long = endpoint.endpoint_name("n", "a" * 300, "eth0")
    assert len(long) <= 253 and long.endswith("-eth0")
    cut = endpoint.endpoint_name("n", "a" * 236 + "-" * 20 + "B", "eth0")
    assert "---" not in cut and len(cut) <= 253


def test_a_node_name_with_upper_case_still_gives_valid_names() -> None:
    name = endpoint.endpoint_name("Node_1", "abc", "eth0")
    load(endpoint.build_endpoint(_info(node="Node_1")).to_dict())
    assert name.startswith(endpoint.name_prefix("Node_1"))


def test_seed_profile() -> None:
    data = endpoint.network_profile("network1").to_dict()
    assert data["spec"] == {
        "ingress": [{"action": "Allow", "source": {"selector": "has(network1)"}}],
        "egress": [{"action": "Allow"}],
        "labelsToApply": {"network1": ""},
    }


def _info(
    network: str = "net1",
    ip: str = "10.0.0.1/32",
    cid: str = "cid",
    ifname: str = "eth0",
    node: str = "n1",
) -> endpoint.EndpointInfo:
    return endpoint.EndpointInfo(
        node=node,
        container_id=cid,
        ifname=ifname,
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
