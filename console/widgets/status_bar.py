"""The bottom line: which cluster, whether we are in sync, and the last error."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

SYNC_STYLES = {
    "in-sync": "green",
    "connecting": "yellow",
    "resyncing": "yellow",
    "disconnected": "red",
}


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def show(self, cluster: str, sync: str, error: str = "", extra: str = "") -> None:
        text = Text()
        text.append(f" {cluster} ", style="bold reverse")
        text.append("  etcd ")
        text.append(sync, style=SYNC_STYLES.get(sync, ""))
        if extra:
            text.append(f"  {extra}")
        if error:
            text.append(f"  last error: {error}", style="red")
        self.update(text)
