"""What-if in the console on the real 2-node lab: a label edit staged from `:profiles` (`l`)
shows its flips on `:matrix`, changes nothing until `a` (probes still see the old
verdicts), and once applied the probes see what was predicted. A staged edit (`e`, `s`)
whose profile is changed by someone else meanwhile is a conflict: nothing is written.

Set up with the walkthrough's networks + httpd steps (tests/integration/test_console_matrix.py's
fixture); every pod and profile change is undone at the end.
"""

from __future__ import annotations

import asyncio
import stat

import pytest

from calico.datastore import Datastore
from calico.resources import Profile
from calico.tutorial import HTTPD_IP
from console.app import CalicoConsole
from console.matrix import ALLOWED, DENIED
from console.screens.matrix import MatrixScreen
from console.screens.stage import ApplyOrStageScreen, LabelsScreen

from .test_console_matrix import httpd_column, open_matrix, probe_until, tutorial, wait_for

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.etcd, pytest.mark.slow]
__all__ = ["tutorial"]  # the fixture, imported to be used here


def staged_httpd_column(screen) -> dict[str, tuple[str, str, str]]:
    m = screen.matrix
    j = next(j for j, d in enumerate(m.destinations) if d.address == HTTPD_IP)
    return {
        s.label: (m.cell(i, j).expected, m.cell(i, j).staged, m.cell(i, j).observed)
        for i, s in enumerate(m.sources)
    }


async def select_profile(pilot, name: str) -> None:
    app = pilot.app
    app.switch_view("profiles")
    await wait_for(pilot, lambda: any(r.cells[0] == name for r in app.browse.current_rows()))
    rows = [r.cells[0] for r in app.browse.current_rows()]
    app.browse.query_one("#table").move_cursor(row=rows.index(name))
    await pilot.pause()


def test_staged_label_flips_as_predicted_once_applied_and_a_conflict_writes_nothing(
    tutorial, tmp_path, monkeypatch
):
    lab = tutorial
    ds = Datastore.connect(lab.etcd_endpoints)
    kept: dict[str, Profile] = {}  # network2 as the probe pods' CNI ADD created it
    editor = tmp_path / "editor"
    editor.write_text("#!/bin/sh\nsed -i 's/selector: has(network2)/selector: all()/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.delenv("VISUAL", raising=False)
    n2 = [f"network2@{n}" for n in lab.nodes]

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await open_matrix(pilot)
            assert all(httpd_column(screen)[s] == (DENIED, DENIED) for s in n2)
            original = kept["network2"] = ds.get(Profile, "network2")
            await pilot.press("escape")

            # stage: network2's members inherit network1's label, so network1's profile
            # (ingress from has(network1)) would let them reach the httpd pod
            await select_profile(pilot, "network2")
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, LabelsScreen), what="labels")
            await pilot.press(*"network1=", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), what="matrix")
            screen = app.screen
            await wait_for(pilot, lambda: screen.matrix.staged, what="staged marks")
            column = staged_httpd_column(screen)
            assert {s: column[s] for s in n2} == {s: (DENIED, ALLOWED, DENIED) for s in n2}
            flipped = {screen.matrix.cell(i, j).source.label for i, j in screen.matrix.flips()}
            assert set(n2) <= flipped
            whatif = screen.query_one("#matrix-whatif").render().plain
            assert "update Profile(network2)" in whatif and "would flip" in whatif

            # nothing is written while staged: etcd and the probes still say denied
            assert ds.get(Profile, "network2").metadata.resource_version == (
                original.metadata.resource_version
            )
            await pilot.press("r")
            await wait_for(pilot, lambda: screen.done, timeout=30, what="probes")
            assert all(staged_httpd_column(screen)[s][2] == DENIED for s in n2)

            # a: applied; the probes then see the predicted verdicts
            await pilot.press("a")
            await wait_for(
                pilot,
                lambda: "network1" in ds.get(Profile, "network2").spec.labels_to_apply,
                what="the label in etcd",
            )
            await wait_for(pilot, lambda: not app.staging, what="the staging emptied")
            want = {**httpd_column(screen), **{s: (ALLOWED, ALLOWED) for s in n2}}
            await wait_for(
                pilot, lambda: all(httpd_column(screen)[s][0] == ALLOWED for s in n2),
                what="expected to follow the applied change",
            )  # fmt: skip
            await probe_until(pilot, screen, want)
            await pilot.press("escape")

            # a staged edit whose profile moves on meanwhile: a conflict, nothing written
            await select_profile(pilot, "network2")
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ApplyOrStageScreen), what="choice")
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), what="matrix")
            other = ds.get(Profile, "network2")
            other.spec.labels_to_apply["someone"] = "else"
            ds.update(other)
            await wait_for(
                pilot,
                lambda: any(
                    getattr(r, "spec", None) is not None
                    and isinstance(r, Profile)
                    and r.metadata.name == "network2"
                    and "someone" in r.spec.labels_to_apply
                    for r in app.state.resources.values()
                ),
                what="the console to see the other change",
            )
            await pilot.press("a")
            await wait_for(pilot, lambda: "nothing written" in app.last_error, what="conflict")
            assert "Profile(network2)" in app.last_error
            now = ds.get(Profile, "network2")
            assert [r.source.selector for r in now.spec.ingress] == ["has(network2)"]
            assert app.staging  # kept, to look at again or discard
            await pilot.press("x")
            await pilot.pause()
            assert not app.staging

    try:
        asyncio.run(run())
    finally:
        if "network2" in kept:
            current = ds.get(Profile, "network2")
            current.spec = kept["network2"].spec
            ds.update(current)
        ds.close()
