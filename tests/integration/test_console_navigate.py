"""Drill-down, sort and marks (issue 14, item 3) on the real 2-node lab: enter from a node
to its pods, to a pod's endpoint, to the policies and profiles Calico asks for it; esc back;
shift+letter sorts; space marks two pods and one ctrl+d stops and removes both on the node.
"""

from __future__ import annotations

import asyncio

import pytest

from console.app import CalicoConsole
from console.model import pod_rows
from console.navigate import natural_key
from console.screens.confirm import ConfirmScreen
from tests.integration.test_console import networks, remove_pods, wait_for  # noqa: F401
from tests.integration.walkthrough import node_api

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.etcd]

NODE = "calico-01"


def start_pods(lab, count: int) -> list[str]:
    uuids = []
    with node_api(lab, NODE) as client:
        for _ in range(count):
            res = client.run_pod("docker://busybox", ["network1"], "/bin/sleep", ["300"])
            uuids.append(res["uuid"])
    return uuids


def title(app) -> str:
    return str(app.screen.query_one("#view-title").render())


def test_drill_down_from_a_node_to_the_policies_of_its_pods_endpoint(networks):  # noqa: F811
    lab = networks
    uuids = start_pods(lab, 1)
    try:

        async def run():
            app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
            async with app.run_test(size=(140, 40)) as pilot:
                await wait_for(pilot, lambda: any((r.data or {}).get("uuid") == uuids[0]
                                                  for r in pod_rows(app.state)),
                               timeout=20, what="the pod in the console's state")  # fmt: skip
                app.switch_view("nodes")
                await pilot.pause()
                table = app.browse.query_one("#table")
                rows = app.browse.current_rows()
                table.move_cursor(next(i for i, r in enumerate(rows) if r.cells[0] == NODE))
                await pilot.press("enter")
                await pilot.pause()
                pods = app.browse.current_rows()
                assert app.browse.view.name == "pods" and f"Pods: {NODE}" in title(app)
                assert {r.data["node"] for r in pods} == {NODE}
                table.move_cursor(next(i for i, r in enumerate(pods)
                                       if r.data["uuid"] == uuids[0]))  # fmt: skip
                await pilot.press("enter")  # the pod's endpoint
                await wait_for(pilot, lambda: len(app.browse.current_rows()) == 1,
                               timeout=20, what="the pod's endpoint")  # fmt: skip
                ep = app.browse.current_rows()[0]
                assert ep.resource.spec.container_id == uuids[0]
                await pilot.press("enter")  # what Calico asks for it
                await pilot.pause()
                asked = [(r.cells[1], r.cells[2], r.cells[3]) for r in app.browse.current_rows()]
                assert ("Ingress", "Profile", "network1") in asked
                assert ("Egress", "Profile", "network1") in asked
                assert "nodes › pods" in title(app) and "esc back" in title(app)
                await pilot.press("escape", "escape", "escape")
                await pilot.pause()
                assert app.browse.view.name == "nodes"
                assert app.browse.selected().cells[0] == NODE

        asyncio.run(run())
    finally:
        remove_pods(lab, set(uuids))


def test_two_marked_pods_go_with_one_question(networks):  # noqa: F811
    lab = networks
    uuids = start_pods(lab, 2)
    try:

        async def run():
            app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
            async with app.run_test(size=(140, 40)) as pilot:
                app.switch_view("pods")
                await wait_for(pilot, lambda: {r.data["uuid"] for r in app.browse.current_rows()
                                               if r.data} >= set(uuids),
                               timeout=20, what="both pods in :pods")  # fmt: skip
                await pilot.press("U")  # sort by UUID
                await pilot.pause()
                shown = [r.cells[0] for r in app.browse.current_rows()]
                assert shown == sorted(shown, key=natural_key) and "sort UUID ↑" in title(app)
                table = app.browse.query_one("#table")
                for uuid in uuids:
                    rows = app.browse.current_rows()
                    table.move_cursor(next(i for i, r in enumerate(rows)
                                           if r.data["uuid"] == uuid))  # fmt: skip
                    await pilot.press("space")
                assert "2 marked" in title(app)
                await pilot.press("ctrl+d")
                await pilot.pause()
                assert isinstance(app.screen, ConfirmScreen)
                assert "Stop and remove 2 pod(s)" in str(app.screen.question)
                await pilot.press("y")
                await wait_for(pilot, lambda: not {r.data["uuid"] for r in
                                                   app.browse.current_rows() if r.data}
                               & set(uuids), timeout=30, what="both pods gone")  # fmt: skip

        asyncio.run(run())
        with node_api(lab, NODE) as client:
            assert not {p["uuid"] for p in client.pods()} & set(uuids)  # gone on the node
    finally:
        remove_pods(lab, set(uuids))
