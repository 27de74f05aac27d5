"""A 20-node lab runs on this machine (issue 15): every node joins with calicoctl node run,
its agent healthy, BIRD in a full mesh of 190 sessions (19 per node, Established), and a
pod on the last node reaches one on the first across the mesh."""

from __future__ import annotations

import pytest

from calico.tutorial import network_conf
from tests.integration.conftest import dedicated_lab
from tests.integration.test_bgp import established

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

NODES = 20


def test_twenty_nodes_in_a_full_mesh(tmp_path) -> None:
    with dedicated_lab(tmp_path, NODES) as lab:
        st = lab.status()
        assert st["state"] == "up", st.get("why")
        assert len(st["nodes"]) == NODES and all(n["agent"]["healthy"] for n in st["nodes"])
        last = lab.nodes[-1]
        peers = established(lab, last)
        assert set(peers) == {lab.node_address(n) for n in lab.nodes[:-1]}, peers
        assert set(peers.values()) == {"node-to-node mesh"}
        for node in (lab.nodes[0], last):
            lab.write_net_conf(node, "10-calico-network1.conf", network_conf("network1"))
        server = lab.exec(lab.nodes[0], ["rkt", "run", "--detach", "--net=network1:IP=192.168.7.7",
                                          "docker://busybox", "--exec", "httpd", "--", "-f", "-h",
                                          "/"], timeout=60)  # fmt: skip
        assert server.returncode == 0, server.stderr
        wget = lab.exec(last, ["rkt", "run", "--net=network1", "docker://busybox",
                               "--exec=/bin/wget", "--", "-q", "-O-", "-T", "5",
                               "http://192.168.7.7/etc/passwd"], timeout=60)  # fmt: skip
        assert wget.returncode == 0 and "root:" in wget.stdout, wget.stdout + wget.stderr
