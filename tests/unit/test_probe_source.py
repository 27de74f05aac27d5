"""A probe's `source_ip`: the connect leaves from that address (a pod on two networks
has one per interface), and anything but an address is a 400."""

from __future__ import annotations

import socket
import threading

import pytest

from agent.api.probes import probe_in_netns, probe_source_ip
from agent.api.server import APIError


def test_probe_connects_from_the_source_ip_it_is_given():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    peers: list[str] = []

    def accept():
        conn, peer = server.accept()
        peers.append(peer[0])
        conn.close()

    t = threading.Thread(target=accept)
    t.start()
    try:
        out = probe_in_netns(None, "127.0.0.1", port, 2.0, source_ip="127.0.0.2")
        t.join(5)
    finally:
        server.close()
    assert out["result"] == "connected"
    assert peers == ["127.0.0.2"]


def test_a_source_ip_the_namespace_does_not_own_is_an_error_not_a_connect():
    out = probe_in_netns(None, "127.0.0.1", 9, 1.0, source_ip="192.0.2.1")
    assert out["result"] == "error"
    assert "assign" in out["error"].lower()


@pytest.mark.parametrize("value", [None, ""])
def test_no_source_ip_lets_the_kernel_choose(value):
    assert probe_source_ip({"source_ip": value}) is None
    assert probe_source_ip({}) is None


@pytest.mark.parametrize("value", ["eth1", "192.168.0.300", 7, ["10.0.0.1"]])
def test_a_source_ip_that_is_not_an_address_is_a_400(value):
    with pytest.raises(APIError) as exc:
        probe_source_ip({"source_ip": value})
    assert exc.value.status == 400
