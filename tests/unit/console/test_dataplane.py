""":dataplane's pure view model (console/dataplane.py) and the screen's behaviour with a
fixed node answer: counters that move update in place, enter opens a rule's origin, a flow
jumps to the rule that decided it, an unreachable node is said, polling stops off screen."""

from __future__ import annotations

import asyncio

from calico.nodeapi import NodeAPIError
from console.app import CalicoConsole
from console.dataplane import (
    find_flow_rule,
    flow_endpoint,
    human,
    moved,
    origin_resources,
    origin_text,
    parse_doc,
    table_rows,
)
from console.screens.dataplane import DataplaneScreen
from console.screens.text_view import TextScreen

from .dataplane_fixtures import ENDPOINT, IFACE, dataplane_doc
from .fixtures import seed_state

SIZE = (150, 36)


def test_parse_strips_the_chain_and_hash_and_keeps_the_origin():
    doc = parse_doc(dataplane_doc(ENDPOINT))
    assert list(doc.chains)[0] == f"cali-tw-{IFACE}"
    prof = doc.chains["cali-pri-network1"]
    assert prof[0].text.startswith("-m set --match-set cali40s:") and "cali:" not in prof[0].text
    assert prof[0].sets and prof[0].sets[0] in doc.ipsets
    assert origin_text(prof[0].origin) == "profile network1 ingress rule 0"
    rows = table_rows(doc)
    assert rows[0].key == f"chain:cali-tw-{IFACE}" and rows[0].state == "chain"
    assert doc.line(rows[1].key) is doc.chains[f"cali-tw-{IFACE}"][0]


def test_counters_that_moved_are_found_and_nothing_else():
    before = parse_doc(dataplane_doc(ENDPOINT))
    after = parse_doc(dataplane_doc(ENDPOINT, bump={"cali-pri-network1": 5}))
    assert moved(before, after) == {r.key for r in after.chains["cali-pri-network1"]}
    assert moved(None, after) == set() and before.shape() == after.shape()
    assert [human(n) for n in (999, 1234, 56789, 7_800_000)] == ["999", "1.2K", "57K", "7.8M"]


def test_a_denied_flow_finds_the_drop_and_an_allowed_one_its_rule():
    doc = parse_doc(dataplane_doc(ENDPOINT))
    denied = {"kind": "default", "name": "network1", "direction": "ingress", "rule_index": None}
    line = find_flow_rule(doc, {**denied, "truncated": False, "raw": "D|I|def|network1|-"})
    assert line is not None and line.target == "DROP" and line.chain.startswith("cali-tp-")
    allowed = {"kind": "policy", "name": "allow-web", "direction": "ingress", "rule_index": 0}
    line = find_flow_rule(doc, allowed)
    assert line is not None and line.chain == "cali-pi-allow-web" and "MARK" in line.text
    assert find_flow_rule(doc, {"text": "cannot say"}) is None
    gone = {**allowed, "name": "deleted-policy"}
    assert find_flow_rule(doc, gone) is None
    # a long name the NFLOG prefix cut: the kept part, kind, direction and index decide
    cut = {**denied, "name": "netw", "truncated": True, "name_hash": "0123abcd"}
    assert find_flow_rule(doc, cut) is find_flow_rule(doc, denied)
    assert find_flow_rule(doc, {**cut, "truncated": False}) is None
    record = {"direction": "ingress", "dst_endpoint": {"name": ENDPOINT}, "src_endpoint": None}
    assert flow_endpoint(record) == ENDPOINT
    assert flow_endpoint({"rule": {"direction": "egress"}, "src_endpoint": {"name": "a"}}) == "a"


def test_origin_resources_are_the_policy_or_the_profiles():
    state = seed_state()
    pol = origin_resources(state, {"kind": "policy", "name": "allow-web"})
    assert [r.KIND for r in pol] == ["GlobalNetworkPolicy"]
    profs = origin_resources(state, {"kind": "default", "name": "network1,network2"})
    assert [r.metadata.name for r in profs] == ["network1", "network2"]
    assert origin_resources(state, {"kind": "policy", "name": "default/nope"}) == []


