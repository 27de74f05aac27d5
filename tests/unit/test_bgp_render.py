"""The BIRD configuration the agent renders (agent/bgp/render.py) and the birdc parser
(calico/bgp.py). Every rendered variant is given to the real `bird -p -c` (parse only)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.bgp.render import (
    BGPNode,
    BirdInputs,
    PeerSpec,
    PoolSpec,
    peerings,
    render_bird_config,
    render_bootstrap,
)
from calico.bgp import parse_birdc_protocols

DATA = Path(__file__).parent / "data"
NODES = (
    BGPNode("calico-01", "10.213.0.11", 24),
    BGPNode("calico-02", "10.213.1.12", 24),
    BGPNode("calico-03", "10.213.0.13", 24, rr_cluster_id="1.0.0.1"),
)
POOL = PoolSpec("192.168.0.0/16", "CrossSubnet")

VARIANTS = {
    "mesh": BirdInputs("calico-01", NODES, ("192.168.5.0/26",), (POOL,)),
    "mesh off, a ToR per node": BirdInputs(
        "calico-02", NODES, ("192.168.9.0/26",), (PoolSpec("192.168.0.0/16"),),
        (PeerSpec("tor-calico-02", "10.213.1.254", 65000, node="calico-02"),),
        mesh=False, log_severity="Debug",
    ),
    "route reflector": BirdInputs(
        "calico-03", NODES, (), (PoolSpec("192.168.0.0/16", "Always"),),
        (PeerSpec("to-rr", "10.213.0.13", 64512),), mesh=False,
    ),
}  # fmt: skip


def bird_parses(text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    return subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("bird") is None, reason="needs bird (Debian bird2)")
@pytest.mark.parametrize("name", [*VARIANTS, "bootstrap"])
def test_bird_accepts_every_rendered_variant(name, tmp_path) -> None:
    if name == "bootstrap":
        text = render_bootstrap("calico-01", "10.213.0.11")
    else:
        text = render_bird_config(VARIANTS[name])
    proc = bird_parses(text, tmp_path)
    assert proc.returncode == 0, proc.stderr + "\n" + text


def test_mesh_peers_every_other_node_and_advertises_own_blocks() -> None:
    inputs = VARIANTS["mesh"]
    addresses = sorted(p.address for p in peerings(inputs))
    assert addresses == ["10.213.0.13", "10.213.1.12"]
    text = render_bird_config(inputs)
    assert "router id 10.213.0.11;" in text
    assert "192.168.5.0/26 blackhole" in text
    assert 'ifname = "tunl0"' in text  # CrossSubnet: the tunnel for next hops off-subnet


def test_mesh_off_peers_only_what_bgppeers_select() -> None:
    peers = peerings(VARIANTS["mesh off, a ToR per node"])
    assert [(p.address, p.as_number) for p in peers] == [("10.213.1.254", 65000)]


def test_parser_reads_established_and_failing_sessions() -> None:
    up = parse_birdc_protocols((DATA / "birdc_protocols_established.txt").read_text())
    assert [(p.peer_address, p.state, p.info) for p in up] == [("10.77.0.2", "up", "Established")]
    down = parse_birdc_protocols((DATA / "birdc_protocols_active.txt").read_text())
    assert down and all(p.info != "Established" for p in down)
