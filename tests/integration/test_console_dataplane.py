""":dataplane against the real 2-node lab (issue 14, item 4): the httpd's chains as its
agent programmed them, counters that move on screen when packets pass, a rule that opens
the profile it came from, and a denied flow in :flows that jumps to the rule that dropped it.

Set up with the walkthrough's steps (networks, httpd on calico-01 at 192.168.0.100, the
module fixture of test_console_matrix); every pod and policy made here is removed after.
"""

from __future__ import annotations

import asyncio

import pytest

from calico.datastore import Datastore
from calico.nodeapi import NodeAPIError
from calico.resources import GlobalNetworkPolicy, WorkloadEndpoint, load
from calico.tutorial import HTTPD_IP
from console.app import CalicoConsole
from console.screens.dataplane import DataplaneScreen
from console.screens.text_view import TextScreen
from tests.integration import test_console_matrix
from tests.integration.test_console_matrix import httpd_running, wait_for
from tests.integration.walkthrough import node_api

# The walkthrough's networks and httpd, the module fixture `tutorial` of test_console_matrix
# (registered here as `walkthrough`; it removes what it started).
walkthrough = test_console_matrix.tutorial

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.etcd]

DENY_POLICY = "deny-network2-web"
SIZE = (160, 44)


def httpd_endpoint(app) -> WorkloadEndpoint | None:
    for wep in app.state.of_kind(WorkloadEndpoint):
        if any(n.split("/")[0] == HTTPD_IP for n in wep.spec.ip_networks):
            return wep
    return None


def packets_on_screen(screen: DataplaneScreen, key: str) -> int:
    """The PACKETS cell as the table draws it (exact below 1,000)."""
    return int(screen.query_one("#dp-rules").cell(key, "PACKETS").plain)


async def probe(lab, network: str, times: int = 1, timeout: float = 2.0) -> list[str]:
    results = []
    with node_api(lab, "calico-02") as client:
        for _ in range(times):
            r = await asyncio.to_thread(client.probe, HTTPD_IP, 80, network=network,
                                        timeout=timeout)  # fmt: skip
            results.append(r["result"])
    return results


async def open_httpd_dataplane(pilot) -> DataplaneScreen:
    """:endpoints, the httpd's row, D: its dataplane (what a user does)."""
    app = pilot.app
    await wait_for(pilot, lambda: httpd_running(app) and httpd_endpoint(app) is not None,
                   what="the httpd and its endpoint")  # fmt: skip
    wep = httpd_endpoint(app)
    app.switch_view("endpoints")
    await pilot.pause()
    rows = app.browse.current_rows()
    app.browse.query_one("#table").move_cursor(
        row=next(
            i for i, r in enumerate(rows) if r.resource is wep or r.key.endswith(wep.metadata.name)
        )
    )
    await pilot.press("D")
    screen = app.screen
    assert isinstance(screen, DataplaneScreen)
    assert (screen.node, screen.endpoint) == ("calico-01", wep.metadata.name)
    await wait_for(pilot, lambda: screen.polls >= 1, what="the node's dataplane on screen")
    return screen


def test_traffic_moves_the_profile_rules_counter_on_screen_and_enter_opens_the_profile(walkthrough):
    lab = walkthrough

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_httpd_dataplane(pilot)
            doc = screen.doc
            assert f"cali-tw-{doc.endpoint['interface']}" == next(iter(doc.chains))
            title = str(screen.query_one("#dp-title").render())
            assert title.startswith(f"Dataplane of endpoint {screen.endpoint} on calico-01")
            # the profile's allow rule: "source in the set has(network1) became"
            line = doc.chains["cali-pri-network1"][0]
            assert line.origin == {"kind": "profile", "name": "network1",
                                   "direction": "ingress", "rule_index": 0}  # fmt: skip
            assert "profile network1 ingress rule 0" in str(
                screen.query_one("#dp-rules").cell(line.key, "FROM")
            )
            before = packets_on_screen(screen, line.key)
            # three new connections from network1 on calico-02: a SYN each reaches the rule
            assert await probe(lab, "network1", times=3) == ["connected"] * 3
            await wait_for(pilot, lambda: packets_on_screen(screen, line.key) >= before + 3,
                           timeout=10, what="the rule's packet counter to move on screen")  # fmt: skip
            cell = screen.query_one("#dp-rules").cell(line.key, "PACKETS")
            assert cell.style.color.name == "yellow"  # just moved
            # the selected rule's ipset and its members, as the agent made them
            table = screen.query_one("#dp-rules")
            table.move_to(line.key)
            await pilot.pause()
            side = str(screen.query_one("#dp-detail").render())
            assert f"ipset {line.sets[0]} (hash:net" in side and HTTPD_IP in side, side
            kernel = lab.exec("calico-01", ["ipset", "list", line.sets[0]]).stdout
            assert HTTPD_IP in kernel
            assert f"{HTTPD_IP}/32 dev {doc.endpoint['interface']}" in side  # its route
            # enter: the profile the rule came from, the rule marked
            await pilot.press("enter")
            await pilot.pause()
            shown = app.screen
            assert isinstance(shown, TextScreen), shown
            assert shown.title_text.startswith("Profile network1: where cali-pri-network1 #1")
            assert " ▶ 0: Allow from sources with has(network1)" in shown.body, shown.body

    asyncio.run(run())


