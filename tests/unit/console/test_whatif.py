"""What-if in the console, with fixed data (fake node answers, no lab): staging from the
browse screen (`l` labels, `e` edit then `s`), the three-state matrix with its flips marked,
why? explaining both verdicts, `x` discarding. Snapshots of the new screens.

Update the snapshots after an intended change:
pytest tests/unit/console/test_whatif.py --snapshot-update
"""

from __future__ import annotations

import asyncio
import stat
import time

import pytest

import console.screens.matrix as matrix_screen
from calico.whatif import Label
from console.matrix import ALLOWED, DENIED, render_text
from console.screens.matrix import MatrixScreen
from console.screens.stage import ApplyOrStageScreen, LabelsScreen

from .test_snapshots_matrix import SIZE, FakeNode, make_app, open_matrix

NETWORK2_POD = "192.168.0.66"


@pytest.fixture(autouse=True)
def fake_nodes(monkeypatch):
    monkeypatch.setattr(matrix_screen, "NodeClient", FakeNode)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def network1_learns_network2(app) -> None:
    """Stage: profile network1 hands its members the label network2 too, so network2's
    profile (ingress from has(network2)) would let them in."""
    app.staging.add(Label("Profile", "network1", None, {"network2": ""}), app.state)


def flipped(screen: MatrixScreen) -> set[tuple[str, str]]:
    m = screen.matrix
    return {(m.cell(i, j).source.label, m.cell(i, j).destination.address) for i, j in m.flips()}


def test_the_matrix_shows_now_after_observed_and_marks_the_flips(snap_compare):
    app = make_app()
    network1_learns_network2(app)

    async def go(pilot):
        screen = await open_matrix(pilot)
        assert flipped(screen) == {
            ("network1@calico-01", NETWORK2_POD),
            ("network1@calico-02", NETWORK2_POD),
        }
        for i, j in screen.matrix.flips():
            cell = screen.matrix.cell(i, j)
            assert (cell.expected, cell.staged, cell.observed) == (DENIED, ALLOWED, DENIED)
        assert "2 cells would flip" in str(screen.query_one("#matrix-whatif").render())
        await pilot.press("f")  # the first flip: its story below the grid says both verdicts
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_why_on_a_flipping_cell_explains_both_verdicts(snap_compare):
    app = make_app()
    network1_learns_network2(app)

    async def go(pilot):
        await open_matrix(pilot)
        await pilot.press("f", "w")
        await pilot.pause()
        now = str(pilot.app.screen.query_one("#why-body").render())
        after = str(pilot.app.screen.query_one("#why-after").render())
        assert now.startswith(" DENIED ") and "default deny" in now
        assert after.startswith(" ALLOWED ") and "profile network2 ingress rule 0" in after

    assert snap_compare(app, terminal_size=(120, 48), run_before=go)


def test_render_text_has_three_states_and_the_flip_mark():
    app = make_app()
    network1_learns_network2(app)

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_matrix(pilot)
            text = "\n".join(render_text(screen.matrix))
            assert "X>./X*" in text and "2 would flip" in text

    asyncio.run(run())


def test_labels_key_stages_opens_the_matrix_and_x_discards_it(snap_compare):
    app = make_app()

    async def go(pilot):
        pilot.app.switch_view("profiles")
        await pilot.pause()
        rows = [r.cells[0] for r in pilot.app.browse.current_rows()]
        pilot.app.browse.query_one("#table").move_cursor(row=rows.index("network1"))
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(pilot.app.screen, LabelsScreen)
        await pilot.press(*"network2=")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_labels_then_matrix_then_discard():
    app = make_app()

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            pilot.app.switch_view("profiles")
            await pilot.pause()
            rows = [r.cells[0] for r in app.browse.current_rows()]
            app.browse.query_one("#table").move_cursor(row=rows.index("network1"))
            await pilot.press("l", *"network2= -network1", "enter")
            for _ in range(100):
                await pilot.pause(0.02)
                if isinstance(app.screen, MatrixScreen) and app.screen.done:
                    break
            screen = app.screen
            assert isinstance(screen, MatrixScreen)
            (change,) = app.staging.changes
            assert (change.set, change.remove) == ({"network2": ""}, ("network1",))
            # without network1 on its members, network1's own profile shuts them out of
            # each other, and network2's lets them in
            assert screen.matrix.flips()
            await pilot.press("x")
            await pilot.pause()
            assert not app.staging and screen.matrix.flips() == []
            assert all(c.staged == "" for c in screen.matrix.cells.values())
            await pilot.press("a")  # nothing staged: says so, writes nothing
            await pilot.pause()

    asyncio.run(run())


