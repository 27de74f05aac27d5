"""The footer (console/widgets/key_footer.py) rebuilds only when the keys it shows change:
a focus change between widgets with the same keys leaves it as it is; a widget with a key
of its own brings that key into the footer, and it leaves with it."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from console.widgets.key_footer import KeyFooter


class Plain(Static, can_focus=True):
    pass


class WithKey(Static, can_focus=True):
    BINDINGS = [Binding("x", "noop", "extra")]

    def action_noop(self) -> None:
        pass


class Demo(App):
    BINDINGS = [Binding("q", "quit", "quit")]

    def compose(self) -> ComposeResult:
        yield Plain("a", id="a")
        yield Plain("b", id="b")
        yield WithKey("c", id="c")
        yield KeyFooter()


def shown(app: App) -> list[str]:
    """The footer's keys, but the command palette's (Textual adds it to every footer)."""
    return [key.key for key in app.screen.query(FooterKey) if key.key != "ctrl+p"]


def test_the_footer_follows_the_keys_not_every_focus_change():
    async def run() -> None:
        app = Demo()
        async with app.run_test() as pilot:
            footer = app.screen.query_one(KeyFooter)
            rebuilds = 0
            original = footer.recompose

            async def counted() -> None:
                nonlocal rebuilds
                rebuilds += 1
                await original()

            footer.recompose = counted  # type: ignore[method-assign]
            app.set_focus(app.screen.query_one("#a"))
            await pilot.pause()
            assert shown(app) == ["q"]
            before = rebuilds
            app.set_focus(app.screen.query_one("#b"))  # same keys
            await pilot.pause()
            assert rebuilds == before and shown(app) == ["q"]
            app.set_focus(app.screen.query_one("#c"))  # a key of its own
            await pilot.pause()
            assert rebuilds == before + 1 and shown(app) == ["x", "q"]
            app.set_focus(app.screen.query_one("#a"))
            await pilot.pause()
            assert rebuilds == before + 2 and shown(app) == ["q"]

    asyncio.run(run())