class Node:
    """A node API stand-in: answers the fixture, then with the profile's counters `step`
    packets higher each call; `fail` makes it unreachable."""

    def __init__(self, step: int = 3) -> None:
        self.step = step
        self.calls: list[tuple[str, str | None]] = []
        self.fail = False

    def __call__(self, node: str, endpoint: str | None) -> dict:
        self.calls.append((node, endpoint))
        if self.fail:
            raise NodeAPIError("node API at unix:///x unreachable: connection refused")
        return dataplane_doc(
            endpoint, bump={"cali-pri-network1": self.step * (len(self.calls) - 1)}
        )


def make_app() -> CalicoConsole:
    return CalicoConsole(
        endpoints="http://127.0.0.1:1", cluster_name="calilab", follow=False, state=seed_state()
    )


async def wait_polls(pilot, screen, n: int) -> None:
    for _ in range(200):
        if screen.polls >= n:
            return
        await pilot.pause(0.02)
    raise AssertionError(f"{screen.polls} answers shown, wanted {n}")


def test_counters_move_in_place_and_enter_opens_the_profile():
    node = Node()

    async def run():
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = DataplaneScreen("calico-01", ENDPOINT, fetch=node, poll=3600)
            app.push_screen(screen)
            await wait_polls(pilot, screen, 1)
            key = "cali-pri-network1#1"
            table = screen.query_one("#dp-rules")
            before = table.cell(key, "PACKETS").plain
            screen.action_refresh()
            await wait_polls(pilot, screen, 2)
            after = table.cell(key, "PACKETS")
            assert int(after.plain) == int(before) + 3 and after.style.color.name == "yellow"
            table.move_to(key)
            await pilot.press("enter")
            await pilot.pause()
            shown = app.screen
            assert isinstance(shown, TextScreen)
            assert shown.title_text.startswith("Profile network1: where cali-pri-network1 #1")
            assert " ▶ 0: Allow from sources with has(network1)" in shown.body
            await pilot.press("escape")
            await pilot.press("question_mark")
            await pilot.pause()
            assert "open the policy or profile the selected rule came from" in app.screen.body

    asyncio.run(run())
    assert node.calls[0] == ("calico-01", ENDPOINT)


def test_an_unreachable_node_is_said_and_polling_stops_off_screen():
    node = Node()
    node.fail = True

    async def run():
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = DataplaneScreen("calico-01", fetch=node, poll=0.05)
            app.push_screen(screen)
            for _ in range(100):
                await pilot.pause(0.02)
                if screen.error:
                    break
            status = str(screen.query_one("#dp-status").render())
            assert "unreachable: connection refused" in status and "trying again" in status
            app.push_screen(TextScreen("x", "y"))  # another screen on top
            await pilot.pause(0.1)
            calls = len(node.calls)
            await pilot.pause(0.4)
            assert len(node.calls) == calls  # no polling while not shown
            app.pop_screen()
            await pilot.pause(0.3)
            assert len(node.calls) > calls

    asyncio.run(run())


def test_colon_dataplane_from_the_endpoints_view_opens_that_endpoint():
    async def run():
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            app.switch_view("endpoints")
            await pilot.pause()
            rows = app.browse.current_rows()
            want = next(i for i, r in enumerate(rows) if r.resource.spec.node == "calico-01")
            app.browse.query_one("#table").move_cursor(row=want)
            await pilot.press("D")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, DataplaneScreen)
            assert (screen.node, screen.endpoint) == ("calico-01", ENDPOINT)

    asyncio.run(run())


def test_colon_dataplane_from_the_nodes_view_opens_that_node():
    async def run():
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            app.switch_view("nodes")
            await pilot.pause()
            rows = app.browse.current_rows()
            app.browse.query_one("#table").move_cursor(
                row=next(i for i, r in enumerate(rows) if r.cells[0] == "calico-02")
            )
            await pilot.press("colon", *"dataplane", "enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, DataplaneScreen)
            assert (screen.node, screen.endpoint) == ("calico-02", None)
            # no API address for calico-02 in this fixture: said, not swallowed
            for _ in range(100):
                await pilot.pause(0.02)
                if screen.error:
                    break
            assert "calico-02 publishes no API address" in screen.error

    asyncio.run(run())
