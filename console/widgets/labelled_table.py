"""A DataTable whose row labels are measured from the rows, whenever the table is drawn.

Textual's DataTable (8.2) learns that rows have labels only on idle, in
`_update_dimensions`, and until then `_compute_row_renderables` leaves every label out.
Those renderables are cached by `_update_count`, and `_update_dimensions` measures the
label column from that same cache. So when a frame is drawn between `add_row` and the
table's idle (a timing matter: it depends on what else is in the message queue), the
label-less renderables of that frame are what gets measured: the label column is 0 wide,
and stays so until the table is cleared. The rows are drawn without their labels, now
and then, for the same data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


class LabelledDataTable(DataTable[Any]):
    """DataTable that always measures its row labels (see the module docstring)."""

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        # Renderables cached before the table knew it had labels lack them: measure afresh.
        self._row_renderable_cache.clear()
        before = (self._labelled_row_exists, self._label_column.content_width)
        super()._update_dimensions(new_rows)
        if (self._labelled_row_exists, self._label_column.content_width) != before:
            # Lines drawn with the old label width are cached under the same update count.
            self._clear_caches()
            self.refresh()
