"""A modal that shows text (describe, YAML, explanations); escape closes it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class TextScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, title: str, body: str, syntax: str | None = None):
        super().__init__()
        self.title_text = title
        self.body = body
        self.syntax = syntax

    def compose(self) -> ComposeResult:
        from rich.syntax import Syntax

        content = (
            Syntax(self.body, self.syntax, theme="ansi_dark", word_wrap=True)
            if self.syntax
            else self.body
        )
        with VerticalScroll(id="text-box"):
            yield Static(self.title_text, id="text-title")
            yield Static(content, id="text-body")

    def action_dismiss(self) -> None:
        self.dismiss(None)
