"""The console against a real 2-node lab (issue 7): every view, launch, probe, edit.

Pilot tests drive the real app; what they assert is what a user sees on screen and what
lands in etcd or the nodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time

import pytest

from calico.datastore import Datastore
from calico.tutorial import network_conf
from console.app import CalicoConsole
from console.model import VIEWS

from .walkthrough import node_api

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.etcd]


async def wait_for(pilot, predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def networks(lab):
    for node in lab.nodes:
        for net in ("network1", "network2"):
            lab.write_net_conf(node, f"10-calico-{net}.conf", network_conf(net))
    return lab


def remove_pods(lab, uuids):
    for node in lab.nodes:
        with node_api(lab, node) as client:
            for pod in client.pods():
                if pod["uuid"] in uuids:
                    client.stop_pod(pod["uuid"])
                    client.remove_pod(pod["uuid"])


def running_pods(app, node, app_name="busybox"):
    info = app.state.nodes.get(node)
    return [
        p
        for p in (info.pods if info else [])
        if p.get("app") == app_name and p.get("state") == "running"
    ]


def test_every_view_shows_the_live_cluster(networks):
    lab = networks

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(
                pilot,
                lambda: len([r for r in app.browse.current_rows() if r.cells[2] == "ready"]) == 2,
                what="both agents ready in :nodes",
            )
            for name in VIEWS:
                await pilot.press("colon", *name, "enter")
                await pilot.pause()
                assert app.browse.view.name == name
                assert (
                    app.screen.query_one("#view-title")
                    .render()
                    .plain.strip()
                    .startswith(VIEWS[name].title)
                )
            # pools and networks come from etcd and the nodes' net.d files
            app.switch_view("pools")
            assert any(r.cells[1] == "192.168.0.0/16" for r in app.browse.current_rows())
            app.switch_view("networks")
            await wait_for(pilot, lambda: {"network1", "network2"} <= {r.cells[0] for r in app.browse.current_rows()},
                           what="networks from net.d")  # fmt: skip

    asyncio.run(run())


def test_nodes_show_their_bgp_sessions(networks):
    """:nodes has each node's BGP sessions as its agent reports them (BIRD, the mesh of
    two: 1/1 up) and describe lists the peer, Established, as calicoctl node status does."""
    from console.screens.browse import describe

    lab = networks

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(140, 40)) as pilot:
            app.switch_view("nodes")
            await wait_for(
                pilot,
                lambda: [r.cells.count("1/1 up") for r in app.browse.current_rows()] == [1, 1],
                what="both nodes' BGP column 1/1 up",
            )
            row = next(r for r in app.browse.current_rows() if r.cells[0] == "calico-01")
            text = describe(row, app.state)
            peer = lab.node_address("calico-02")
            assert "BGP: backend bird, BIRD running" in text, text
            assert any(
                peer in line and "node-to-node mesh" in line and "Established" in line
                for line in text.splitlines()
            ), text

    asyncio.run(run())


def test_launch_a_pod_through_the_form_then_probe_it(networks):
    lab = networks
    started: list[str] = []

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(140, 44)) as pilot:
            await wait_for(pilot, lambda: len(app.known_networks()) >= 2, what="networks known")
            before = {p["uuid"] for p in running_pods(app, "calico-02")}
            await pilot.press("n")
            await pilot.pause()
            form = app.screen
            form.query_one("#networks").value = "network1"
            form.query_one("#command").value = "httpd -f -h /"
            from textual.widgets import Select

            form.query_one("#node", Select).value = "calico-02"
            await pilot.click("#launch")
            t0 = time.monotonic()
            await wait_for(
                pilot, lambda: {p["uuid"] for p in running_pods(app, "calico-02")} - before, timeout=20,
                what="the launched pod in Pods",
            )  # fmt: skip
            new = [p for p in running_pods(app, "calico-02") if p["uuid"] not in before][0]
            started.append(new["uuid"])
            seen_after = time.monotonic() - t0
            app.switch_view("pods")
            await pilot.pause()
            assert any(r.cells[0] == new["uuid"][:8] for r in app.browse.current_rows())
            ip = next(n["ip"] for n in new["networks"] if n["name"] == "network1")
            print(f"launched pod visible in Pods after {seen_after:.2f} s")

            # probe that connects: a new pod on network1 on the other node -> the pod's :80
            app.switch_view("nodes")  # nothing pod-shaped selected: the probe starts a fresh pod
            await pilot.pause()
            await pilot.press("p")
            await pilot.pause()
            probe = app.screen
            probe.query_one("#probe-network").value = "network1"
            probe.query_one("#probe-node").value = "calico-01"
            probe.query_one("#probe-target").value = f"{ip}:80"
            probe.query_one("#probe-timeout").value = "2"
            await pilot.click("#probe")
            await wait_for(
                pilot, lambda: len(app.probe_history) == 1, timeout=30, what="first probe"
            )
            assert app.probe_history[0].result == "connected"
            assert "CONNECTED" in probe.query_one("#probe-result").render().plain

            # probe that times out: from network2
            probe.query_one("#probe-network").value = "network2"
            await pilot.click("#probe")
            await wait_for(
                pilot, lambda: len(app.probe_history) == 2, timeout=30, what="second probe"
            )
            assert app.probe_history[1].result == "timed out"
            assert 1.9 <= app.probe_history[1].seconds <= 2.5
            assert probe.query_one("#probe-history").row_count == 2

    try:
        asyncio.run(run())
    finally:
        remove_pods(lab, set(started))


def test_edit_a_profile_in_yaml(networks, tmp_path, monkeypatch):
    lab = networks
    ds = Datastore.connect(lab.etcd_endpoints)
    from calico.resources import load

    if not any(p.metadata.name == "network1" for p in ds.list("Profile")):
        ds.create(load({"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": "network1"},
                        "spec": {"labelsToApply": {"network1": ""}}}))  # fmt: skip
    original = ds.get("Profile", "network1")

    good = tmp_path / "good-editor"
    good.write_text(
        "#!/bin/sh\nsed -i 's/^metadata:/metadata:\\n  labels: {edited-by: console}/' \"$1\"\n"
    )
    bad = tmp_path / "bad-editor"
    bad.write_text(
        "#!/bin/sh\nprintf 'kind: Profile\\napiVersion: projectcalico.org/v3\\nmetadata: {name: network1}\\nspec:\\n  ingress: [{action: Accept}]\\n' > \"$1\"\n"
    )
    for f in (good, bad):
        f.chmod(f.stat().st_mode | stat.S_IEXEC)

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(140, 40)) as pilot:
            app.switch_view("profiles")
            await wait_for(
                pilot,
                lambda: any(r.cells[0] == "network1" for r in app.browse.current_rows()),
                what="profiles",
            )
            table = app.screen.query_one("#table")
            table.move_cursor(row=[r.cells[0] for r in app.browse.current_rows()].index("network1"))
            await pilot.pause()

            monkeypatch.setenv("EDITOR", str(bad))
            await pilot.press("e")
            await wait_for(
                pilot, lambda: "Accept" in app.last_error, timeout=10, what="the validation error"
            )
            assert "spec.ingress[0].action" in app.last_error
            assert (
                ds.get("Profile", "network1").metadata.resource_version
                == original.metadata.resource_version
            )

            monkeypatch.setenv("EDITOR", str(good))
            await pilot.press("e")
            # apply now (a) rather than stage it for what-if (s)
            await wait_for(pilot, lambda: "Apply" in type(app.screen).__name__, what="the choice")
            await pilot.press("a")
            await wait_for(
                pilot, lambda: ds.get("Profile", "network1").metadata.labels.get("edited-by") == "console",
                what="the edit in etcd",
            )  # fmt: skip
            edited = ds.get("Profile", "network1")
            assert edited.spec == original.spec and edited.metadata.uid == original.metadata.uid

    try:
        asyncio.run(run())
    finally:
        current = ds.get("Profile", "network1")
        current.metadata.labels = original.metadata.labels
        ds.update(current)
        ds.close()


def test_an_unreachable_node_is_shown_not_a_crash(networks):
    lab = networks

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: len(app.state.nodes) == 2, what="node infos")
            # a node whose API address points nowhere: the poller reports it unreachable
            real = app.node_api_urls
            app.poller.nodes = lambda: {**real(), "calico-02": "unix:///nonexistent/agent.sock"}
            app.poller.poll_now()
            await wait_for(
                pilot,
                lambda: any(
                    r.cells[0] == "calico-02" and r.cells[2] == "unreachable"
                    for r in app.browse.current_rows()
                ),
                what="calico-02 unreachable",
            )
            assert app.is_running

    asyncio.run(run())


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps({"views": list(VIEWS)}), os.getpid())


def test_the_tutorial_runs_from_the_console(networks):
    """`:tutorial`, `a`: every step runs against the live lab and passes (issue 8)."""
    lab = networks

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name, lab_name=lab.name)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: len(app.state.nodes) == 2, what="node infos")
            app.switch_view("tutorial")
            await pilot.pause()
            screen = app.screen
            await pilot.press("a")
            steps = screen.tutorial.steps
            await wait_for(
                pilot,
                lambda: (
                    all(s.result is not None for s in steps)
                    or any(s.result is not None and not s.result.ok for s in steps)
                ),
                timeout=120,
                what="the walkthrough",
            )
            failed = [(s.key, s.result.seen) for s in steps if not s.result.ok]
            assert not failed, failed
            screen.query_one("ListView").index = 6
            screen.show_detail(6)
            await pilot.pause()
            assert "PASS" in screen.query_one("#detail").render().plain

    asyncio.run(run())
