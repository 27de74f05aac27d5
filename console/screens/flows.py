"""`:flows`: every node's flow stream merged, newest first, Hubble style.

One worker thread per node follows `GET /v1/flows?follow=1` (console/flowstream.py) and
drops records into an inbox (the nodes to follow are looked up again on each ClusterChanged
from the app); a 4 Hz timer moves them into a bounded `FlowStore` (the newest 2,000) and
redraws. Filters are `hubble observe`-like (console/flows.py), applied
to what is kept, so changing one re-filters the history at once: `--not`/`!` negates a
term, `since:5m`/`until:14:05` bound a window. `a` groups what matches by source,
destination, port and verdict (calico.flowagg, as `calicoctl flows --aggregate`), with
counts and first/last seen. A node that goes away shows as unreachable in the node line
and is retried, never a crash. The records come from each agent's ring, which collects
whether or not a console is open: a console opened later sees what happened before.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Header, Input, Label, Sparkline, Static

from calico.flowagg import FlowGroup
from calico.flowfilter import FIELDS, FlowFilter, QueryError
from console.dataplane import flow_endpoint
from console.flows import COLUMNS, DENIED, GROUP_COLUMNS, FlowEntry, FlowStore, group_cells
from console.flowstream import FlowFollower
from console.screens.base import ClusterChanged, ConsoleScreen
from console.screens.dataplane import DataplaneScreen
from console.screens.help import bound_key, help_screen
from console.screens.matrix import MatrixScreen
from console.screens.text_view import TextScreen
from console.screens.why import WhyScreen, flow_verdict, policy_set_of
from console.widgets.key_footer import KeyFooter

CAPACITY = 2000  # flow rows kept (memory stays bounded however long the screen runs)
SHOWN = 400  # rows drawn: the newest that match (a redraw costs about 0.1 ms a row)
SPAN = 60  # seconds of history in each sparkline
VERDICT_STYLE = {"ALLOWED": "bold green", "DENIED": "bold red"}


class NetworkRates(Horizontal):
    """One network's line: name, totals, and allowed / denied per second sparklines."""

    def __init__(self, network: str) -> None:
        super().__init__(classes="rates")
        self.network = network
        self.series: tuple[list[int], list[int]] | None = None  # the last one shown

    def compose(self) -> ComposeResult:
        yield Label(self.network, classes="rates-name")
        yield Label("", classes="rates-count")
        yield Sparkline([0] * SPAN, summary_function=max, classes="allowed")
        yield Sparkline([0] * SPAN, summary_function=max, classes="denied")

    def on_mount(self) -> None:
        if self.series is not None:  # given before its labels were there
            self.show(*self.series)

    def show(self, allowed: list[int], denied: list[int]) -> None:
        """Show these counts; kept, and shown on mount, while the labels are not there
        (mounting, or removed with the screen)."""
        self.series = (allowed, denied)
        if not self.query(".rates-count"):
            return
        self.query_one(".rates-count", Label).update(
            Text.assemble(
                (f"{sum(allowed):>5}", "green"), " ✔ ", (f"{sum(denied):>5}", "red"), " ✘"
            )
        )
        self.query_one(".allowed", Sparkline).data = allowed
        self.query_one(".denied", Sparkline).data = denied


class FlowTable(DataTable[Text]):
    """The flows list. Enter on a row (or a click on the selected one) opens its record.

    The focused table's own enter (select_cursor) shadows any enter bound on the screen, so
    the key is described here, where help and the palette find it, and the screen answers
    the RowSelected message the table posts."""

    BINDINGS = [
        Binding("enter", "select_cursor", "details", show=False,
                tooltip="the selected flow record as JSON"),
    ]  # fmt: skip


