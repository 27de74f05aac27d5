"""Snapshots of :matrix, :flows and the why? panel with fixed data: fake node answers, no lab.

Update after an intended change: pytest tests/unit/console/test_snapshots_matrix.py --snapshot-update
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from textual.widgets import DataTable

import console.screens.matrix as matrix_screen
from calico.flowfilter import FlowFilter
from console.app import CalicoConsole
from console.model import NodeInfo
from console.screens.flows import FlowsScreen
from console.screens.text_view import TextScreen

from .fixtures import seed_state

SIZE = (120, 32)
NOW = 1_800_000_000.0  # a fixed clock for the flow times and sparklines


class FakeNode:
    """Answers `probes` as the seed cluster would, except one cell that is made wrong:
    network2 on calico-02 cannot reach 192.168.0.1 although allow-web says it may."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.node = url.rsplit("/", 1)[-1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def probes(self, requests, timeout=3.0):
        out = []
        for r in requests:
            net = r.get("network") or {
                "6876aae5-0000": "network1",
                "9a1b2c3d-0000": "network1",
            }.get(r.get("pod"), "network2")
            blocked = (net == "network1" and r["address"] == "192.168.0.66") or (
                net == "network2" and self.node == "calico-02" and r["address"] == "192.168.0.1"
            )
            out.append({"result": "timed out" if blocked else "connected", "seconds": 0.01})
        return out


def cluster():
    state = seed_state()
    state.nodes["calico-02"] = NodeInfo(
        reachable=True,
        health={"in_sync": True},
        pods=[
            {"uuid": "9a1b2c3d-0000", "app": "httpd", "state": "running",
             "networks": [{"name": "network1", "ip": "192.168.0.65"}]},
            {"uuid": "77e0f00d-0000", "app": "httpd", "state": "running",
             "networks": [{"name": "network2", "ip": "192.168.0.66"}]},
            {"uuid": "ab12cd34-0000", "app": "probe", "state": "running",
             "networks": [{"name": "network1", "ip": "192.168.0.67"}]},
        ],
        networks=[{"name": "network1", "type": "calico"}, {"name": "network2", "type": "calico"}],
    )  # fmt: skip
    return state


def make_app(state=None):
    app = CalicoConsole(
        endpoints="http://127.0.0.1:1",
        cluster_name="calilab",
        follow=False,
        state=state or cluster(),
    )
    app.node_api_urls = lambda: {"calico-01": "fake:///calico-01", "calico-02": "fake:///calico-02"}
    return app


@pytest.fixture(autouse=True)
def fake_nodes(monkeypatch):
    monkeypatch.setattr(matrix_screen, "NodeClient", FakeNode)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def open_matrix(pilot, *keys):
    pilot.app.switch_view("matrix")
    screen = pilot.app.screen
    for key in ("", *keys):
        if key:
            await pilot.press(key)
        for _ in range(100):
            await pilot.pause(0.02)
            if screen.done and screen.matrix is not None:
                break
    screen.elapsed = 2.1  # stable text: the real time varies run to run
    screen.update_title()
    await pilot.pause()
    return screen


def test_matrix_by_network(snap_compare):
    async def go(pilot):
        screen = await open_matrix(pilot)
        assert screen.matrix.summary() == "11 correct, 1 wrong"
        await pilot.press("n")  # jump to the wrong cell: its story shows below the grid

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=go)


def test_matrix_by_pod(snap_compare):
    async def go(pilot):
        screen = await open_matrix(pilot, "m")
        assert len(screen.matrix.sources) == 3  # the agent's probe pod is no destination

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=go)


def test_matrix_keeps_its_source_labels_under_an_early_frame():
    """The flake behind blank source labels, made deterministic: a frame drawn between
    building the rows and the table's idle once left the label column 0 wide."""

    async def run():
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_matrix(pilot)
            table = screen.query_one(DataTable)
            screen.show_matrix(screen.generation, screen.matrix, probe=False)
            for y in range(table.size.height):
                table.render_line(y)  # what a refresh landing before the idle draws
            await pilot.pause()
            await pilot.pause()
            shot = app.export_screenshot()
            assert all(src.label in shot for src in screen.matrix.sources)

    asyncio.run(run())


def test_why_on_a_denied_cell(snap_compare):
    async def go(pilot):
        await open_matrix(pilot)
        await pilot.press("right", "right", "w")  # network1@calico-01 -> the network2 pod
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=go)