def test_a_denied_flow_jumps_to_the_rule_that_dropped_it(walkthrough):
    lab = walkthrough
    ds = Datastore.connect(lab.etcd_endpoints)
    ds.create(load({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": DENY_POLICY},
        "spec": {"order": 10, "selector": "has(network1)", "types": ["Ingress"],
                 "ingress": [{"action": "Deny", "protocol": "TCP",
                              "source": {"selector": "has(network2)"},
                              "destination": {"ports": [80]}},
                             {"action": "Pass"}]},
    }))  # fmt: skip

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(app.node_api_urls()) == 2, what="nodes in etcd")
            app.switch_view("flows")
            flows = app.screen
            await wait_for(pilot, lambda: flows.node_status.get("calico-01", (None,))[0],
                           what="calico-01's flow stream")  # fmt: skip

            def by_policy():
                return [e for e in flows.shown if e.verdict == "denied"
                        and (e.record.get("rule") or {}).get("name") == DENY_POLICY]  # fmt: skip

            for _ in range(10):  # until the agent programmed the policy and a flow names it
                assert await probe(lab, "network2") == ["timed out"]
                await pilot.pause(0.5)
                if by_policy():
                    break
            await pilot.press("space")  # paused, as an operator would: rows stop moving
            assert flows.paused
            entry = by_policy()[0]
            assert entry.record["rule"]["rule_index"] == 0 and entry.node == "calico-01"
            flows.query_one("#flows-table").move_cursor(row=flows.shown.index(entry))
            await pilot.press("g")
            screen = app.screen
            assert isinstance(screen, DataplaneScreen)
            await wait_for(pilot, lambda: screen.polls >= 1, what="the dataplane on screen")
            line = screen.selected_line()
            assert line is not None, "the cursor is on no rule"
            assert line.chain == f"cali-pi-{DENY_POLICY}" and line.target == "DROP", line
            assert line.origin == {"kind": "policy", "name": DENY_POLICY,
                                   "direction": "ingress", "rule_index": 0}  # fmt: skip
            assert line.packets >= 1  # it did drop the probe's SYNs
            side = str(screen.query_one("#dp-detail").render())
            assert f"from policy {DENY_POLICY} ingress rule 0" in side, side
            await pilot.press("enter")
            await pilot.pause()
            shown = app.screen
            assert isinstance(shown, TextScreen)
            assert shown.title_text.startswith(f"GlobalNetworkPolicy {DENY_POLICY}")
            assert " ▶ 0: Deny TCP from sources with has(network2) to ports [80]" in shown.body

    try:
        asyncio.run(run())
    finally:
        ds.delete(GlobalNetworkPolicy, DENY_POLICY)


def test_the_node_api_narrows_to_one_endpoint_and_names_each_rules_origin(walkthrough):
    """GET /v1/dataplane?endpoint= on the real agent: the httpd's chains only, in walk order,
    rules joined to their origins, its ipset and route; an unknown endpoint is a 404."""
    lab = walkthrough
    wep = next(
        w for w in Datastore.connect(lab.etcd_endpoints).list(WorkloadEndpoint)
        if any(n.split("/")[0] == HTTPD_IP for n in w.spec.ip_networks)
    )  # fmt: skip
    iface = wep.spec.interface_name
    with node_api(lab, "calico-01") as client:
        doc = client.dataplane(wep.metadata.name)
        with pytest.raises(NodeAPIError) as err:
            client.dataplane("no-such-endpoint")
    assert err.value.status == 404 and "no-such-endpoint" in str(err.value)
    names = list(doc["chains"])
    assert names[0] == f"cali-tw-{iface}" and f"cali-fw-{iface}" in names
    assert not [n for n in names if n.startswith(("cali-tw-", "cali-fw-")) and iface not in n]
    assert "cali-FORWARD" not in names and "cali-pri-network1" in names
    assert doc["chains"]["cali-pri-network1"][0]["origin"] == {
        "kind": "profile", "name": "network1", "direction": "ingress", "rule_index": 0}  # fmt: skip
    assert doc["routes"] == [{"dst": f"{HTTPD_IP}/32", "kind": "unicast", "dev": iface,
                              "via": None}]  # fmt: skip
    assert any(HTTPD_IP in s["members"] for s in doc["ipsets"].values())
    assert doc["endpoint"]["interface"] == iface and doc["node"] == "calico-01"
