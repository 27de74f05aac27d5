"""The console's node poller against a node API (a fake agent over a unix socket)."""

from console.nodes import NodePoller
from tests.unit.fake_agent import FakeNodeAPI

HEALTH = {"in_sync": True}
BGP = {
    "backend": "bird",
    "running": True,
    "router_id": "10.213.1.11",
    "error": None,
    "peers": [
        {"peer_address": "10.213.1.254", "peer_type": "node specific", "state": "up",
         "since": "07:09:34", "info": "Established", "name": "Node_10_213_1_254"},
    ],
}  # fmt: skip


def poll(url):
    poller = NodePoller(lambda: {"calico-01": url}, lambda infos: None)
    try:
        return poller.poll_one("calico-01", url)
    finally:
        for client in poller.clients.values():
            client.close()


def test_poller_reads_the_nodes_bgp_peers(tmp_path):
    answers = {"/health": HEALTH, "/pods": [], "/networks": [], "/bgp": BGP}
    with FakeNodeAPI(str(tmp_path / "agent.sock"), answers) as api:
        info = poll(api.url)
    assert info.reachable and info.bgp == BGP and info.bgp_error == ""
    assert "/v1/bgp" in api.requests


def test_an_agent_without_bgp_is_reachable_and_says_so(tmp_path):
    answers = {"/health": HEALTH, "/pods": [], "/networks": []}
    with FakeNodeAPI(str(tmp_path / "agent.sock"), answers) as api:
        info = poll(api.url)
    assert info.reachable and info.bgp is None
    assert info.bgp_error == "not served by this agent"
