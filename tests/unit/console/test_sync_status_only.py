"""A report that only moves the sync state (connecting -> in-sync) redraws the status bar,
not the rows: at 10,000 endpoints a rebuild is 30-90 ms, and the in-sync word that follows a
first listing used to throw the first view's rows away while they were being built."""

from __future__ import annotations

import asyncio

from console.sync import SyncReport

from .test_snapshots_matrix import make_app


def test_a_status_only_report_keeps_the_rows():
    async def run():
        app = make_app()
        async with app.run_test(size=(120, 32)) as pilot:
            app.switch_view("endpoints")
            await pilot.pause()
            generation = app.browse.generation
            state = app.state
            app.apply_report(
                SyncReport(state, "disconnected", "etcd unavailable", data_changed=False)
            )
            await pilot.pause()
            assert app.browse.generation == generation  # no rebuild
            assert app.state is state and app.sync_state == "disconnected"
            bar = app.browse.query_one("StatusBar")
            assert "disconnected" in bar.render().plain
            app.apply_report(SyncReport(state.copy(), "in-sync"))
            await pilot.pause()
            assert app.browse.generation > generation  # data: rebuilt

    asyncio.run(run())
