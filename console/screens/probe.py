"""`p`: probe from a pod (or a fresh pod on a network) to an address:port, with history."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Select, Static

RESULT_STYLES = {
    "connected": "green",
    "refused": "yellow",
    "timed out": "red",
    "unreachable": "red",
    "error": "red",
}


@dataclass
class ProbeRecord:
    source: str  # "pod 6876aae5 on calico-01" or "network2 on calico-02"
    target: str  # "192.168.0.100:80"
    result: str
    seconds: float
    detail: str = ""
    at: float = field(default_factory=time.time)


def parse_target(text: str, default_port: int = 80) -> tuple[str, int]:
    """`addr[:port]` -> (addr, port); raises ValueError naming the problem."""
    text = text.strip()
    if not text:
        raise ValueError("give a destination address (and :port)")
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r}")
    return host, int(port)


def source_interfaces(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """A pod's addresses to probe from, one per interface (endpoint), as Select options:
    ("eth1 192.168.0.70 (network2)", "192.168.0.70")."""
    out = []
    for index, net in enumerate(pod.get("networks") or []):
        ip = str(net.get("ip") or "").split("/")[0]
        if ip:
            iface = net.get("ifName") or f"eth{index}"
            out.append((f"{iface} {ip} ({net.get('name', '')})", ip))
    return out


class ProbeScreen(ModalScreen[None]):
    """Source: the pod selected in Pods, or "a new pod on <network> on <node>"."""

    BINDINGS = [Binding("escape", "close", "close")]

    def __init__(
        self,
        node_api_urls: Callable[[], dict[str, str]],  # node name -> API URL, asked per probe
        nodes: list[str],
        networks: list[str],
        source_pod: dict[str, Any] | None,
        target: str = "",
        history: list[ProbeRecord] | None = None,
    ) -> None:
        super().__init__()
        self.node_api_urls = node_api_urls
        self.nodes = nodes
        self.networks = networks
        self.source_pod = source_pod
        self.initial_target = target
        self.history = history if history is not None else []

    def compose(self) -> ComposeResult:
        with Vertical(id="probe-box"):
            yield Static("Connectivity probe", id="probe-title")
            if self.source_pod:
                pod = self.source_pod
                yield Static(
                    f"From pod {str(pod.get('uuid', ''))[:8]} ({pod.get('app', '')}) on {pod.get('node')}",
                    id="probe-from",
                )
                interfaces = source_interfaces(pod)
                if len(interfaces) > 1:  # one endpoint per interface: choose which
                    yield Label("from interface")
                    yield Select(interfaces, value=interfaces[0][1], id="probe-interface")
            else:
                yield Label("From a new pod on network")
                yield Select(
                    [(n, n) for n in self.networks],
                    value=self.networks[0] if self.networks else Select.BLANK,
                    id="probe-network",
                )
                yield Label("on node")
                yield Select(
                    [(n, n) for n in self.nodes],
                    value=self.nodes[0] if self.nodes else Select.BLANK,
                    id="probe-node",
                )
            yield Label("To address[:port]")
            yield Input(
                value=self.initial_target, id="probe-target", placeholder="192.168.0.100:80"
            )
            yield Label("Timeout (s)")
            yield Input(value="3", id="probe-timeout")
            with Horizontal(id="probe-buttons"):
                yield Button("Probe", id="probe", variant="primary")
                yield Button("Close", id="close")
            yield Static("", id="probe-result")
            yield Static("History", id="probe-history-title")
            yield DataTable(id="probe-history", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#probe-history", DataTable)
        table.add_columns("WHEN", "FROM", "TO", "RESULT", "TIME")
        for rec in self.history:
            self._add_history_row(rec)

    def _add_history_row(self, rec: ProbeRecord) -> None:
        table = self.query_one("#probe-history", DataTable)
        style = RESULT_STYLES.get(rec.result, "")
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(rec.at)),
            rec.source,
            rec.target,
            Text(rec.result, style=style),
            f"{rec.seconds:.2f}s",
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "close":
            self.dismiss(None)
        else:
            self.start_probe()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start_probe()

    def start_probe(self) -> None:
        out = self.query_one("#probe-result", Static)
        try:
            address, port = parse_target(self.query_one("#probe-target", Input).value)
            timeout = float(self.query_one("#probe-timeout", Input).value or 3)
        except ValueError as exc:
            out.update(Text(str(exc), style="red"))
            return
        source_ip: str | None = None
        if self.source_pod:
            node, pod, network = self.source_pod.get("node"), self.source_pod.get("uuid"), None
            source = f"pod {str(pod)[:8]} on {node}"
            for choice in self.query("#probe-interface").results(Select):
                if isinstance(choice.value, str):
                    source_ip = choice.value
                    source += " from " + next(
                        (lab for lab, ip in source_interfaces(self.source_pod) if ip == source_ip),
                        source_ip,
                    )
        else:
            node = self.query_one("#probe-node", Select).value
            network = self.query_one("#probe-network", Select).value
            if not isinstance(node, str) or not isinstance(network, str):
                out.update(Text("choose a network and a node", style="red"))
                return
            pod, source = None, f"{network} on {node}"
        out.update(Text(f"probing {address}:{port} from {source} …", style="yellow"))
        self.run_probe(str(node), pod, network, address, port, timeout, source, source_ip)

    @work(thread=True, group="probe")
    def run_probe(
        self,
        node: str,
        pod: str | None,
        network: str | None,
        address: str,
        port: int,
        timeout: float,
        source: str,
        source_ip: str | None = None,
    ) -> None:
        from calico.nodeapi import NodeAPIError, NodeClient

        url = self.node_api_urls().get(node, "")
        try:
            if not url:
                raise NodeAPIError(f"node {node} publishes no API address")
            with NodeClient(url, timeout=timeout + 30) as client:
                res = client.probe(
                    address, port, pod=pod, network=network, timeout=timeout, source_ip=source_ip
                )
            rec = ProbeRecord(
                source,
                f"{address}:{port}",
                res.get("result", "error"),
                float(res.get("seconds") or 0),
                res.get("error", ""),
            )
        except NodeAPIError as exc:
            rec = ProbeRecord(source, f"{address}:{port}", "error", 0.0, str(exc))
        self.app.call_from_thread(self.show_result, rec)

    def show_result(self, rec: ProbeRecord) -> None:
        self.history.append(rec)
        style = RESULT_STYLES.get(rec.result, "")
        text = Text.assemble(
            (rec.result.upper(), f"bold {style}"),
            f"  {rec.source} → {rec.target} in {rec.seconds:.2f} s",
        )
        if rec.detail:
            text.append(f"  ({rec.detail})", style="dim")
        self.query_one("#probe-result", Static).update(text)
        self._add_history_row(rec)

    def action_close(self) -> None:
        self.dismiss(None)
