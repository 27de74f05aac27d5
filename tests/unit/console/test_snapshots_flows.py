"""Snapshots of `:flows` aggregated (`a`), with a negated term and a time window, from fixed
records (no lab): what a person sees when asking "who talks to whom, how often, since when".

Update after an intended change: pytest tests/unit/console/test_snapshots_flows.py --snapshot-update
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from calico.flowfilter import FlowFilter
from console.screens.text_view import TextScreen

from .test_snapshots_matrix import NOW, SIZE, flow, flows_app, open_flows

# The same source, destination, port and verdict again: counted into the groups above.
REPEATS = [
    flow(4, "denied", "192.168.0.66", "192.168.0.1", 41010, 81, "network2", "network1",
         "default deny ingress (network1)"),
    flow(3, "denied", "192.168.0.66", "192.168.0.1", 41011, 81, "network2", "network1",
         "default deny ingress (network1)"),
    flow(1, "allowed", "192.168.0.65", "192.168.0.1", 41012, 80, "network1", "network1",
         "profile network1 ingress rule 0"),
    flow(900, "allowed", "192.168.0.65", "192.168.0.1", 40999, 80, "network1", "network1",
         "profile network1 ingress rule 0"),  # 15 minutes ago: outside since:10m
]  # fmt: skip


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def open_aggregated(pilot, screen, text: str = ""):
    await open_flows(pilot, screen)
    screen.feed("calico-02", REPEATS)
    if text:
        screen.set_filter(FlowFilter.parse(text, now=NOW))
    await pilot.press("a")
    screen.refresh_rates()  # the 1 s rates timer may or may not have fired: count it now
    await pilot.pause(0.3)


def test_flows_aggregated(snap_compare):
    app, screen = flows_app()

    async def go(pilot):
        await open_aggregated(pilot, screen)
        counts = {(g.src, g.dst, g.dport, g.verdict): g.count for g in screen.groups}
        assert counts[("192.168.0.66", "192.168.0.1", 81, "denied")] == 3
        assert counts[("192.168.0.65", "192.168.0.1", 80, "allowed")] == 3
        assert len(screen.groups) == 5

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_flows_aggregated_with_a_window_and_a_negation(snap_compare):
    app, screen = flows_app()

    async def go(pilot):
        await open_aggregated(pilot, screen, "since:10m --not --to-port 80")
        assert [(g.dport, g.verdict, g.count) for g in screen.groups] == [(81, "denied", 3)]

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_enter_and_why_on_a_group_act_on_its_flows():
    """Enter on a group shows the group (counts, first/last seen) and its newest record;
    why? explains that newest flow; the cursor stays on its group when flows arrive."""
    app, screen = flows_app()

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            await open_aggregated(pilot, screen)
            await pilot.press("down", "down")  # the denied 192.168.0.66 -> :81 group
            group = screen.groups[2]
            assert (group.dport, group.verdict, group.count) == (81, "denied", 3)
            screen.feed("calico-01", [flow(0.5, "allowed", "10.213.0.99", "192.168.0.66", 41020,
                                           80, None, "network2", "profile network2 ingress rule 0")])  # fmt: skip
            await pilot.pause(0.3)
            assert screen.groups[3].key == group.key  # a new group on top; the cursor moved
            await pilot.press("enter")
            await pilot.pause()
            shown = app.screen
            assert isinstance(shown, TextScreen)
            body = json.loads(shown.body)
            assert (body["count"], body["connections"], body["nodes"]) == (
                3, 3, ["calico-01", "calico-02"])  # fmt: skip
            assert body["latest"]["sport"] == 41011 and shown.title_text.startswith("3 flows ")
            await pilot.press("escape")
            await pilot.press("w")
            await pilot.pause()
            why = app.screen.query_one("#why-body").render().plain
            assert "DENIED by default deny ingress (network1)" in why, why
            await pilot.press("escape")
            await pilot.press("a")  # back to single flows
            await pilot.pause(0.3)
            assert len(screen.shown) == len(screen.store.entries) == 10

    asyncio.run(run())
