"""`?`: the keys of the screen on top, made from its active bindings and the app's.

Nothing here lists a key by hand: what a key does is its binding's tooltip (else its
description), so the footer, this help and the command palette cannot disagree.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen

from console.screens.text_view import TextScreen


@dataclass
class KeyHelp:
    """One action and every key bound to it, as help shows them."""

    action: str
    node: DOMNode  # where the action runs: the screen, a widget, or the app
    text: str
    keys: list[str] = field(default_factory=list)

    @property
    def key_text(self) -> str:
        return ", ".join(self.keys)


def key_help(screen: Screen, *, hidden: Collection[str] = ()) -> list[KeyHelp]:
    """The keys active on `screen` (focused widget, screen, then app), one entry per action.

    A binding counts when it is in the footer or carries a tooltip (so cursor keys and other
    plumbing stay out), or when its screen says what it does here (`describe_action`: the
    shift+letter sorts); a binding its screen disables here is left out, and so are the
    actions `hidden` names (e.g. writes when read-only).
    """
    entries: dict[tuple[int, str], KeyHelp] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        describe = getattr(active.node, "describe_action", None)
        said = describe(binding.action) if describe else None  # words that depend on the view
        if binding.system or binding.action in hidden or not active.enabled:
            continue
        if not (binding.show or binding.tooltip or said):
            continue
        text = said or binding.tooltip or binding.description
        ident = (id(active.node), binding.action)
        entry = entries.setdefault(ident, KeyHelp(binding.action, active.node, text))
        shown = binding.key_display or key
        if shown in entry.keys:
            continue  # `slash,f` shown as / once
        if binding.show:  # the footer's binding speaks for the action: `q, ctrl+q  quit`
            entry.keys.insert(0, shown)
            entry.text = text
        else:
            entry.keys.append(shown)
    return list(entries.values())


def bound_key(screen: Screen | type[Screen], action: str) -> str:
    """The key bound to `action` by a screen (or screen class), as the footer shows it: for
    hints written into a screen's text (`press r to probe again`)."""
    for binding in Binding.make_bindings(screen.BINDINGS):
        if binding.action == action:
            return binding.key_display or binding.key
    raise KeyError(f"{action!r} is not bound by {screen!r}")


def help_screen(
    title: str, screen: Screen, *, hidden: Collection[str] = (), note: str = ""
) -> TextScreen:
    lines = [title, ""]
    lines += [f"  {entry.key_text:<8} {entry.text}" for entry in key_help(screen, hidden=hidden)]
    if note:
        lines += ["", note]
    return TextScreen("Help", "\n".join(lines))
