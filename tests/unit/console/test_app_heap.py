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
