"""Snapshot tests of every view with fixed data (pytest-textual-snapshot).

Update after an intended change: pytest tests/unit/console --snapshot-update
"""

import pytest

from console.app import CalicoConsole

from .fixtures import seed_state

SIZE = (120, 32)


def app():
    return CalicoConsole(
        endpoints="http://127.0.0.1:1", cluster_name="calilab", follow=False, state=seed_state()
    )


@pytest.mark.parametrize(
    "view", ["nodes", "networks", "profiles", "pools", "pods", "endpoints", "policies"]
)
def test_view(snap_compare, view):
    async def go(pilot):
        pilot.app.switch_view(view)
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)


def test_describe_profile(snap_compare):
    async def go(pilot):
        pilot.app.switch_view("profiles")
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)


def test_describe_node_lists_its_bgp_peers(snap_compare):
    async def go(pilot):
        pilot.app.switch_view("nodes")
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)


def test_filter_and_help(snap_compare):
    async def go(pilot):
        pilot.app.switch_view("endpoints")
        await pilot.press("slash", *"!network2", "enter")
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)


def test_empty_view_says_what_to_do(snap_compare):
    async def go(pilot):
        pilot.app.state.resources.clear()
        pilot.app.switch_view("profiles")
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)


def test_tutorial_default_deny(snap_compare):
    """`:tutorial default-deny`: the walkthrough's heading, its steps, the first step's words."""

    async def go(pilot):
        pilot.app.switch_view("tutorial default-deny")
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)


def test_drill_down_to_an_endpoints_policies(snap_compare):
    """enter on an endpoint: the policies and profiles Calico asks for it, the breadcrumbs."""

    async def go(pilot):
        pilot.app.switch_view("endpoints")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)


def test_marked_rows_and_a_sort(snap_compare):
    """shift+N sorts endpoints by NODE (the title says so); space marks two rows (gold)."""

    async def go(pilot):
        pilot.app.switch_view("endpoints")
        await pilot.pause()
        await pilot.press("N", "N", "space", "space")
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)
