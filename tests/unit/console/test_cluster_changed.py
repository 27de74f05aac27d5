"""Screens follow the cluster through the app's ClusterChanged message, not timers."""

from __future__ import annotations

import asyncio
import json

import console.screens.matrix as matrix_screen
from calico.datastore import KV
from calico.keys import key_of
from calico.resources import load
from console.sync import SyncReport

from .test_snapshots_matrix import FakeNode, cluster, make_app

ALLOW_NETWORK2 = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "GlobalNetworkPolicy",
    "metadata": {"name": "allow-network2"},
    "spec": {"order": 10, "selector": "has(network2)", "types": ["Ingress"],
             "ingress": [{"action": "Allow"}]},
}  # fmt: skip


def with_policy(doc):
    state = cluster()
    res = load(doc)
    state.apply_kv(key_of(res), KV(key_of(res), json.dumps(doc).encode(), 99, 99))
    return state


async def settle(pilot, predicate, tries=100):
    for _ in range(tries):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError("timed out")


def test_a_sync_report_redraws_the_browse_screen():
    async def run():
        app = make_app()
        async with app.run_test(size=(120, 32)) as pilot:
            app.switch_view("policies")
            await pilot.pause()
            assert len(app.browse.current_rows()) == 1
            app.apply_report(SyncReport(with_policy(ALLOW_NETWORK2), "in-sync"))
            title = app.browse.query_one("#view-title")
            await settle(pilot, lambda: title.render().plain.strip() == "Policies (2)")

    asyncio.run(run())


def test_a_policy_change_reevaluates_the_open_matrix(monkeypatch):
    monkeypatch.setattr(matrix_screen, "NodeClient", FakeNode)

    async def run():
        app = make_app()
        async with app.run_test(size=(120, 32)) as pilot:
            app.switch_view("matrix")
            screen = app.screen
            await settle(pilot, lambda: screen.done)
            assert screen.stale == ""
            app.apply_report(SyncReport(with_policy(ALLOW_NETWORK2), "in-sync"))
            await settle(pilot, lambda: "policy changed" in screen.stale)

    asyncio.run(run())


def test_a_policy_change_that_moves_no_cell_is_not_called_stale(monkeypatch):
    monkeypatch.setattr(matrix_screen, "NodeClient", FakeNode)
    selects_nothing = {**ALLOW_NETWORK2, "metadata": {"name": "selects-nothing"},
                       "spec": {**ALLOW_NETWORK2["spec"], "selector": "has(no-such-label)"}}  # fmt: skip

    async def run():
        app = make_app()
        async with app.run_test(size=(120, 32)) as pilot:
            app.switch_view("matrix")
            screen = app.screen
            await settle(pilot, lambda: screen.done)
            before = screen.policy_print
            app.apply_report(SyncReport(with_policy(selects_nothing), "in-sync"))
            await settle(pilot, lambda: screen.policy_print != before)
            assert screen.stale == ""
            assert "wrong" in screen.query_one("#matrix-title").render().plain

    asyncio.run(run())
