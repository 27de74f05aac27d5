""":matrix, :flows and why? against the real 2-node lab (issue 8).

Set up with the walkthrough's own steps (networks, httpd on calico-01 in network1 at
192.168.0.100); every pod started here, the agents' probe pods included, is stopped and
removed at the end so later tests see a clean lab.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from calico.datastore import Datastore
from calico.policy import DEFAULT_DENY
from calico.resources import GlobalNetworkPolicy, load
from calico.tutorial import HTTPD_IP
from console.app import CalicoConsole
from console.matrix import ALLOWED, DENIED

from .walkthrough import node_api, walkthrough_httpd

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.etcd]

POLICY = "allow-network2-web"


@pytest.fixture(scope="module")
def tutorial(lab):
    """The walkthrough's networks + httpd steps, run as `calico-lab tutorial` runs them."""
    with walkthrough_httpd(lab):
        try:
            yield lab
        finally:
            try:
                Datastore.connect(lab.etcd_endpoints).delete(GlobalNetworkPolicy, POLICY)
            except Exception:
                pass


async def wait_for(pilot, predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def httpd_running(app) -> bool:
    info = app.state.nodes.get("calico-01")
    return bool(info) and any(
        p.get("state") == "running" and any(n.get("ip") == HTTPD_IP for n in p.get("networks", []))
        for p in info.pods
    )


async def open_matrix(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: httpd_running(app), what="httpd in the node's pods")
    await wait_for(
        pilot,
        lambda: (
            all(
                {"network1", "network2"} <= {n["name"] for n in info.networks}
                for info in app.state.nodes.values()
            )
            and len(app.state.nodes) == 2
        ),
        what="both nodes' networks",
    )
    app.switch_view("matrix")
    screen = app.screen
    await wait_for(pilot, lambda: screen.done, timeout=30, what="every probe answered")
    return screen


def httpd_column(screen) -> dict[str, tuple[str, str]]:
    """Source label -> (expected, observed) for the httpd destination."""
    m = screen.matrix
    j = next(j for j, d in enumerate(m.destinations) if d.address == HTTPD_IP)
    return {
        src.label: (m.cell(i, j).expected, m.cell(i, j).observed) for i, src in enumerate(m.sources)
    }


async def probe_until(pilot, screen, want, tries=4):
    """Press r until the httpd column is `want` (the agent may still be programming)."""
    for _ in range(tries):
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.done, timeout=30, what="probes")
        if httpd_column(screen) == want:
            return
        await pilot.pause(0.5)
    assert httpd_column(screen) == want


