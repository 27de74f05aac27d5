"""The lab's address plan and the ToR's BIRD configuration, as pure data."""

import ipaddress
import shutil
import subprocess

import pytest

from calico.bgp import parse_bgp_protocols
from lab import tor
from lab.topology import Options, TopologyError, plan


def test_routed_without_tor_or_ipip_is_refused_in_one_line():
    with pytest.raises(TopologyError, match="--tor-bgp or --ipip-mode") as exc:
        Options("routed").check(3)
    assert "\n" not in str(exc.value)
    Options("routed", tor_bgp=True).check(3)
    Options("routed", ipip_mode="CrossSubnet").check(3)
    with pytest.raises(TopologyError):
        Options("flat", tor_bgp=True).check(2)


def test_routed_plan_deals_nodes_round_robin_on_a_block_the_root_prefix_covers():
    p = plan(Options("routed", 2, tor_bgp=True), ipaddress.IPv4Network("10.213.4.0/22"), 8)
    assert p.root_address == "10.213.4.1" and p.root_prefixlen == 22
    assert [s.cidr for s in p.subnets] == ["10.213.5.0/24", "10.213.6.0/24"]
    assert [s.router for s in p.subnets] == ["10.213.5.254", "10.213.6.254"]
    assert [n.subnet for n in p.nodes] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert p.node(8).address == "10.213.6.18"
    assert len({n.address for n in p.nodes}) == 8
    block = ipaddress.IPv4Network(p.block)
    assert all(ipaddress.IPv4Address(n.address) in block for n in p.nodes)


def test_flat_plan_is_todays_layout():
    p = plan(Options(), ipaddress.IPv4Network("10.213.0.0/24"), 99)
    assert p.subnets[0].router == "10.213.0.254" and p.node(99).address == "10.213.0.109"


@pytest.mark.skipif(shutil.which("bird") is None, reason="needs bird (Debian bird2)")
def test_tor_config_parses_with_bird(tmp_path):
    neighbors = [
        tor.Neighbor("calico-01", "10.213.5.11", 65001, "10.213.5.254"),
        tor.Neighbor("calico-02", "10.213.6.12", 65002, "10.213.6.254"),
    ]
    text = tor.render_config(router_id="10.213.4.254", local_as=65000, neighbors=neighbors,
                             fabric_block="10.213.4.0/22", log_file=str(tmp_path / "b.log"))  # fmt: skip
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    proc = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "neighbor 10.213.6.12 as 65002;" in text and "local as 65000;" in text


def test_birdc_protocols_parse():
    text = (
        "BIRD 2.0.12 ready.\n"
        "Name       Proto      Table      State  Since         Info\n"
        "device1    Device     ---        up     07:07:41.313  \n"
        "node_calico_01 BGP        ---        start  07:07:41.313  Active        Socket: Connection refused\n"
        "node_calico_02 BGP        ---        up     07:07:42.001  Established   \n"
    )
    s = parse_bgp_protocols(text)
    assert [(x.name, x.state, x.info) for x in s] == [
        ("node_calico_01", "start", "Active Socket: Connection refused"),
        ("node_calico_02", "up", "Established"),
    ]
