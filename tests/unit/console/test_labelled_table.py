"""Row labels are drawn however the first frame and the table's idle interleave.

The race is made deterministic here by drawing the table's lines (what the compositor
does on a refresh) right after `add_row`, before the table has had its idle.
"""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from console.widgets.labelled_table import LabelledDataTable


def draw(table: DataTable) -> None:
    """Draw every line of the table now, as a frame painted before its idle would."""
    for y in range(table.size.height):
        table.render_line(y)


class OneTable(App[None]):
    def compose(self) -> ComposeResult:
        yield LabelledDataTable()


def test_a_frame_before_idle_keeps_the_row_labels():
    async def run():
        app = OneTable()
        async with app.run_test(size=(60, 8)) as pilot:
            table = app.query_one(LabelledDataTable)
            table.add_column("cell")
            table.add_row("x", label="network2@calico-01")
            draw(table)
            await pilot.pause()
            await pilot.pause()
            assert table._label_column.content_width == len("network2@calico-01")
            assert "network2@calico-01" in app.export_screenshot()

    asyncio.run(run())
