"""The `:` command line (view switch, with completion) and the `/` filter line."""

from __future__ import annotations

from typing import Any

from textual.suggester import Suggester
from textual.widgets import Input

from console.model import complete_view, view_names


class ViewSuggester(Suggester):
    async def get_suggestion(self, value: str) -> str | None:
        names = complete_view(value)
        return names[0] if value and names else None


class CommandBar(Input):
    """One input, two modes: ':' switches view, '/' filters rows."""

    DEFAULT_CSS = """
    CommandBar { dock: bottom; height: 3; display: none; }
    CommandBar.-active { display: block; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(suggester=ViewSuggester(case_sensitive=False), **kwargs)
        self.mode = ":"

    def open(self, mode: str, value: str = "") -> None:
        self.mode = mode
        self.placeholder = (
            f"view: {' '.join(view_names())}" if mode == ":" else "filter (regex, ! negates)"
        )
        self.value = value
        self.add_class("-active")
        self.focus()

    def close(self) -> None:
        self.remove_class("-active")
