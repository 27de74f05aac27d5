"""`n`: launch a test pod on a node, like `rkt run`, through the node's agent API."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static


@dataclass
class LaunchRequest:
    node: str
    networks: list[str]  # rkt --net values, e.g. "network1:IP=192.168.0.5"
    image: str
    exec_: str | None
    args: list[str]

    def command(self) -> str:
        """The same pod as an rkt command line, shown to the user."""
        nets = " ".join(f"--net={n}" for n in self.networks)
        run = f"rkt run {nets} {self.image}".replace("  ", " ")
        if self.exec_:
            run += f" --exec={self.exec_}"
        if self.args:
            run += " -- " + shlex.join(self.args)
        return f"calico-lab exec {self.node} -- {run}"


def parse_launch(node: str, networks: str, ip: str, image: str, command: str) -> LaunchRequest:
    """Form fields -> a request; raises ValueError with what to fix."""
    if not node:
        raise ValueError("choose a node")
    nets = [n.strip() for n in networks.replace(" ", ",").split(",") if n.strip()]
    if ip.strip():
        if not nets:
            raise ValueError("IP= needs a network to apply to")
        if ":" in nets[0]:
            raise ValueError("give the IP in its own field, not in the network name")
        nets[0] = f"{nets[0]}:IP={ip.strip()}"
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"command: {exc}") from None
    return LaunchRequest(
        node, nets, image.strip() or "docker://busybox", argv[0] if argv else None, argv[1:]
    )


class LaunchScreen(ModalScreen[LaunchRequest | None]):
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, nodes: list[str], networks: list[str], default_node: str | None = None):
        super().__init__()
        self.nodes = nodes
        self.networks = networks
        self.default_node = default_node if default_node in nodes else (nodes[0] if nodes else None)

    def compose(self) -> ComposeResult:
        with Vertical(id="launch-box"):
            yield Static("Launch a test pod", id="launch-title")
            yield Label("Node")
            yield Select(
                [(n, n) for n in self.nodes],
                value=self.default_node or Select.BLANK,
                id="node",
                allow_blank=not self.nodes,
            )
            yield Label(
                f"Networks (comma-separated; known: {', '.join(self.networks) or 'none yet'})"
            )
            yield Input(
                value=self.networks[0] if self.networks else "",
                id="networks",
                placeholder="network1",
            )
            yield Label("IP= (optional: ask calico-ipam for this address on the first network)")
            yield Input(id="ip", placeholder="192.168.0.50")
            yield Label("Image")
            yield Input(value="docker://busybox", id="image")
            yield Label("Command")
            yield Input(value="httpd -f -h /", id="command")
            yield Static("", id="launch-error")
            with Horizontal(id="launch-buttons"):
                yield Button("Launch", id="launch", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self.submit()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def submit(self) -> None:
        node = self.query_one("#node", Select).value
        try:
            req = parse_launch(
                node if isinstance(node, str) else "",
                self.query_one("#networks", Input).value,
                self.query_one("#ip", Input).value,
                self.query_one("#image", Input).value,
                self.query_one("#command", Input).value,
            )
        except ValueError as exc:
            self.query_one("#launch-error", Static).update(f"[red]{exc}[/]")
            return
        self.dismiss(req)

    def action_cancel(self) -> None:
        self.dismiss(None)
