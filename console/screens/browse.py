"""The main screen: one table showing the current view, k9s style.

It owns its table, its `/` filter and every key that acts on the selected row (describe,
YAML, edit, delete, launch, probe); the app owns the cluster state, the datastore and which
screen is on top.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Collection
from pathlib import Path

import yaml
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widgets import Footer, Header, Input, Static

from calico.errors import DatastoreError
from calico.nodeapi import NodeAPIError, NodeClient
from calico.policy import describe_rule
from calico.resources import Resource, ValidationError, load_documents
from console.model import (
    VIEWS,
    ClusterState,
    Row,
    RowFilter,
    View,
    bgp_peer_lines,
    profile_members,
    view_names,
)
from console.screens.base import ClusterChanged, ConsoleScreen
from console.screens.confirm import ConfirmScreen
from console.screens.dataplane import DataplaneScreen
from console.screens.help import help_screen
from console.screens.launch import LaunchRequest, LaunchScreen
from console.screens.probe import ProbeScreen
from console.screens.text_view import TextScreen
from console.widgets.command_bar import CommandBar
from console.widgets.resource_table import ResourceTable
from console.widgets.status_bar import StatusBar

SYNC_ROWS = 2000  # up to this many rows a view is drawn at once; beyond, in slices
WRITE_ACTIONS = ("edit", "delete", "launch")  # hidden from help and the palette when read-only


class BrowseScreen(ConsoleScreen):
    """The main screen: one table showing the current view, k9s style."""

    # description: the footer's word; tooltip: the sentence help and the command palette show
    BINDINGS = [
        Binding("colon", "command", ":view", key_display=":",
                tooltip=f"switch view: {' '.join(view_names())}"),
        Binding("slash", "filter", "/filter", key_display="/",
                tooltip="filter rows (regex; a leading ! negates)"),
        Binding("question_mark", "help", "help", key_display="?", tooltip="this help"),
        Binding("d", "describe", "describe", tooltip="describe the selected row"),
        Binding("y", "yaml", "yaml", tooltip="show the selected resource as YAML"),
        Binding("e", "edit", "edit",
                tooltip="edit the selected resource in $EDITOR, validate, apply"),
        Binding("ctrl+d", "delete", "delete",
                tooltip="delete the selected resource (asks first)"),
        Binding("n", "launch", "new pod",
                tooltip="launch a test pod (node, networks, IP=, image, command)"),
        Binding("p", "probe", "probe",
                tooltip="probe: from the selected pod, or a new pod on a network, to address:port"),
        Binding("D", "dataplane", "dataplane", key_display="D", show=False,
                tooltip="the dataplane of the selected node or endpoint (chains, counters, ipsets, routes)"),
        Binding("escape", "clear_filter", "clear", show=False,
                tooltip="clear the filter (or close the command line)"),
    ]  # fmt: skip

    def __init__(self, view: View | None = None) -> None:
        super().__init__()
        self.view: View = view or VIEWS["nodes"]
        self.row_filter = RowFilter()
        self.generation = 0  # bumps on every refresh; stale background builds are dropped

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="view-title")
        yield ResourceTable(id="table")
        yield Static(id="empty-hint")
        yield CommandBar(id="command")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_view()
        self.query_one(ResourceTable).focus()

    def on_cluster_changed(self, event: ClusterChanged) -> None:
        self.refresh_view()

    # ------------------------------------------------------------ the view
    def show_view(self, view: View) -> None:
        self.view = view
        self.row_filter = RowFilter()
        self.refresh_view()

    def set_filter(self, text: str) -> None:
        self.row_filter = RowFilter(text)
        self.refresh_view()

    def current_rows(self) -> list[Row]:
        return self.row_filter.apply(self.view.rows(self.console.state))

    def refresh_view(self) -> None:
        """Show the current view. Rows of small clusters are built at once; large ones in a
        worker thread, so the UI never stalls (the table draws only what is on screen)."""
        try:
            self.query_one(ResourceTable)
        except NoMatches:  # not composed yet; its on_mount refreshes again
            return
        self.generation += 1
        if self.row_estimate() <= SYNC_ROWS:
            self._show(self.view, self.current_rows())
        else:
            self.build_rows_in_background(
                self.view, self.row_filter, self.console.state, self.generation
            )

    def row_estimate(self) -> int:
        state = self.console.state
        return len(state.resources) + sum(len(i.pods) for i in state.nodes.values())

    def build_rows_in_background(
        self, view: View, flt: RowFilter, state: ClusterState, gen: int
    ) -> None:
        # run_worker with a closure, not @work: @work describes a worker by repr() of its
        # arguments, and repr of 10,000 resources alone stalled the event loop 150 ms.
        def build() -> None:
            rows = flt.apply(view.rows(state))
            self.app.call_from_thread(self._show_async, view, rows, gen)

        self.run_worker(
            build, thread=True, exclusive=True, group="rows", description="build rows",
            exit_on_error=False,
        )  # fmt: skip

    def _show_async(self, view: View, rows: list[Row], gen: int) -> None:
        if gen != self.generation:
            return  # a newer refresh superseded this one
        table = self.query_one(ResourceTable)
        table.set_view(view)
        self._show_header(view, rows)
        table.show_rows(rows)

    def _show(self, view: View, rows: list[Row]) -> None:
        table = self.query_one(ResourceTable)
        table.set_view(view)
        table.show_rows(rows)
        self._show_header(view, rows)

    def _show_header(self, view: View, rows: list[Row]) -> None:
        flt = f"  /{self.row_filter.text}" if self.row_filter.text else ""
        self.query_one("#view-title", Static).update(f" {view.title} ({len(rows)}){flt}")
        hint = self.query_one("#empty-hint", Static)
        if rows:
            hint.update("")
        else:
            hint.update(
                view.empty_hint if not flt else "No rows match the filter (escape clears it)."
            )
        hint.display = not rows
        app = self.console
        extra = "read-only" if app.read_only else ""
        self.query_one(StatusBar).show(app.cluster_name, app.sync_state, app.last_error, extra)

    def selected(self) -> Row | None:
        return self.query_one(ResourceTable).current()

    # ------------------------------------------------------------ the command bar
    def action_command(self) -> None:
        self.query_one(CommandBar).open(":")

    def action_filter(self) -> None:
        self.query_one(CommandBar).open("/", self.row_filter.text)

    def action_clear_filter(self) -> None:
        bar = self.query_one(CommandBar)
        if bar.has_class("-active"):
            bar.close()
            self.query_one(ResourceTable).focus()
        else:
            self.set_filter("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        bar = self.query_one(CommandBar)
        bar.close()
        self.query_one(ResourceTable).focus()
        if bar.mode == ":":
            self.console.switch_view(event.value.strip().lstrip(":"))
        else:
            self.set_filter(event.value)

    # ------------------------------------------------------------ actions on the selected row
    def hidden_actions(self) -> Collection[str]:
        return WRITE_ACTIONS if self.console.read_only else ()

    def action_help(self) -> None:
        note = "read-only: actions that change the cluster are hidden"
        screen = help_screen(
            f"Keys in {self.view.title}",
            self,
            hidden=self.hidden_actions(),
            note=note if self.console.read_only else "",
        )
        self.app.push_screen(screen)

    def action_describe(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("nothing selected", severity="warning")
            return
        self.app.push_screen(
            TextScreen(f"Describe {row.cells[0]}", describe(row, self.console.state))
        )

    def action_yaml(self) -> None:
        row = self.selected()
        if row is None or row.resource is None:
            self.notify("the selected row is not a stored resource", severity="warning")
            return
        body = yaml.safe_dump(row.resource.to_dict(), sort_keys=False)
        self.app.push_screen(TextScreen(f"{row.resource.ident}", body, syntax="yaml"))

    def _resource_to_change(self, doing: str, verb: str) -> Resource | None:
        """The selected stored resource, when the console may change it; else say why."""
        if self.console.read_only:
            self.notify(f"read-only: {doing} is off", severity="warning")
            return None
        row = self.selected()
        if row is None or row.resource is None:
            self.notify(f"select a stored resource to {verb}", severity="warning")
            return None
        return row.resource

    def action_edit(self) -> None:
        res = self._resource_to_change("editing", "edit")
        if res is None:
            return
        original = yaml.safe_dump(res.to_dict(), sort_keys=False)
        path = Path(tempfile.mkstemp(prefix="calico-edit-", suffix=".yaml")[1])
        path.write_text(original)
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        try:
            try:
                with self.app.suspend():
                    subprocess.run([*shlex.split(editor), str(path)], check=False)
            except Exception:  # headless (tests) or no terminal to hand over: run it as is
                subprocess.run(
                    [*shlex.split(editor), str(path)], check=False, stdin=subprocess.DEVNULL
                )
            edited = path.read_text()
        finally:
            path.unlink(missing_ok=True)
        if edited == original:
            self.notify("no change")
            return
        self.apply_edit(edited)

    @work(thread=True, group="write", exit_on_error=False)
    def apply_edit(self, text: str) -> None:
        try:
            docs = load_documents(text)
            if len(docs) != 1:
                raise ValidationError("", "the edit must hold exactly one resource")
            saved = self.console.datastore().update(docs[0])
        except (ValidationError, DatastoreError, ValueError) as exc:
            self.app.call_from_thread(self._write_failed, str(exc))
            return
        self.app.call_from_thread(
            self.notify, f"saved {saved.ident} (resourceVersion {saved.metadata.resource_version})"
        )

    def _write_failed(self, message: str) -> None:
        self.console.last_error = message
        self.notify(f"not saved: {message}", severity="error", timeout=8)
        self.refresh_view()

    def action_delete(self) -> None:
        res = self._resource_to_change("deleting", "delete")
        if res is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_resource(res)

        self.app.push_screen(ConfirmScreen(f"Delete {res.ident}?"), answered)

    @work(thread=True, group="write", exit_on_error=False)
    def delete_resource(self, res: Resource) -> None:
        try:
            self.console.datastore().delete(type(res), res.metadata.name, res.metadata.namespace)
        except DatastoreError as exc:
            self.app.call_from_thread(self._write_failed, str(exc))
            return
        self.app.call_from_thread(self.notify, f"deleted {res.ident}")

    def action_launch(self) -> None:
        app = self.console
        if app.read_only:
            self.notify("read-only: launching pods is off", severity="warning")
            return
        row = self.selected()
        default = row.cells[0] if row is not None and self.view.name == "nodes" else None

        def launched(req: LaunchRequest | None) -> None:
            if req is not None:
                self.notify(f"launching: {req.command()}")
                self.launch_pod(req)

        app.push_screen(LaunchScreen(app.known_nodes(), app.known_networks(), default), launched)

    @work(thread=True, group="write", exit_on_error=False)
    def launch_pod(self, req: LaunchRequest) -> None:
        app = self.console
        url = app.node_api_urls().get(req.node, "")
        try:
            if not url:
                raise NodeAPIError(f"node {req.node} publishes no API address")
            with NodeClient(url, timeout=120) as client:
                res = client.run_pod(req.image, req.networks, req.exec_, req.args)
        except NodeAPIError as exc:
            app.call_from_thread(self._write_failed, f"launch on {req.node}: {exc}")
            return
        if app.poller:
            app.poller.poll_now()
        app.call_from_thread(self.notify, f"pod {res.get('uuid', '')[:8]} started on {req.node}")

    def action_probe(self) -> None:
        app = self.console
        row = self.selected()
        source = None
        target = ""
        if row is not None and self.view.name == "pods" and row.data:
            source = row.data
        elif row is not None and self.view.name == "endpoints" and row.resource is not None:
            nets = row.resource.spec.ip_networks
            target = f"{nets[0].split('/')[0]}:80" if nets else ""
        screen = ProbeScreen(
            app.node_api_urls,
            app.known_nodes(),
            app.known_networks(),
            source,
            target,
            app.probe_history,
        )
        app.push_screen(screen)

    def action_dataplane(self) -> None:
        """:dataplane of the selected endpoint (its chains only) or node; from another view,
        of the first node."""
        row = self.selected()
        node, endpoint = None, None
        if row is not None and self.view.name == "endpoints" and row.resource is not None:
            node, endpoint = row.resource.spec.node, row.resource.metadata.name
        elif row is not None and self.view.name == "nodes":
            node = row.cells[0]
        elif row is not None and self.view.name == "pods" and row.data:
            node = row.data.get("node") or None
        node = node or next(iter(self.console.known_nodes()), None)
        if not node:
            self.notify("no node to show: start a lab (calico-lab up)", severity="error")
            return
        self.app.push_screen(DataplaneScreen(node, endpoint))


def describe(row: Row, state: ClusterState) -> str:
    """A human description of a row: its fields, then what it relates to."""
    lines = [f"{col}: {cell}" for col, cell in zip(_columns_for(row), row.cells, strict=False)]
    res = row.resource
    if res is not None and res.KIND == "Profile":
        members = profile_members(state, res.metadata.name)
        lines += ["", f"Member endpoints ({len(members)}):"]
        lines += [
            f"  {w.spec.node}  {','.join(w.spec.ip_networks)}  {w.metadata.name}" for w in members
        ]
    if res is not None and res.KIND in ("Profile", "NetworkPolicy", "GlobalNetworkPolicy"):
        for direction in ("ingress", "egress"):
            rules = getattr(res.spec, direction)
            lines += ["", f"{direction.capitalize()} rules ({len(rules)}):"]
            lines += [f"  {i}: {describe_rule(r)}" for i, r in enumerate(rules)]
    if row.data:
        lines += ["", *(f"{k}: {v}" for k, v in row.data.items())]
    if row.key.startswith("node/"):
        lines += ["", *bgp_peer_lines(state.nodes.get(row.key.split("/", 1)[1]))]
    return "\n".join(lines)


def _columns_for(row: Row) -> tuple[str, ...]:
    for view in VIEWS.values():
        if len(view.columns) == len(row.cells) and row.key.split("/")[0] in view.name:
            return view.columns
    return tuple(f"col{i}" for i in range(len(row.cells)))
