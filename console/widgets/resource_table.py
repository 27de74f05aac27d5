"""The one table every view uses: a virtual table that draws only the lines on screen.

Textual's DataTable measures and indexes every row, which at 10,000 endpoints costs
hundreds of milliseconds per repaint. Here rows are a plain list; `render_line` draws the
header and the visible slice, so a repaint costs the same for 10 rows or 100,000, and
replacing all rows is one assignment. Rows keep their identity (`Row.key`), so the cursor
stays on the same row when data changes under it.
"""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

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
GAP = 2  # spaces between columns
MAX_WIDTH = 60  # a column never grows past this; longer cells are cut with …


def column_widths(columns: tuple[str, ...], rows: list[Row]) -> list[int]:
    widths = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row.cells[: len(widths)]):
            if len(cell) > widths[i]:
                widths[i] = min(len(cell), MAX_WIDTH)
    return widths


def fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: max(0, width - 1)] + "…"


class ResourceTable(ScrollView, can_focus=True):
    """Rows of one View, drawn on demand; arrow keys, page keys and the mouse move the cursor."""

    DEFAULT_CSS = """
    ResourceTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "up", show=False),
        Binding("down", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "jump(0)", "first", show=False),
        Binding("end", "jump(-1)", "last", show=False),
    ]

    class Highlighted(Message):
        def __init__(self, row: Row | None) -> None:
            super().__init__()
            self.row = row

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.view: View | None = None
        self.rows: list[Row] = []
        self.rows_by_key: dict[str, Row] = {}
        self.widths: list[int] = []
        self.cursor_row = 0
        self.marked: set[str] = set()  # row keys marked with space (the screen owns the set)

    # -- data
    @property
    def row_count(self) -> int:
        return len(self.rows)

    def set_view(self, view: View) -> None:
        if self.view is view:
            return
        self.view = view
        self.rows, self.rows_by_key, self.cursor_row = [], {}, 0
        self.widths = [len(c) for c in view.columns]
        self.scroll_to(0, 0, animate=False)
        self._resize()

    def show_rows(self, rows: list[Row], widths: list[int] | None = None) -> None:
        """Replace the rows; the cursor follows its row by key if it is still there.
        `widths`: `column_widths` of these rows, measured where they were built (a worker
        thread: 6 ms at 10,000 rows that the event loop does not wait for)."""
        assert self.view is not None
        current = self.current()
        self.rows = rows
        self.rows_by_key = {r.key: r for r in rows}
        grown = widths if widths is not None else column_widths(self.view.columns, rows)
        self.widths = [max(a, b) for a, b in zip(self.widths, grown, strict=False)] or grown
        if current is not None and current.key in self.rows_by_key:
            self.cursor_row = next(i for i, r in enumerate(rows) if r.key == current.key)
        self.cursor_row = min(self.cursor_row, max(0, len(rows) - 1))
        self._resize()
        self.refresh()

    def _resize(self) -> None:
        total = sum(self.widths) + GAP * len(self.widths)
        self.virtual_size = Size(total, len(self.rows) + 1)

    def current(self) -> Row | None:
        if not self.rows:
            return None
        return self.rows[min(self.cursor_row, len(self.rows) - 1)]

    def move_cursor(self, row: int) -> None:
        if not self.rows:
            return
        self.cursor_row = max(0, min(row, len(self.rows) - 1))
        self._scroll_cursor_into_view()
        self.refresh()
        self.post_message(self.Highlighted(self.current()))

    # -- keys and mouse
    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_jump(self, where: int) -> None:
        self.move_cursor(len(self.rows) - 1 if where < 0 else 0)

    def on_click(self, event: events.Click) -> None:
        y = event.y + int(self.scroll_y)
        if y >= 1:
            self.move_cursor(y - 1)

    def _scroll_cursor_into_view(self) -> None:
        visible = max(1, self.size.height - 1)  # minus the header line
        top = int(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    # -- drawing
    def row_style(self, index: int) -> Style:
        """A row's background: zebra stripes, and the cursor's (bright while focused)."""
        if index == self.cursor_row:
            if self.has_focus:
                return Style(bgcolor="dodger_blue3", bold=True)
            return Style(bgcolor="grey30")
        return Style(bgcolor="grey11") if index % 2 else Style()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = int(self.scroll_x), int(self.scroll_y)
        if y == 0:
            text = "".join(
                fit(c, w) + " " * GAP
                for c, w in zip(self.view.columns if self.view else (), self.widths, strict=False)
            )
            style = Style(bold=True)
            return self._strip([Segment(text, style)], scroll_x, width)
        index = scroll_y + y - 1
        if index >= len(self.rows):
            return Strip.blank(width)
        row = self.rows[index]
        base = self.row_style(index)
        if row.key in self.marked:  # marked: gold, and gold letters under the cursor
            on_cursor = index == self.cursor_row
            base = base + (
                Style(color="gold1") if on_cursor else Style(color="black", bgcolor="gold3")
            )
        state_style = Style.parse(STATE_STYLES[row.state]) if row.state in STATE_STYLES else Style()
        segments = []
        for i, (cell, w) in enumerate(zip(row.cells, self.widths, strict=False)):
            style = base + state_style if (i == 0 or cell == row.state) and state_style else base
            segments.append(Segment(fit(cell, w), style))
            segments.append(Segment(" " * GAP, base))
        return self._strip(segments, scroll_x, width, base)

    @staticmethod
    def _strip(
        segments: list[Segment], scroll_x: int, width: int, fill: Style | None = None
    ) -> Strip:
        strip = Strip(segments)
        if scroll_x:
            strip = strip.crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, fill or Style()).crop(0, width)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
