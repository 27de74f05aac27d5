"""Drill-down, sorting and marks: the pure rules (console.navigate), then the keys on the
browse screen over the fixed cluster (enter down, esc back, shift+letter, space, ctrl+d)."""

from __future__ import annotations

import asyncio

from console.model import VIEWS, Row
from console.navigate import (
    Arrangement,
    Crumb,
    Sort,
    Trail,
    applies_rows,
    drill,
    natural_key,
    next_sort,
    sort_column,
    sort_rows,
)

from .fixtures import seed_state

CID = "6876aae5" + "0" * 24  # the fixture's endpoint on calico-01


def state():
    """The fixture, with the calico-01 pod's uuid the same as its endpoint's container ID
    (as rkt makes them)."""
    st = seed_state()
    pods = st.nodes["calico-01"].pods
    st.nodes["calico-01"].pods = [
        {**p, "uuid": CID} if p["uuid"].startswith("6876aae5") else p for p in pods
    ]
    return st


def rows_of(name, st, arrangement=None):
    view = VIEWS[name]
    return (arrangement or Arrangement()).apply(view.rows(st))


def test_natural_order_numbers_as_numbers_empty_last():
    cells = ["calico-10", "calico-2", "", "Calico-1", "192.168.0.10", "192.168.0.9"]
    rows = [Row(key=str(i), cells=(c,)) for i, c in enumerate(cells)]
    assert [r.cells[0] for r in sort_rows(rows, 0)] == [
        "192.168.0.9", "192.168.0.10", "Calico-1", "calico-2", "calico-10", "",
    ]  # fmt: skip
    assert [r.cells[0] for r in sort_rows(rows, 0, reverse=True)][-1] == ""
    assert natural_key("a2") < natural_key("a10")


def test_shift_letter_picks_the_first_column_and_again_reverses():
    cols = ("NAME", "NODE", "ADDRESS", "AGENT")
    assert sort_column(cols, "N") == 0 and sort_column(cols, "a") == 2
    assert sort_column(cols, "Z") is None
    assert next_sort(None, 2) == Sort(2) and next_sort(Sort(2), 2) == Sort(2, True)
    assert next_sort(Sort(2, True), 0) == Sort(0)


def test_drill_goes_node_pods_endpoints_policies():
    st = state()
    node_row = next(r for r in rows_of("nodes", st) if r.cells[0] == "calico-01")
    view, scope = drill(VIEWS["nodes"], node_row, st)
    pods = rows_of("pods", st, Arrangement(scope))
    assert view.name == "pods" and {r.data["node"] for r in pods} == {"calico-01"} and pods

    pod_row = next(r for r in pods if r.data["app"] == "busybox")
    view, scope = drill(VIEWS["pods"], pod_row, st)
    eps = rows_of("endpoints", st, Arrangement(scope))
    assert view.name == "endpoints" and [r.resource.spec.container_id for r in eps] == [CID]

    view, scope = drill(VIEWS["endpoints"], eps[0], st)
    applies = view.rows(st)
    assert view.name == "applies" and scope is None
    assert [(r.cells[1], r.cells[2], r.cells[3]) for r in applies] == [
        ("Ingress", "GlobalNetworkPolicy", "allow-web"),  # asked first: a policy selects it
        ("Ingress", "Profile", "network1"),  # then its profile
        ("Egress", "Profile", "network1"),  # allow-web is Ingress only
    ]
    assert applies[0].cells[0] == "1" and applies[1].cells[0] == "2"


def test_drill_from_a_profile_or_policy_lists_what_it_applies_to():
    st = state()
    prof = next(r for r in rows_of("profiles", st) if r.cells[0] == "network2")
    view, scope = drill(VIEWS["profiles"], prof, st)
    assert [r.cells[1] for r in rows_of("endpoints", st, Arrangement(scope))] == ["calico-02"]
    pol = rows_of("policies", st)[0]
    view, scope = drill(VIEWS["policies"], pol, st)
    governed = rows_of("endpoints", st, Arrangement(scope))
    assert sorted(",".join(r.resource.spec.profiles) for r in governed) == ["network1"] * 2
    assert drill(VIEWS["pools"], rows_of("pools", st)[0], st) is None


