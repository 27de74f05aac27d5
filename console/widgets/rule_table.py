"""The `:dataplane` table: the virtual ResourceTable (draws only the lines on screen), with a
chain's heading in bold, counters right-aligned and those that just moved highlighted, and
each rule's origin in green.

Virtual because a node at 1,000 endpoints has about 5,500 rules in 2,200 chains: Textual's
DataTable took 2.1 s to take those 7,800 rows (bench/bench_dataplane_view.py), this takes
one assignment, and a repaint costs the same for 40 rows or 40,000.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

from console.model import Row, View
from console.widgets.resource_table import GAP, ResourceTable, fit

COUNTERS = ("PACKETS", "BYTES")
HOT = Style(color="yellow", bold=True)  # a counter that moved since the last answer
HEADING = Style(color="cyan", bold=True)
ORIGIN = Style(color="green")
FROM_WIDTH = 36  # the longest origin text cut here; RULE takes what is left of the width
MIN_RULE = 24


class RuleTable(ResourceTable):
    """Rows of console.dataplane.table_rows; `hot` holds the keys whose counters moved."""

    def __init__(self, columns: tuple[str, ...], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.set_view(View("dataplane", "Dataplane", columns, lambda state: [], ""))
        self.hot: set[str] = set()
        self.index: dict[str, int] = {}

    def show_rows(self, rows: list[Row], hot: set[str] | None = None) -> None:
        self.hot = hot or set()
        self.index = {r.key: i for i, r in enumerate(rows)}
        super().show_rows(rows)
        self.fit_widths()

    def on_resize(self) -> None:
        self.fit_widths()

    def fit_widths(self) -> None:
        """The counters as wide as they need, FROM up to FROM_WIDTH, RULE the rest of the
        table's width (cut with …; the side pane shows the whole rule), so no column is lost
        off the right edge. One pass over the rows: ~5 ms at 7,800."""
        if self.view is None or not self.rows:
            return
        cols = self.view.columns
        natural = [len(c) for c in cols]
        for row in self.rows:
            for i, cell in enumerate(row.cells):
                if len(cell) > natural[i]:
                    natural[i] = len(cell)
        widths = dict(zip(cols, natural, strict=True))
        widths["FROM"] = min(widths["FROM"], FROM_WIDTH)
        room = self.size.width - GAP * len(cols) - sum(w for c, w in widths.items() if c != "RULE")
        widths["RULE"] = max(MIN_RULE, min(widths["RULE"], room))
        self.widths = [widths[c] for c in cols]
        self._resize()
        self.refresh()

    def move_to(self, key: str) -> bool:
        """Put the cursor on the row with `key` (scrolled into view)."""
        if key not in self.index:
            return False
        self.move_cursor(self.index[key])
        return True

    def cell_style(self, row: Row, column: str) -> Style:
        if row.state == "chain":
            return HEADING
        if column in COUNTERS and row.key in self.hot:
            return HOT
        if column == "FROM":
            return ORIGIN
        return Style()

    def cell(self, key: str, column: str) -> Text:
        """A cell as it is drawn: its text and style (what tests read)."""
        row = self.rows_by_key[key]
        assert self.view is not None
        text = row.cells[self.view.columns.index(column)]
        return Text(text, style=self.cell_style(row, column))

    def render_line(self, y: int) -> Strip:
        if y == 0 or self.view is None:
            return super().render_line(y)
        width = self.size.width
        scroll_x, scroll_y = int(self.scroll_x), int(self.scroll_y)
        index = scroll_y + y - 1
        if index >= len(self.rows):
            return Strip.blank(width)
        row = self.rows[index]
        base = self.row_style(index)
        segments = []
        for column, cell, w in zip(self.view.columns, row.cells, self.widths, strict=False):
            text = cell.rjust(w) if column in COUNTERS else fit(cell, w)
            segments.append(Segment(text, base + self.cell_style(row, column)))
            segments.append(Segment(" " * GAP, base))
        return self._strip(segments, scroll_x, width, base)
