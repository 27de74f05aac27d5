"""What every full console screen shares: the typed app it runs in, and the message the app
posts when the cluster changes (screens react to it instead of polling the state on timers).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, cast

from textual.message import Message
from textual.screen import Screen

from console.access import action_allowed, refusal
from console.model import ClusterState

if TYPE_CHECKING:
    from console.app import CalicoConsole


class ClusterChanged(Message):
    """The cluster state changed: a batch from etcd, or node agents that answered differently.

    The app posts it to every screen on its stack (messages bubble up, not down, so it is
    delivered to each screen rather than bubbled); `state` is the app's state after the change.
    """

    bubble = False

    def __init__(self, state: ClusterState, data: bool = True) -> None:
        super().__init__()
        self.state = state
        self.data = data  # False: only the sync state (connecting, in-sync, ...) changed


class ConsoleScreen(Screen[None]):
    """A full screen of calico-console."""

    @property
    def console(self) -> CalicoConsole:
        """The app, typed: the cluster state, the datastore and navigation live there."""
        return cast("CalicoConsole", self.app)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """False hides a changing action (footer, help, palette) where it cannot run, and
        its refusal twin otherwise: the decision is console/access.py's."""
        return action_allowed(
            action, parameters, read_only=self.console.read_only, web=self.app.is_web
        )

    def action_refuse_change(self, action: str) -> None:
        """A changing key pressed where it cannot run: say why nothing happens."""
        text = refusal(action, read_only=self.console.read_only, web=self.app.is_web)
        self.notify(text, severity="warning", timeout=6)

    def hidden_actions(self) -> Collection[str]:
        """Actions bound here but left out of help and the command palette just now."""
        return ()