def test_a_missing_profile_is_shown_as_missing():
    st = state()
    key = next(k for k, r in st.resources.items() if getattr(r.spec, "container_id", "") == CID)
    st.resources[key].spec.profiles.append("nosuch")
    rows = applies_rows(st, key)
    assert any(r.cells[3] == "nosuch" and r.state == "error" for r in rows)


def test_the_trail_reads_as_breadcrumbs():
    st = state()
    trail = Trail()
    node_row = next(r for r in rows_of("nodes", st) if r.cells[0] == "calico-01")
    view, scope = drill(VIEWS["nodes"], node_row, st)
    trail.push(Crumb(VIEWS["nodes"], Arrangement(), node_row.key))
    assert trail.text(view, scope) == "nodes › pods › calico-01"
    assert trail.pop().cursor == node_row.key and trail.text(VIEWS["nodes"], None) == ""


def console_app(st):
    from console.app import CalicoConsole

    return CalicoConsole(endpoints="http://127.0.0.1:1", follow=False, state=st)


def title(app) -> str:
    return str(app.screen.query_one("#view-title").render())


def test_enter_goes_down_and_esc_comes_back_to_the_same_row():
    async def run():
        app = console_app(state())
        async with app.run_test(size=(140, 32)) as pilot:
            app.switch_view("nodes")
            await pilot.pause()
            await pilot.press("enter")  # calico-01's pods
            await pilot.pause()
            assert app.browse.view.name == "pods" and "Pods: calico-01" in title(app)
            assert "nodes › pods › calico-01; esc back" in title(app)
            busybox = next(i for i, r in enumerate(app.browse.current_rows())
                           if r.data["app"] == "busybox")  # fmt: skip
            app.browse.query_one("#table").move_cursor(busybox)
            await pilot.press("enter")  # its endpoint
            await pilot.press("enter")  # its policies and profiles
            await pilot.pause()
            assert app.browse.view.name == "applies"
            assert [r.cells[3] for r in app.browse.current_rows()][:2] == ["allow-web", "network1"]
            await pilot.press("escape", "escape")
            await pilot.pause()
            assert app.browse.view.name == "pods"
            assert app.browse.selected().data["app"] == "busybox"  # the cursor where it was
            await pilot.press("escape")
            await pilot.pause()
            assert app.browse.view.name == "nodes" and app.browse.selected().cells[0] == "calico-01"
            await pilot.press("escape")  # nothing further up: stays
            assert app.browse.view.name == "nodes"

    asyncio.run(run())


def test_shift_letter_sorts_and_the_header_says_so():
    async def run():
        app = console_app(state())
        async with app.run_test(size=(140, 32)) as pilot:
            app.switch_view("endpoints")
            await pilot.pause()
            await pilot.press("N")  # NODE (WORKLOAD is W)
            await pilot.pause()
            nodes = [r.cells[1] for r in app.browse.current_rows()]
            assert nodes == sorted(nodes) and "sort NODE ↑" in title(app)
            await pilot.press("N")
            await pilot.pause()
            assert [r.cells[1] for r in app.browse.current_rows()] == sorted(nodes, reverse=True)
            assert "sort NODE ↓" in title(app)
            await pilot.press("question_mark")
            await pilot.pause()
            help_text = str(app.screen.query_one("#text-body").render())
            assert "sort by NODE (again: the other way)" in help_text
            assert "sort by" in help_text and "sort by POOL" not in help_text

    asyncio.run(run())


def test_space_marks_rows_and_ctrl_d_asks_once_for_all_of_them():
    from console.screens.confirm import ConfirmScreen

    async def run():
        app = console_app(state())
        async with app.run_test(size=(140, 32)) as pilot:
            app.switch_view("endpoints")
            await pilot.pause()
            await pilot.press("space", "space")
            await pilot.pause()
            assert len(app.browse.marked) == 2 and "2 marked" in title(app)
            await pilot.press("ctrl+d")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)
            assert "Delete 2 resources: WorkloadEndpoint" in str(app.screen.question)
            await pilot.press("escape")  # no: nothing deleted, the marks stay
            await pilot.pause()
            assert len(app.browse.marked) == 2
            app.switch_view("pods")
            await pilot.pause()
            assert app.browse.marked == set()  # a new view starts unmarked

    asyncio.run(run())
