"""`:dataplane`: a node's (or one endpoint's) chains and rules as its agent rendered them,
counters moving live, each rule's policy/profile one key away.

The screen polls the node API's `GET /v1/dataplane[?endpoint=]` every `POLL_SECONDS` in a
thread worker, and only while it is the screen on top (suspended: the timer pauses; resumed:
one poll at once, then the timer again), so a console left elsewhere costs the node nothing.
Each answer replaces the table's rows (virtual: console/widgets/rule_table.py, so 7,800
rows cost one assignment), the counters that moved since the last answer are highlighted,
and the cursor stays on its rule whatever changed. What cannot be read (no API address, the
agent unreachable, an endpoint it no longer programs) is said on the status line, in red,
and polled again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Header, Static

from calico.nodeapi import NodeAPIError, NodeClient
from console.dataplane import (
    COLUMNS,
    DataplaneDoc,
    RuleLine,
    detail_lines,
    find_flow_rule,
    moved,
    origin_details,
    origin_resources,
    parse_doc,
    table_rows,
    title_text,
)
from console.model import Row
from console.screens.base import ConsoleScreen
from console.screens.help import help_screen
from console.screens.text_view import TextScreen
from console.widgets.key_footer import KeyFooter
from console.widgets.resource_table import ResourceTable
from console.widgets.rule_table import RuleTable

# Counters move on screen this often. One GET costs the node ~20 ms for a single endpoint
# and ~65 ms at 1,000 endpoints (bench/bench_dataplane_view.py): a few % of one core.
POLL_SECONDS = 2.0
Fetch = Callable[[str, str | None], dict[str, Any]]  # (node, endpoint) -> GET /v1/dataplane


class DataplaneScreen(ConsoleScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [
        Binding("space", "pause", "pause/resume", tooltip="pause / resume the live counters"),
        Binding("r", "refresh", "refresh", tooltip="read the node's dataplane now"),
        Binding("enter,o", "origin", "origin", key_display="enter",
                tooltip="open the policy or profile the selected rule came from"),
        Binding("question_mark", "help", "help", key_display="?", tooltip="this help"),
        Binding("escape", "back", "back", tooltip="back to the previous screen"),
    ]  # fmt: skip

    def __init__(
        self,
        node: str,
        endpoint: str | None = None,
        *,
        focus_rule: dict[str, Any] | None = None,
        fetch: Fetch | None = None,
        poll: float = POLL_SECONDS,
    ) -> None:
        super().__init__()
        self.node = node
        self.endpoint = endpoint
        self.focus_rule = focus_rule  # a flow record's rule: put the cursor on it once read
        self.fetch = fetch or self.fetch_from_node
        self.poll_seconds = poll
        self.doc: DataplaneDoc | None = None
        self.keys: list[str] = []  # table row keys, in order
        self.paused = False
        self.error = ""
        self.polls = 0  # answers shown (tests wait on it)
        self.timer: Any = None
        self.suspended = False

    # ------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(title_text(None, self.node, self.endpoint), id="dp-title")
        yield Static("reading the node's dataplane…", id="dp-status")
        with Horizontal(id="dp-body"):
            yield RuleTable(COLUMNS, id="dp-rules")
            with VerticalScroll(id="dp-side"):
                yield Static(id="dp-detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(RuleTable).focus()
        self.timer = self.set_interval(self.poll_seconds, self.poll)
        self.poll()

    def on_screen_suspend(self) -> None:
        self.suspended = True
        if self.timer is not None:
            self.timer.pause()

    def on_screen_resume(self) -> None:
        """Back on top (not the first showing: on_mount polled already)."""
        if self.suspended and self.timer is not None and not self.paused:
            self.suspended = False
            self.timer.resume()
            self.poll()

    # ------------------------------------------------------------ reading
    def fetch_from_node(self, node: str, endpoint: str | None) -> dict[str, Any]:
        url = self.console.node_api_urls().get(node, "")
        if not url:
            raise NodeAPIError(f"node {node} publishes no API address")
        with NodeClient(url, timeout=10) as client:
            return client.dataplane(endpoint)

    def poll(self) -> None:
        if self.paused:
            return
        node, endpoint, fetch = self.node, self.endpoint, self.fetch

        def read() -> None:
            try:
                doc = parse_doc(fetch(node, endpoint), node)
            except NodeAPIError as exc:
                self.app.call_from_thread(self.show_error, str(exc))
                return
            # pure and ~30 ms at 7,800 rows: made here, off the event loop
            self.app.call_from_thread(self.show_doc, doc, table_rows(doc))

        self.run_worker(read, thread=True, exclusive=True, group="dataplane-poll",
                        description="GET /v1/dataplane", exit_on_error=False)  # fmt: skip

    def show_error(self, message: str) -> None:
        self.error = message
        self.query_one("#dp-status", Static).update(
            Text(f"✘ {message} (trying again every {self.poll_seconds:g} s)", style="bold red")
        )

    def show_doc(self, doc: DataplaneDoc, rows: list[Row] | None = None) -> None:
        old = self.doc
        self.doc = doc
        self.error = ""
        self.polls += 1
        table = self.query_one(RuleTable)
        changed = moved(old, doc)
        keep = self.selected_key()
        rows = table_rows(doc) if rows is None else rows
        self.keys = [r.key for r in rows]
        table.show_rows(rows, hot=changed)
        if keep is None:
            table.move_cursor(0)
        self.query_one("#dp-title", Static).update(
            Text(title_text(doc, self.node, self.endpoint), style="bold")
        )
        status = f"live: every {self.poll_seconds:g} s" if not self.paused else "❚❚ paused"
        moved_text = f" · {len(changed)} counters moved" if changed else ""
        self.query_one("#dp-status", Static).update(Text(status + moved_text, style="dim"))
        if self.focus_rule is not None:
            self.jump_to(self.focus_rule)
            self.focus_rule = None
        self.show_detail()

    # ------------------------------------------------------------ the selection
    def selected_key(self) -> str | None:
        row = self.query_one(RuleTable).current()
        return row.key if row is not None else None

    def selected_line(self) -> RuleLine | None:
        key = self.selected_key()
        return self.doc.line(key) if self.doc and key else None

    def on_resource_table_highlighted(self, event: ResourceTable.Highlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        if self.doc is None:
            return
        text = Text()
        for line, style in detail_lines(self.doc, self.selected_line()):
            text.append(line + "\n", style=style)
        self.query_one("#dp-detail", Static).update(text)

    def jump_to(self, rule: dict[str, Any]) -> bool:
        """Put the cursor on the rule a flow record names; say so when it is not there."""
        line = find_flow_rule(self.doc, rule) if self.doc else None
        if line is None or line.key not in self.keys:
            self.notify(
                f"no rule of {rule.get('kind', '?')} {rule.get('name', '?')} "
                f"(rule {rule.get('rule_index', '-')}) is programmed here now",
                severity="error",
            )
            return False
        return self.query_one(RuleTable).move_to(line.key)

    # ------------------------------------------------------------ actions
    def action_origin(self) -> None:
        self.open_origin(self.selected_line())

    def open_origin(self, line: RuleLine | None) -> None:
        if line is None:
            self.notify("select a rule (a chain's heading has no origin)", severity="warning")
            return
        if not line.origin:
            self.notify(
                f"{line.chain} #{line.number} is the agent's own plumbing, "
                "not from a policy or profile",
                severity="warning",
            )
            return
        resources = origin_resources(self.console.state, line.origin)
        kinds = {r.KIND for r in resources}
        what = " + ".join(sorted(kinds)) or line.origin.get("kind", "")
        title = f"{what} {line.origin.get('name', '')}: where {line.chain} #{line.number} came from"
        self.app.push_screen(TextScreen(title, origin_details(line, resources)))

    def action_pause(self) -> None:
        self.paused = not self.paused
        if self.timer is not None:
            (self.timer.pause if self.paused else self.timer.resume)()
        if not self.paused:
            self.poll()
        elif self.doc is not None:
            self.query_one("#dp-status", Static).update(Text("❚❚ paused", style="bold yellow"))

    def action_refresh(self) -> None:
        was, self.paused = self.paused, False
        self.poll()
        self.paused = was

    def action_help(self) -> None:
        what = f"endpoint {self.endpoint}" if self.endpoint else f"node {self.node}"
        self.app.push_screen(help_screen(f"Dataplane of {what}", self))

    def action_back(self) -> None:
        self.app.pop_screen()
