"""The one table every view uses: rows keyed by identity, updated in place."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from console.model import Row, View

STATE_STYLES = {
    "running": "green",
    "programmed": "green",
    "up": "green",
    "exited": "yellow",
    "prepared": "cyan",
    "pending": "yellow",
    "garbage": "dim",
    "down": "red",
    "error": "red",
}


def styled(row: Row) -> list[Text]:
    style = STATE_STYLES.get(row.state, "")
    return [
        Text(cell, style=style) if i == 0 or cell == row.state else Text(cell)
        for i, cell in enumerate(row.cells)
    ]


class ResourceTable(DataTable):
    """A DataTable that shows one View; `show_rows` diffs by row key, never rebuilds."""

    DEFAULT_CSS = """
    ResourceTable { height: 1fr; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.view: View | None = None
        self.rows_by_key: dict[str, Row] = {}

    def set_view(self, view: View) -> None:
        if self.view is view:
            return
        self.view = view
        self.clear(columns=True)
        self.rows_by_key = {}
        for col in view.columns:
            self.add_column(col, key=col)

    def show_rows(self, rows: list[Row]) -> None:
        assert self.view is not None
        wanted = {r.key: r for r in rows}
        for key in [k for k in self.rows_by_key if k not in wanted]:
            self.remove_row(key)
            del self.rows_by_key[key]
        for row in rows:
            old = self.rows_by_key.get(row.key)
            if old is None:
                self.add_row(*styled(row), key=row.key)
            elif old.cells != row.cells or old.state != row.state:
                for col, cell in zip(self.view.columns, styled(row), strict=True):
                    self.update_cell(row.key, col, cell)
            self.rows_by_key[row.key] = row
        if self.rows_by_key and list(self.rows_by_key) != [r.key for r in rows]:
            # order changed (new rows sort in): sort by the first column, stable
            self.sort(self.view.columns[0], key=lambda c: str(c))

    def current(self) -> Row | None:
        if not self.rows_by_key or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value
        except Exception:  # cursor outside the table while it refills
            return None
        return self.rows_by_key.get(key or "")