class FlowsScreen(ConsoleScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [
        Binding("space", "pause", "pause/resume",
                tooltip="pause / resume the live list (streams keep being read)"),
        Binding("slash,f", "filter", "filter", key_display="/",
                tooltip=f"filter: {' '.join(f + ':' for f in FIELDS)} (hubble style; --not or ! negates the next term)"),
        Binding("a", "aggregate", "aggregate",
                tooltip="group by source, destination, port and verdict: counts, first/last seen"),
        Binding("w", "why", "why?", tooltip="why? the policies and profiles behind the selected flow"),
        Binding("x", "clear", "clear", tooltip="clear the kept flows"),
        Binding("g", "rule", "go to rule", show=False,
                tooltip=":dataplane of the flow's endpoint, on the rule that decided it"),
        Binding("question_mark", "help", "help", key_display="?", tooltip="this help"),
        Binding("escape", "back", "back", tooltip="close the filter, clear it, then back"),
    ]  # fmt: skip

    def __init__(self, *, follow: bool = True, capacity: int = CAPACITY) -> None:
        super().__init__()
        self.follow = follow
        self.store = FlowStore(capacity, SPAN)
        self.query_filter = FlowFilter()
        self.paused = False
        self.inbox: deque[tuple[str, dict[str, Any]]] = deque()
        self.node_status: dict[str, tuple[bool | None, str]] = {}
        self.followers: dict[str, FlowFollower] = {}
        self.since: dict[str, float] = {}  # node -> newest record time seen (skip replays)
        self.dirty = True
        self.shown: list[FlowEntry] = []
        self.aggregated = False  # `a`: one row per group (calico.flowagg) instead of per flow
        self.groups: list[FlowGroup] = []
        self.clock = time.time  # tests pin it for stable sparklines
        self._lock = threading.Lock()

    # ------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="flows-title")
        with Horizontal(id="flows-top"):
            yield Vertical(id="flows-rates")
            yield Static(id="flows-nodes")
        yield FlowTable(id="flows-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="flows-empty")
        yield Input(
            placeholder="filter: verdict:denied from:network2 !to-port:53 since:5m "
            "(or --verdict DROPPED --not --to-ip ... --since 14:05); empty clears",
            id="flows-filter",
        )
        yield KeyFooter()

    def on_mount(self) -> None:
        self.set_columns()
        self.query_one("#flows-filter", Input).display = False
        self.dirty = True
        self.tick()
        # Timers about time, not the cluster: the streams' records are moved in and drawn at
        # most 4 times a second (a burst is one redraw), and the sparklines' buckets are
        # seconds. New or moved nodes come as ClusterChanged (on_cluster_changed).
        self.set_interval(0.25, self.tick)
        self.set_interval(1.0, self.refresh_rates)
        self.refresh_rates()
        self.discover_nodes()

    def on_unmount(self) -> None:
        self.stop_followers()

    # ------------------------------------------------------------ streams
    def on_cluster_changed(self, event: ClusterChanged) -> None:
        if event.data:
            self.discover_nodes()

    def on_screen_resume(self) -> None:
        """Back on screen: follow nodes that came while another screen was on top."""
        self.discover_nodes()

    def discover_nodes(self) -> None:
        """Start a follower for each node (and again if its API address changed)."""
        if not self.follow:
            return
        for node, url in sorted(self.console.node_api_urls().items()):
            current = self.followers.get(node)
            if current is not None and current.url == url and not current.stopped.is_set():
                continue
            if current is not None:
                current.stop()
            follower = FlowFollower(
                node, url, self._deliver, self._status, since=self.since.get(node, 0.0)
            )
            self.followers[node] = follower
            self.node_status.setdefault(node, (None, "connecting"))
            self.follow_node(follower)

    @work(thread=True, group="flow-follow", exit_on_error=False)
    def follow_node(self, follower: FlowFollower) -> None:
        follower.run()

    def _deliver(self, node: str, item: dict[str, Any]) -> None:  # follower thread
        self.inbox.append((node, item))

    def _status(self, node: str, ok: bool, error: str) -> None:  # follower thread
        self.node_status[node] = (ok, error)

    def stop_followers(self) -> None:
        for follower in self.followers.values():
            follower.since = max(follower.since, self.since.get(follower.node, 0.0))
            self.since[follower.node] = follower.since
            follower.stop()
        self.followers.clear()

    def feed(self, node: str, items: list[dict[str, Any]]) -> None:
        """Add records as if they came from `node`'s stream (tests and demos)."""
        for item in items:
            self.inbox.append((node, item))
        self.tick()

    # ------------------------------------------------------------ drawing
    def set_columns(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for name in GROUP_COLUMNS if self.aggregated else COLUMNS:
            table.add_column(name, key=name)

    def tick(self) -> None:
        """Move what arrived into the store; redraw if anything changed and not paused."""
        batch: dict[str, list[dict[str, Any]]] = {}
        while self.inbox:
            node, item = self.inbox.popleft()
            batch.setdefault(node, []).append(item)
            when = item.get("time")
            if isinstance(when, int | float):
                self.since[node] = max(self.since.get(node, 0.0), when)
        for node, items in batch.items():
            if self.store.add(node, items):
                self.dirty = True
        self.update_title()
        if self.dirty and not self.paused:
            self.redraw()

    def redraw(self) -> None:
        self.dirty = False
        table = self.query_one(DataTable)
        keep = None
        if table.row_count and table.cursor_row > 0:
            keep = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        if self.aggregated:
            self.groups = self.store.groups(self.query_filter)[:SHOWN]
            self.shown = [g.latest for g in self.groups]
            keys = [self.group_row_key(g) for g in self.groups]
            rows = [self.group_row_cells(g, self.clock()) for g in self.groups]
        else:
            matching = self.store.newest_first(self.query_filter)
            self.shown = [entry for _, entry in zip(range(SHOWN), matching, strict=False)]
            keys = [str(entry.seq) for entry in self.shown]
            rows = [self.row_cells(entry) for entry in self.shown]
        table.clear()
        for key, cells in zip(keys, rows, strict=True):
            table.add_row(*cells, key=key)
        if keep is not None and keep in keys:
            table.move_cursor(row=keys.index(keep), animate=False)
        empty = self.query_one("#flows-empty", Static)
        empty.update(self.empty_text())
        empty.display = not self.shown
        table.display = bool(self.shown)

    @staticmethod
    def row_cells(entry: FlowEntry) -> list[Text]:
        stamp, src, dst, verdict, rule, node = entry.cells
        denied = entry.verdict == DENIED
        return [
            Text(stamp, style="dim"),
            Text(src),
            Text(dst),
            Text(verdict, style=VERDICT_STYLE.get(verdict, "")),
            Text(rule, style="red" if denied else "green"),
            Text(node, style="cyan"),
        ]

    @staticmethod
    def group_row_key(group: FlowGroup) -> str:
        return "g:" + "|".join(str(part) for part in group.key)

    @staticmethod
    def group_row_cells(group: FlowGroup, now: float) -> list[Text]:
        src, dst, verdict, count, first, last, rule, nodes = group_cells(group, now)
        denied = group.verdict == DENIED
        return [
            Text(src),
            Text(dst),
            Text(verdict, style=VERDICT_STYLE.get(verdict, "")),
            Text(count, style="bold", justify="right"),
            Text(first, style="dim"),
            Text(last, style="dim"),
            Text(rule, style="red" if denied else "green"),
            Text(nodes, style="cyan"),
        ]

    def empty_text(self) -> str:
        if self.store.entries and not self.query_filter.is_empty():
            return (
                f"No kept flow matches `{self.query_filter.text}`. Press {bound_key(self, 'filter')} to change the "
                "filter (an empty filter shows everything)."
            )
        if self.follow and not self.followers and not self.node_status:
            return (
                "No nodes to follow yet: the flows come from each node's agent. Start a lab "
                "(`calico-lab up`) and wait for :nodes to list the agents."
            )
        return (
            "No flows yet. Make some traffic, e.g. `calico-lab exec calico-02 -- rkt run "
            "--net=network1 docker://busybox --exec=/bin/wget -- -T 3 -O - "
            f"http://192.168.0.100/`, or press {bound_key(MatrixScreen, 'probe')} in :matrix to probe "
            "every pair."
        )

    def update_title(self) -> None:
        text = Text.assemble((" Live flows", "bold"))
        shown = len(self.shown) if not self.dirty or self.paused else None
        kept = len(self.store.entries)
        if self.aggregated and shown is not None:
            groups, flows = len(self.groups), sum(g.count for g in self.groups)
            text.append(
                f"  {groups} group{'s' * (groups != 1)} of {flows} flow{'s' * (flows != 1)}",
                style="bold magenta",
            )
            text.append(f" · {kept} kept of {self.store.capacity} · {self.store.total} seen",
                        style="dim")  # fmt: skip
        else:
            text.append(
                f"  {shown if shown is not None else kept} shown · {kept} kept of "
                f"{self.store.capacity} · {self.store.total} seen",
                style="dim",
            )
        if not self.query_filter.is_empty():
            text.append(f"  filter: {self.query_filter.text}", style="bold cyan")
            window = self.query_filter.window_text(self.clock())
            if window:
                text.append(f" ({window})", style="cyan")
        if self.paused:
            text.append("  ❚❚ PAUSED", style="bold yellow")
            if self.dirty:
                text.append(" · new flows waiting", style="yellow")
        missed = sum(self.store.dropped.values())
        if missed:
            text.append(f"  {missed} missed (reader fell behind)", style="yellow")
        self.query_one("#flows-title", Static).update(text)

    def refresh_rates(self) -> None:
        box = self.query_one("#flows-rates", Vertical)
        now = self.clock()
        existing = {w.network: w for w in box.query(NetworkRates)}
        networks = self.store.networks()
        if not networks:
            if not box.query("#rates-none"):
                box.mount(Label("no flows counted yet", id="rates-none"))
        else:
            for none in box.query("#rates-none"):
                none.remove()
        for network in networks:
            widget = existing.get(network)
            if widget is None:
                widget = NetworkRates(network)
                box.mount(widget)
                existing[network] = widget
            widget.show(*self.store.rates[network].series(now))
        self.query_one("#flows-nodes", Static).update(self.nodes_text())

    def nodes_text(self) -> Text:
        text = Text.assemble(("nodes", "bold"), "\n")
        if not self.node_status:
            text.append("none followed", style="dim")
        for node, (ok, error) in sorted(self.node_status.items()):
            if ok:
                text.append("● ", style="green")
                text.append(f"{node} streaming\n")
            elif ok is None:
                text.append("○ ", style="yellow")
                text.append(f"{node} connecting\n")
            else:
                text.append("✘ ", style="bold red")
                text.append(f"{node} unreachable", style="red")
                text.append(f": {error[-40:]}\n" if error else "\n", style="dim")
        legend = Text.assemble(
            ("▁▃▅▇", "green"), " allowed  ", ("▁▃▅▇", "red"), f" denied, per second, last {SPAN} s"
        )
        return text + legend

    # ------------------------------------------------------------ actions
    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused and self.dirty:
            self.redraw()
        self.update_title()

    def action_aggregate(self) -> None:
        """Flows <-> groups of flows (the filter applies to both)."""
        self.aggregated = not self.aggregated
        self.set_columns()
        self.dirty = True
        self.redraw()
        self.update_title()

    def action_filter(self) -> None:
        box = self.query_one("#flows-filter", Input)
        box.display = True
        box.value = self.query_filter.text
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            query = FlowFilter.parse(event.value, now=self.clock())
        except QueryError as exc:
            self.notify(f"filter: {exc}", severity="error")
            return
        self.set_filter(query)

    def set_filter(self, query: FlowFilter) -> None:
        box = self.query_one("#flows-filter", Input)
        box.display = False
        self.query_filter = query
        self.query_one(DataTable).focus()
        self.dirty = True
        self.redraw()
        self.update_title()

    def action_back(self) -> None:
        box = self.query_one("#flows-filter", Input)
        if box.display:
            box.display = False
            self.query_one(DataTable).focus()
        elif not self.query_filter.is_empty():
            self.set_filter(FlowFilter())
        else:
            self.app.pop_screen()

    def action_clear(self) -> None:
        self.store = FlowStore(self.store.capacity, SPAN)
        self.dirty = True
        self.redraw()
        box = self.query_one("#flows-rates", Vertical)
        for widget in box.query(NetworkRates):
            widget.remove()
        self.refresh_rates()
        self.update_title()

    def selected(self) -> FlowEntry | None:
        table = self.query_one(DataTable)
        if not self.shown or not table.row_count:
            return None
        return self.shown[min(table.cursor_row, len(self.shown) - 1)]

    def action_why(self) -> None:
        entry = self.selected()
        if entry is None:
            self.notify("no flow selected", severity="warning")
            return
        r = entry.record
        port = r.get("dport") if isinstance(r.get("dport"), int) else None
        verdict = flow_verdict(
            policy_set_of(self.console.state),
            str(r.get("src", "")),
            str(r.get("dst", "")),
            str(r.get("protocol") or "TCP"),
            port,
        )
        agrees = (verdict.allowed and entry.verdict != DENIED) or (
            not verdict.allowed and entry.verdict == DENIED
        )
        sections = [
            (
                f"What {entry.node}'s agent saw",
                f"{entry.verdict.upper()} by {entry.cells[4]}"
                + ("" if agrees else "   (the policy now says otherwise: it changed since?)"),
            )
        ]
        title = f"{entry.cells[1]} → {entry.cells[2]}"
        self.app.push_screen(WhyScreen(title, verdict, sections))

    def action_rule(self) -> None:
        """The rule that dropped (or allowed) the selected flow, in its node's dataplane."""
        entry = self.selected()
        rule = entry.record.get("rule") if entry is not None else None
        if entry is None or not isinstance(rule, dict) or "rule_index" not in rule:
            self.notify("select a flow whose record names its rule", severity="warning")
            return
        endpoint = flow_endpoint(entry.record)
        self.app.push_screen(DataplaneScreen(entry.node, endpoint, focus_rule=rule))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        # by key, not cursor row: a redraw may have come between the key press and this
        key = event.row_key.value
        if self.aggregated:
            group = next((g for g in self.groups if self.group_row_key(g) == key), None)
            if group is not None:
                self.app.push_screen(
                    TextScreen(
                        f"{group.count} flows {group.source_text()} → {group.destination_text()}",
                        json.dumps({**group.to_dict(), "latest": group.record}, indent=2),
                        "json",
                    )
                )
            return
        entry = next((e for e in self.shown if str(e.seq) == key), None)
        self.show_details(entry or self.selected())

    def show_details(self, entry: FlowEntry | None) -> None:
        """The flow record as JSON."""
        if entry is None:
            return
        self.app.push_screen(
            TextScreen(f"Flow from {entry.node}", json.dumps(entry.record, indent=2), "json")
        )

    def action_help(self) -> None:
        self.app.push_screen(help_screen("Live flows", self))
