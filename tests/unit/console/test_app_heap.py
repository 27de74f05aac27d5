"""While the console runs, what was alive when it started is out of the collector's sight
(console/app.py on_load); when it stops, it is given back, so a process that runs many
consoles (these tests) keeps collecting their garbage."""

from __future__ import annotations

import asyncio
import gc

from console.app import CalicoConsole


def test_the_heap_is_frozen_while_the_console_runs_and_thawed_after():
    before = gc.get_freeze_count()

    async def run() -> int:
        app = CalicoConsole(endpoints="http://127.0.0.1:1", follow=False)
        async with app.run_test() as pilot:
            await pilot.pause()
            return gc.get_freeze_count()

    during = asyncio.run(run())
    assert during > before
    assert gc.get_freeze_count() == 0


def test_collections_wait_for_the_first_rows_and_resume_after():
    """The collector is off from the console's start until rows of a listing are on
    screen; then on, whatever happened (and on again if the console stops before)."""
    from console.model import ClusterState
    from console.sync import SyncReport

    assert gc.isenabled()

    async def run() -> list[bool]:
        app = CalicoConsole(endpoints="http://127.0.0.1:1", follow=False)
        app._listed = False  # as a following console before its first listing
        seen = []
        async with app.run_test() as pilot:
            await pilot.pause()
            seen.append(gc.isenabled())  # started, nothing listed: off
            app.apply_report(SyncReport(ClusterState(), "connecting", listed=False))
            await pilot.pause()
            seen.append(gc.isenabled())  # rows shown, but not a listing's: still off
            app.apply_report(SyncReport(ClusterState(), "in-sync", listed=True))
            await pilot.pause()
            seen.append(gc.isenabled())  # a listing's rows: on
        return seen

    assert asyncio.run(run()) == [False, False, True]
    assert gc.isenabled()

    async def stopped_early() -> bool:
        app = CalicoConsole(endpoints="http://127.0.0.1:1", follow=False)
        app._listed = False
        async with app.run_test() as pilot:
            await pilot.pause()
            return gc.isenabled()

    assert asyncio.run(stopped_early()) is False
    assert gc.isenabled()  # released when the console stopped
