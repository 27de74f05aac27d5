"""Each node's agent publishes where its API answers on its own Node resource."""

import threading
from types import SimpleNamespace

import pytest

from agent.main import publish_api_url
from calico.resources import Node, load

pytestmark = pytest.mark.etcd


def agent_for(etcd_server, node):
    return SimpleNamespace(
        endpoints=etcd_server.endpoints, nodename=node, stop_event=threading.Event()
    )


def test_a_new_node_is_created_with_its_api_address(etcd_server, datastore):
    publish_api_url(agent_for(etcd_server, "host-a"), "unix:///run/calico/agent.sock")
    node = datastore.get(Node, "host-a")
    assert node.api_url == "unix:///run/calico/agent.sock"


def test_an_existing_node_keeps_its_spec_and_gets_the_address(etcd_server, datastore):
    datastore.create(load({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                           "metadata": {"name": "host-b", "annotations": {"calico-rkt.io/api": "unix:///old.sock"}},
                           "spec": {"bgp": {"ipv4Address": "10.0.0.5/24"}}}))  # fmt: skip
    publish_api_url(agent_for(etcd_server, "host-b"), "http://10.0.0.5:7443")
    node = datastore.get(Node, "host-b")
    assert node.api_url == "http://10.0.0.5:7443"
    assert node.spec.bgp.ipv4_address == "10.0.0.5/24"