def test_a_bad_label_edit_is_refused_and_nothing_is_staged():
    app = make_app()

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            pilot.app.switch_view("pools")
            await pilot.pause()
            await pilot.press("l")  # a pool has no labels that decide flows
            await pilot.pause()
            assert not isinstance(app.screen, LabelsScreen)
            pilot.app.switch_view("profiles")
            await pilot.pause()
            await pilot.press("l", *"novalue", "enter")
            await pilot.pause()
            assert not app.staging and "novalue" in app.last_error

    asyncio.run(run())


def test_edit_then_stage_puts_the_edit_on_the_matrix(tmp_path, monkeypatch):
    editor = tmp_path / "editor"
    # network2 lets everyone in: every denied cell towards its pod would flip
    editor.write_text("#!/bin/sh\nsed -i 's/selector: has(network2)/selector: all()/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.delenv("VISUAL", raising=False)
    app = make_app()

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            pilot.app.switch_view("profiles")
            await pilot.pause()
            rows = [r.cells[0] for r in app.browse.current_rows()]
            app.browse.query_one("#table").move_cursor(row=rows.index("network2"))
            await pilot.press("e")
            await pilot.pause()
            assert isinstance(app.screen, ApplyOrStageScreen)
            await pilot.press("s")
            for _ in range(100):
                await pilot.pause(0.02)
                if isinstance(app.screen, MatrixScreen) and app.screen.done:
                    break
            assert flipped(app.screen) == {
                ("network1@calico-01", NETWORK2_POD),
                ("network1@calico-02", NETWORK2_POD),
            }
            (change,) = app.staging.changes
            assert change.resource.metadata.resource_version  # the CAS base: read at

    asyncio.run(run())


def test_new_policy_with_c_asks_create_or_stage(snap_compare, monkeypatch):
    monkeypatch.setenv("EDITOR", "true")  # the template as it is
    monkeypatch.delenv("VISUAL", raising=False)
    app = make_app()

    async def go(pilot):
        pilot.app.switch_view("policies")
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(pilot.app.screen, ApplyOrStageScreen)

    assert snap_compare(app, terminal_size=SIZE, run_before=go)


def test_new_policy_staged_lets_network2_in_on_80_and_the_status_bar_says_so(monkeypatch):
    monkeypatch.setenv("EDITOR", "true")
    monkeypatch.delenv("VISUAL", raising=False)
    app = make_app()

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            pilot.app.switch_view("pods")
            await pilot.pause()
            await pilot.press("c")  # not a view of profiles or policies: says where to go
            await pilot.pause()
            assert not isinstance(app.screen, ApplyOrStageScreen)
            pilot.app.switch_view("policies")
            await pilot.pause()
            await pilot.press("c", "s")
            for _ in range(100):
                await pilot.pause(0.02)
                if isinstance(app.screen, MatrixScreen) and app.screen.done:
                    break
            (change,) = app.staging.changes
            assert change.resource.ident == "GlobalNetworkPolicy(new-policy)"
            # allow-web already lets network2 into network1 on 80: the new one adds nothing
            assert app.screen.matrix.flips() == []
            whatif = str(app.screen.query_one("#matrix-whatif").render())
            assert "create GlobalNetworkPolicy(new-policy)" in whatif and "0 cells" in whatif
            await pilot.press("escape")
            await pilot.pause()
            status = str(app.browse.query_one("#status").render())
            assert "what-if: 1 staged (:matrix)" in status

    asyncio.run(run())