def test_matrix_empty_says_what_to_do(snap_compare):
    state = cluster()
    for info in state.nodes.values():
        info.pods = [p for p in info.pods if not p.get("networks")]

    async def go(pilot):
        await open_matrix(pilot)

    assert snap_compare(make_app(state), terminal_size=SIZE, run_before=go)


def flow(t, verdict, src, dst, sport, dport, src_net, dst_net, rule_text):
    def ep(net, pod):
        return {"name": f"wep-{pod}", "network": net, "networks": [net], "profiles": [net],
                "pod": pod, "namespace": "default"}  # fmt: skip

    return {
        "type": "flow", "time": NOW - t, "verdict": verdict, "protocol": "tcp", "src": src,
        "dst": dst, "sport": sport, "dport": dport,
        "src_endpoint": ep(src_net, "77e0f00d-0000") if src_net else None,
        "dst_endpoint": ep(dst_net, "6876aae5-0000") if dst_net else None,
        "rule": {"text": rule_text}, "rule_text": rule_text, "tcp_flags": ["SYN"],
    }  # fmt: skip


FLOWS = [
    flow(30, "allowed", "192.168.0.65", "192.168.0.1", 41000, 80, "network1", "network1",
         "profile network1 ingress rule 0"),
    flow(20, "denied", "192.168.0.66", "192.168.0.1", 41001, 81, "network2", "network1",
         "default deny ingress (network1)"),
    flow(12, "allowed", "192.168.0.66", "192.168.0.1", 41002, 80, "network2", "network1",
         "policy allow-web ingress rule 0"),
    flow(5, "denied", "192.168.0.65", "192.168.0.66", 41003, 80, "network1", "network2",
         "default deny ingress (network2)"),
    flow(2, "allowed", "10.213.0.12", "192.168.0.66", 41004, 80, None, "network2",
         "profile network2 ingress rule 0"),
]  # fmt: skip


def flows_app():
    app = make_app()
    screen = FlowsScreen(follow=False)
    screen.clock = lambda: NOW
    app.uninstall_screen("flows")  # instead of the FlowsScreen made on first use
    app.install_screen(screen, "flows")
    return app, screen


async def open_flows(pilot, screen):
    pilot.app.switch_view("flows")
    await pilot.pause()
    screen.feed("calico-01", FLOWS[:3])
    screen.feed("calico-02", FLOWS[3:])
    screen.node_status = {"calico-01": (True, ""), "calico-02": (False, "connection refused")}
    screen.refresh_rates()
    await pilot.pause(0.1)


def test_flows(snap_compare):
    app, screen = flows_app()

    async def go(pilot):
        await open_flows(pilot, screen)
        assert [e.record["sport"] for e in screen.shown] == [41004, 41003, 41002, 41001, 41000]

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_flows_filtered_and_paused(snap_compare):
    app, screen = flows_app()

    async def go(pilot):
        await open_flows(pilot, screen)
        await pilot.press("slash", *"verdict:denied to:net:network1", "enter")
        await pilot.press("space")
        screen.feed("calico-01", [FLOWS[1]])  # arrives while paused: counted, not drawn
        await pilot.pause()
        assert len(screen.shown) == 1
        screen.refresh_rates()  # the 1 s rates timer may or may not have fired: count it now
        await pilot.pause(0.3)  # past the table's redraw throttle (4 per second)

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_why_on_a_flow(snap_compare):
    app, screen = flows_app()

    async def go(pilot):
        await open_flows(pilot, screen)
        screen.set_filter(FlowFilter.parse("port:81"))
        await pilot.press("w")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_flows_empty_says_what_to_do(snap_compare):
    app, screen = flows_app()

    async def go(pilot):
        pilot.app.switch_view("flows")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_enter_on_a_flow_shows_its_record_as_json():
    """Enter reaches the flows screen although the focused table binds enter itself, and
    help (made from the bindings) says what it does."""
    app, screen = flows_app()

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            await open_flows(pilot, screen)
            await pilot.press("down", "enter")  # the second newest: port 41003
            await pilot.pause()
            shown = app.screen
            assert isinstance(shown, TextScreen)
            assert shown.title_text == "Flow from calico-02"
            assert json.loads(shown.body) == FLOWS[3]
            await pilot.press("escape")
            await pilot.press("question_mark")
            await pilot.pause()
            assert "enter    the selected flow record as JSON" in app.screen.body

    asyncio.run(run())