def test_matrix_of_the_walkthrough_is_all_correct_and_follows_policy(tutorial):
    lab = tutorial
    n1 = {f"network1@{n}": (ALLOWED, ALLOWED) for n in lab.nodes}
    n2_denied = {f"network2@{n}": (DENIED, DENIED) for n in lab.nodes}
    n2_allowed = {f"network2@{n}": (ALLOWED, ALLOWED) for n in lab.nodes}

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await open_matrix(pilot)
            # network1 <-> network1 allowed across nodes; network2 -> network1 denied
            assert httpd_column(screen) == {**n1, **n2_denied}
            assert screen.matrix.summary().endswith(" 0 wrong"), screen.matrix.summary()
            title = screen.query_one("#matrix-title").render().plain
            assert "0 wrong" in title

            # why? on the denied cell names the profile and says no rule matched
            m = screen.matrix
            i = next(i for i, s in enumerate(m.sources) if s.label == "network2@calico-02")
            j = next(j for j, d in enumerate(m.destinations) if d.address == HTTPD_IP)
            screen.query_one("DataTable").move_cursor(row=i, column=j)
            await pilot.press("w")
            await pilot.pause()
            why = app.screen.query_one("#why-body").render().plain
            assert "profile network1" in why and DEFAULT_DENY in why, why
            assert "would allow" in why
            await pilot.press("escape")

            # a policy that lets network2 reach network1 on TCP 80: expected moves at once
            ds = Datastore.connect(lab.etcd_endpoints)
            ds.create(
                load(
                    {
                        "apiVersion": "projectcalico.org/v3",
                        "kind": "GlobalNetworkPolicy",
                        "metadata": {"name": POLICY},
                        "spec": {
                            "order": 10,
                            "selector": "has(network1)",
                            "types": ["Ingress"],
                            "ingress": [
                                {
                                    "action": "Allow",
                                    "protocol": "TCP",
                                    "source": {"selector": "has(network2)"},
                                    "destination": {"ports": [80]},
                                },
                                {"action": "Pass"},
                            ],
                        },
                    }
                )  # fmt: skip
            )
            await wait_for(
                pilot,
                lambda: all(e == ALLOWED for e, _ in httpd_column(screen).values()),
                what="expected cells to follow the new policy",
            )
            assert "policy changed" in screen.stale
            # ... and observed follows on the next probe: still all correct
            await probe_until(pilot, screen, {**n1, **n2_allowed})
            assert screen.matrix.summary().endswith(" 0 wrong")

            ds.delete(GlobalNetworkPolicy, POLICY)
            await wait_for(
                pilot,
                lambda: (
                    httpd_column(screen)
                    == {
                        **{k: (ALLOWED, o) for k, (_, o) in n1.items()},
                        **{k: (DENIED, ALLOWED) for k in n2_allowed},
                    }
                ),
                what="expected back to denied, observed stale",
            )
            await probe_until(pilot, screen, {**n1, **n2_denied})

    asyncio.run(run())


def test_a_probe_shows_in_flows_within_a_second(tutorial):
    lab = tutorial

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: len(app.node_api_urls()) == 2, what="nodes in etcd")
            app.switch_view("flows")
            screen = app.screen
            await wait_for(
                pilot,
                lambda: (
                    sorted(n for n, (ok, _) in screen.node_status.items() if ok)
                    == sorted(lab.nodes)
                ),
                what="both flow streams",
            )

            def seen(dport, verdict, since):
                return [
                    e
                    for e in screen.store.entries
                    if e.record.get("dst") == HTTPD_IP
                    and e.record.get("dport") == dport
                    and e.verdict == verdict
                    and e.record.get("time", 0) >= since - 0.5
                ]

            for network, verdict in (("network1", "allowed"), ("network2", "denied")):
                t0 = time.time()
                with node_api(lab, "calico-02") as client:
                    result = await asyncio.to_thread(
                        client.probe, HTTPD_IP, 80, network=network, timeout=2.0
                    )
                assert result["result"] == ("connected" if verdict == "allowed" else "timed out")
                answered = time.monotonic()
                await wait_for(
                    pilot, lambda v=verdict, t=t0: seen(80, v, t), timeout=5, what=f"{verdict} flow"
                )
                took = time.monotonic() - answered
                assert took <= 1.0, f"{verdict} flow showed {took:.2f} s after the probe"
                # shown in the table, newest first (not only kept)
                await pilot.pause(0.3)
                assert any(e.verdict == verdict for e in screen.shown[:20])
            denied = seen(80, "denied", 0)[-1]
            assert "network1" in denied.cells[4], denied.cells  # the deciding rule
            # filters like hubble observe
            await pilot.press("slash", *"verdict:denied to:192.168.0.100", "enter")

            def only_denied() -> bool:
                return bool(screen.shown) and all(e.verdict == "denied" for e in screen.shown)

            await wait_for(pilot, only_denied, timeout=5, what="only denied flows shown")
            # why? on that flow: no traffic needed, the policy says the same
            await pilot.press("w")
            await pilot.pause()
            why = app.screen.query_one("#why-body").render().plain
            assert DEFAULT_DENY in why and "profile network1" in why, why

    asyncio.run(run())
