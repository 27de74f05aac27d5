"""Snapshot tests of :dataplane with a fixed node answer (the seed cluster calculated for
calico-01 by the agent's own code, counters invented): the node's chains, one endpoint's
with counters that just moved and the selected rule's ipset, a rule's origin opened, and a
denied flow in :flows jumped to the rule that dropped it.

Update after an intended change:
pytest tests/unit/console/test_snapshots_dataplane.py --snapshot-update
"""

from __future__ import annotations

import pytest

import console.screens.dataplane as dataplane_screen
from console.screens.dataplane import DataplaneScreen
from console.screens.flows import FlowsScreen

from .dataplane_fixtures import ENDPOINT, dataplane_doc
from .test_dataplane import Node, make_app, wait_polls
from .test_snapshots_matrix import NOW, flow

SIZE = (150, 36)


@pytest.fixture(autouse=True)
def fixed_node(monkeypatch):
    node = Node(step=0)  # the same answer however often a timer polls
    monkeypatch.setattr(dataplane_screen.DataplaneScreen, "fetch_from_node",
                        lambda self, n, e: node(n, e))  # fmt: skip
    return node


async def open_dataplane(pilot, endpoint=None):
    screen = DataplaneScreen("calico-01", endpoint, poll=3600)
    pilot.app.push_screen(screen)
    await wait_polls(pilot, screen, 1)
    await pilot.pause()
    return screen


def test_dataplane_of_a_node(snap_compare):
    async def go(pilot):
        await open_dataplane(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=go)


def test_dataplane_of_an_endpoint_counters_moving_and_its_ipset(snap_compare):
    async def go(pilot):
        screen = await open_dataplane(pilot, ENDPOINT)
        screen.fetch = Node(step=3)
        screen.fetch("calico-01", ENDPOINT)
        screen.action_refresh()  # the profile's rules counted 3 more packets each
        await wait_polls(pilot, screen, 2)
        screen.query_one("#dp-rules").move_to("cali-pri-network1#1")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=go)


def test_dataplane_rule_opens_its_policy(snap_compare):
    async def go(pilot):
        screen = await open_dataplane(pilot, ENDPOINT)
        screen.query_one("#dp-rules").move_to("cali-pi-allow-web#1")
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=go)


def test_denied_flow_jumps_to_the_rule_that_dropped_it(snap_compare):
    denied = flow(20, "denied", "192.168.0.66", "192.168.0.1", 41001, 81, "network2",
                  "network1", "profile network1 default deny ingress")  # fmt: skip
    denied["direction"] = "ingress"
    denied["dst_endpoint"]["name"] = ENDPOINT
    denied["rule"] = {"direction": "ingress", "kind": "default", "name": "network1",
                      "rule_index": None, "truncated": False, "name_hash": None}  # fmt: skip

    app = make_app()
    flows = FlowsScreen(follow=False)
    flows.clock = lambda: NOW
    app.uninstall_screen("flows")
    app.install_screen(flows, "flows")

    async def go(pilot):
        pilot.app.switch_view("flows")
        await pilot.pause()
        flows.feed("calico-01", [denied])
        await pilot.pause(0.1)
        await pilot.press("g")
        screen = pilot.app.screen
        assert isinstance(screen, DataplaneScreen) and screen.endpoint == ENDPOINT
        await wait_polls(pilot, screen, 1)
        line = screen.selected_line()
        assert line is not None and line.target == "DROP"
        assert line.origin["kind"] == "default" and line.chain.startswith("cali-tp-")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_doc_fixture_is_what_the_agent_serves():
    doc = dataplane_doc(ENDPOINT)
    assert doc["endpoint"]["name"] == ENDPOINT and doc["node"] == "calico-01"
