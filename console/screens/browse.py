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
from textual.widgets import Header, Input, Static

from calico.errors import DatastoreError
from calico.nodeapi import NodeAPIError, NodeClient
from calico.policy import describe_rule
from calico.resources import Resource, ValidationError, load_documents
from calico.whatif import (
    LABEL_KINDS,
    POLICY_KINDS,
    Apply,
    Change,
    Label,
    StageError,
    parse_label_args,
)
from console import podshell
from console.access import REFUSE_ACTION, changing
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
from console.navigate import (
    Arrangement,
    Crumb,
    Scope,
    Sort,
    Trail,
    drill,
    next_sort,
    sort_column,
    sort_text,
)
from console.screens.base import ClusterChanged, ConsoleScreen
from console.screens.confirm import ConfirmScreen
from console.screens.dataplane import DataplaneScreen
from console.screens.help import help_screen
from console.screens.launch import LaunchRequest, LaunchScreen
from console.screens.logs import LogScreen
from console.screens.probe import ProbeScreen
from console.screens.stage import NEW_TEMPLATES, ApplyOrStageScreen, LabelsScreen, labels_of
from console.screens.text_view import TextScreen
from console.staging import summary as staging_summary
from console.widgets.command_bar import CommandBar
from console.widgets.key_footer import KeyFooter
from console.widgets.resource_table import ResourceTable, column_widths
from console.widgets.status_bar import StatusBar

SYNC_ROWS = 2000  # up to this many rows a view is drawn at once; beyond, in slices
POD_ACTIONS = ("logs", "shell")  # only on :pods
SORT_LETTERS = "ABCEFGHIJKLMNOPQRSTUVWXYZ"  # shift+letter sorts; D is :dataplane


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
        *changing(Binding("e", "edit", "edit",
                tooltip="edit the selected resource in $EDITOR, validate, apply or stage (what-if)")),
        *changing(Binding("c", "new", "new", show=False,
                tooltip="a new profile or policy in $EDITOR, validate, create or stage (what-if)")),
        *changing(Binding("l", "labels", "labels", show=False,
                tooltip="stage a label edit of the selected endpoint or profile (what-if, :matrix)")),
        *changing(Binding("ctrl+d", "delete", "delete",
                tooltip="delete the selected resource, or every marked row; on :pods stop and remove"
                        " the pods (asks once)")),
        *changing(Binding("n", "launch", "new pod",
                tooltip="launch a test pod (node, networks, IP=, image, command)")),
        Binding("p", "probe", "probe",
                tooltip="probe: from the selected pod, or a new pod on a network, to address:port"),
        Binding("l", "logs", "logs",
                tooltip="the selected pod's output: follow, wrap, search, from the start or last N"),
        *changing(Binding("s", "shell", "shell",
                tooltip="a shell in the selected pod (rkt enter); the console resumes when it ends")),
        Binding("enter", "drill", "open", show=False,
                tooltip="open what is below the row: node → pods → endpoints → policies"),
        Binding("space", "mark", "mark", show=False,
                tooltip="mark the row (ctrl+d then acts on every marked row)"),
        Binding("escape", "clear_filter", "back", show=False,
                tooltip="close the command line, else clear the filter, else go back up"),
        *(Binding(letter, f"sort('{letter}')", f"sort {letter}", show=False)
          for letter in SORT_LETTERS),
        Binding("D", "dataplane", "dataplane", key_display="D", show=False,
                tooltip="the dataplane of the selected node or endpoint (chains, counters, ipsets, routes)"),
    ]  # fmt: skip

    def __init__(self, view: View | None = None) -> None:
        super().__init__()
        self.view: View = view or VIEWS["nodes"]
        self.row_filter = RowFilter()
        self.scope: Scope | None = None  # what a drill-down keeps of the view's rows
        self.trail = Trail()  # where escape goes back to
        self.sorts: dict[str, Sort] = {}  # view name -> its sort, kept across visits
        self.marked: set[str] = set()  # row keys; ctrl+d acts on all of them
        self.generation = 0  # bumps on every refresh; stale background builds are dropped

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="view-title")
        yield ResourceTable(id="table")
        yield Static(id="empty-hint")
        yield CommandBar(id="command")
        yield StatusBar(id="status")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.refresh_view()
        self.query_one(ResourceTable).focus()

    def on_cluster_changed(self, event: ClusterChanged) -> None:
        if event.data:
            self.refresh_view()
        else:
            self._show_status()

    # ------------------------------------------------------------ the view
    def show_view(self, view: View) -> None:
        """`:view`: a fresh start there (no drill-down trail, no filter, no marks)."""
        self.trail.clear()
        self._enter(view, None)

    def _enter(self, view: View, scope: Scope | None, arrangement: Arrangement | None = None):
        self.view = view
        self.scope = arrangement.scope if arrangement else scope
        self.row_filter = arrangement.row_filter if arrangement else RowFilter()
        self.marked.clear()
        self.refresh_view()
        self.refresh_bindings()  # l and s are in the footer on :pods only

    def arrangement(self) -> Arrangement:
        return Arrangement(self.scope, self.row_filter, self.sorts.get(self.view.name))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "sort":  # shift+letter: only the letters this view's columns start with
            return sort_column(self.view.columns, str(parameters[0])) is not None
        target = str(parameters[0]) if action == REFUSE_ACTION and parameters else action
        if not self._on_this_view(target):
            return False
        return super().check_action(action, parameters)  # read-only: console/access.py

    def _on_this_view(self, action: str) -> bool:
        """`l` is a pod's logs on :pods (k9s), a label edit everywhere else; `s` only there."""
        if action == "labels":
            return self.view.name != "pods"
        return action not in POD_ACTIONS or self.view.name == "pods"

    def set_filter(self, text: str) -> None:
        self.row_filter = RowFilter(text)
        self.refresh_view()

    def current_rows(self) -> list[Row]:
        return self.arrangement().apply(self.view.rows(self.console.state))

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
                self.view, self.arrangement(), self.console.state, self.generation
            )

    def row_estimate(self) -> int:
        state = self.console.state
        return len(state.resources) + sum(len(i.pods) for i in state.nodes.values())

    def build_rows_in_background(
        self, view: View, arranged: Arrangement, state: ClusterState, gen: int
    ) -> None:
        # run_worker with a closure, not @work: @work describes a worker by repr() of its
        # arguments, and repr of 10,000 resources alone stalled the event loop 150 ms.
        def build() -> None:
            rows = arranged.apply(view.rows(state))
            widths = column_widths(view.columns, rows)
            self.app.call_from_thread(self._show_async, view, rows, widths, gen)

        self.run_worker(
            build, thread=True, exclusive=True, group="rows", description="build rows",
            exit_on_error=False,
        )  # fmt: skip

    def _show_async(self, view: View, rows: list[Row], widths: list[int], gen: int) -> None:
        if gen != self.generation:
            return  # a newer refresh superseded this one
        table = self.query_one(ResourceTable)
        table.set_view(view)
        table.marked = self.marked
        self._show_header(view, rows)
        table.show_rows(rows, widths)
        self.console.rows_shown()

    def _show(self, view: View, rows: list[Row]) -> None:
        table = self.query_one(ResourceTable)
        table.set_view(view)
        table.marked = self.marked
        table.show_rows(rows)
        self._show_header(view, rows)
        self.console.rows_shown()

    def _show_header(self, view: View, rows: list[Row]) -> None:
        flt = f"  /{self.row_filter.text}" if self.row_filter.text else ""
        crumbs = self.trail.text(view, self.scope)
        where = f"{view.title}: {self.scope.label}" if self.scope else view.title
        extras = [x for x in (sort_text(view, self.sorts.get(view.name)),
                              f"{len(self.marked)} marked" if self.marked else "") if x]  # fmt: skip
        more = f"  [{', '.join(extras)}]" if extras else ""
        trail = f"  ({crumbs}; esc back)" if crumbs else ""
        self.query_one("#view-title", Static).update(f" {where} ({len(rows)}){flt}{more}{trail}")
        hint = self.query_one("#empty-hint", Static)
        if rows:
            hint.update("")
        else:
            hint.update(
                view.empty_hint if not flt else "No rows match the filter (escape clears it)."
            )
        hint.display = not rows
        self._show_status()

    def _show_status(self) -> None:
        app = self.console
        extra = "read-only" if app.read_only else ""
        if app.staging:  # what-if: say so on every view, until applied or discarded
            count = len(app.staging.changes)
            extra += f"{'  ' if extra else ''}what-if: {count} staged (:matrix)"
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
        elif self.row_filter.text:
            self.set_filter("")
        else:
            self.action_back()

    # ------------------------------------------------------------ drill-down, sort, marks
    def action_drill(self) -> None:
        row = self.selected()
        if row is None:
            return
        below = drill(self.view, row, self.console.state)
        if below is None:
            self.notify(f"nothing below a row of {self.view.title}; d describes it")
            return
        self.trail.push(Crumb(self.view, self.arrangement(), row.key))
        self._enter(*below)

    def action_back(self) -> None:
        crumb = self.trail.pop()
        if crumb is None:
            return
        self._enter(crumb.view, None, crumb.arrangement)
        table = self.query_one(ResourceTable)
        keys = [r.key for r in table.rows]
        if crumb.cursor in keys:
            table.move_cursor(keys.index(crumb.cursor))

    def action_sort(self, letter: str) -> None:
        column = sort_column(self.view.columns, letter)
        if column is None:
            return
        self.sorts[self.view.name] = next_sort(self.sorts.get(self.view.name), column)
        self.refresh_view()

    def action_mark(self) -> None:
        table = self.query_one(ResourceTable)
        row = table.current()
        if row is None:
            return
        self.marked.symmetric_difference_update({row.key})
        table.move_cursor(table.cursor_row + 1)
        self._show_header(self.view, table.rows)
        table.refresh()

    def describe_action(self, action: str) -> str | None:
        """Help's words for an action whose meaning depends on the view (shift+letter)."""
        if action.startswith("sort("):
            column = sort_column(self.view.columns, action[6])
            if column is not None:
                return f"sort by {self.view.columns[column]} (again: the other way)"
        return None

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
        return ("labels",) if self.view.name == "pods" else POD_ACTIONS

    def action_help(self) -> None:
        note = "read-only: actions that change the cluster are hidden (their keys say why)"
        screen = help_screen(
            f"Keys in {self.view.title}",
            self,
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
        self.edit_then_choose(original, "Apply")

    def action_new(self) -> None:
        if self.console.read_only:
            self.notify("read-only: creating is off", severity="warning")
            return
        template = NEW_TEMPLATES.get(self.view.name)
        if template is None:
            self.notify(
                "c makes a new profile or policy: open :profiles or :policies", severity="warning"
            )
            return
        self.edit_then_choose(template, "Create", new=True)

    def edit_then_choose(self, original: str, verb: str, new: bool = False) -> None:
        """$EDITOR on `original`; a valid result is applied or staged, as the user picks
        (profiles, policies, endpoints; anything else is applied). Nothing is written for
        an invalid edit."""
        edited = self.run_editor(original)
        if edited == original and not new:
            self.notify("no change")
            return
        try:
            docs = load_documents(edited)
            if len(docs) != 1:
                raise ValidationError("", "the edit must hold exactly one resource")
        except (ValidationError, ValueError) as exc:
            self._write_failed(str(exc))
            return
        res = docs[0]
        if not isinstance(res, POLICY_KINDS):
            self.apply_edit(edited)
            return

        def chosen(choice: str | None) -> None:
            if choice == "apply":
                self.apply_edit(edited)
            elif choice == "stage":
                self.stage(Apply(res))
            else:
                self.notify("edit dropped; nothing written")

        self.app.push_screen(ApplyOrStageScreen(res.ident, verb), chosen)

    def stage(self, change: Change) -> None:
        """Add to the app's staging and show it on the matrix (nothing is written)."""
        try:
            staged = self.console.staging.add(change, self.console.state)
        except StageError as exc:
            self._write_failed(f"cannot stage: {exc}")
            return
        self.notify(f"staged ({staging_summary(staged)}); :matrix shows it, a applies, x discards")
        self.refresh_view()
        self.console.switch_view("matrix")

    def action_labels(self) -> None:
        row = self.selected()
        res = row.resource if row is not None else None
        if res is None or res.KIND not in LABEL_KINDS:
            self.notify(
                "select an endpoint (:endpoints) or a profile (:profiles) to label",
                severity="warning",
            )
            return
        what = (
            "its own labels"
            if res.KIND == "WorkloadEndpoint"
            else "labelsToApply: what its endpoints inherit"
        )

        def entered(text: str | None) -> None:
            if text is None:
                return
            try:
                to_set, to_remove = parse_label_args(text.split())
            except StageError as exc:
                self._write_failed(str(exc))
                return
            ns = res.metadata.namespace if res.NAMESPACED else None
            self.stage(Label(res.KIND, res.metadata.name, ns, to_set, tuple(to_remove), True))

        self.app.push_screen(LabelsScreen(res.ident, labels_of(res), what), entered)

    def run_editor(self, original: str) -> str:
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
        return edited

    @work(thread=True, group="write", exit_on_error=False)
    def apply_edit(self, text: str) -> None:
        try:
            docs = load_documents(text)
            if len(docs) != 1:
                raise ValidationError("", "the edit must hold exactly one resource")
            res = docs[0]
            ds = self.console.datastore()
            # an edit carries the version it was read at (update is a CAS on it); a new one none
            saved = ds.update(res) if res.metadata.resource_version else ds.create(res)
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
        """ctrl+d: the marked rows (space), else the selected one, after one question. On
        :pods it stops and removes the pods (rkt stop --force, rkt rm through each node's
        API); elsewhere it deletes the stored resources."""
        marked = [r for r in self.query_one(ResourceTable).rows if r.key in self.marked]
        if self.view.name == "pods":
            self._delete_pods(marked or [r for r in [self.selected()] if r is not None])
            return
        if not marked:
            res = self._resource_to_change("deleting", "delete")
            if res is None:
                return

            def answered(yes: bool | None) -> None:
                if yes:
                    self.delete_resource(res)

            self.app.push_screen(ConfirmScreen(f"Delete {res.ident}?"), answered)
            return
        if self.console.read_only:
            self.notify("read-only: deleting is off", severity="warning")
            return
        resources = [r.resource for r in marked if r.resource is not None]
        if not resources:
            self.notify("no marked row is a stored resource", severity="warning")
            return

        def bulk(yes: bool | None) -> None:
            if yes:
                self.marked.clear()
                for res in resources:
                    self.delete_resource(res)

        names = ", ".join(r.ident for r in resources[:5]) + (" ..." if len(resources) > 5 else "")
        self.app.push_screen(ConfirmScreen(f"Delete {len(resources)} resources: {names}?"), bulk)

    def _delete_pods(self, rows: list[Row]) -> None:
        if self.console.read_only:
            self.notify("read-only: stopping pods is off", severity="warning")
            return
        pods = [dict(r.data) for r in rows if r.data and r.data.get("uuid")]
        pods = [p for p in pods if p.get("app") != "node"]  # never the node service
        if not pods:
            self.notify("select (or mark) a pod other than the node service", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.marked.clear()
                self.remove_pods(pods)

        names = ", ".join(f"{str(p['uuid'])[:8]} on {p.get('node')}" for p in pods[:5])
        more = " ..." if len(pods) > 5 else ""
        question = f"Stop and remove {len(pods)} pod(s): {names}{more}?"
        self.app.push_screen(ConfirmScreen(question), answered)

    @work(thread=True, group="write", exit_on_error=False)
    def remove_pods(self, pods: list[dict]) -> None:
        app = self.console
        urls = app.node_api_urls()
        done, failed = 0, []
        for pod in pods:
            node, uuid = str(pod.get("node")), str(pod["uuid"])
            try:
                if not urls.get(node):
                    raise NodeAPIError(f"node {node} publishes no API address")
                with NodeClient(urls[node], timeout=60) as client:
                    if pod.get("state") == "running":
                        client.stop_pod(uuid)
                    client.remove_pod(uuid)
                done += 1
            except NodeAPIError as exc:
                failed.append(f"{uuid[:8]}: {exc}")
        if app.poller:
            app.poller.poll_now()
        if failed:
            app.call_from_thread(self._write_failed, "; ".join(failed))
        app.call_from_thread(self.notify, f"{done} pod(s) stopped and removed")

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

    # ------------------------------------------------------------ a pod's logs and shell
    def selected_pod(self, doing: str) -> dict | None:
        row = self.selected()
        if self.view.name != "pods" or row is None or not row.data:
            self.notify(f"select a pod in :pods for {doing}", severity="warning")
            return None
        return row.data

    def action_logs(self) -> None:
        pod = self.selected_pod("its logs")
        if pod is not None:
            url = self.console.node_api_urls().get(pod["node"], "")
            self.app.push_screen(
                LogScreen(pod["node"], str(pod.get("uuid", "")), str(pod.get("app", "")), url)
            )

    def action_shell(self) -> None:
        if self.console.read_only:
            self.notify("read-only: shells are off", severity="warning")
            return
        pod = self.selected_pod("a shell")
        if pod is not None:
            lab = self.console.lab_name or self.console.cluster_name
            self.check_shell(lab, pod["node"], str(pod.get("uuid", "")))

    @work(thread=True, group="shell", exit_on_error=False)
    def check_shell(self, lab: str, node: str, uuid: str) -> None:
        why = podshell.check_enter(lab, node, uuid)
        if why:
            self.app.call_from_thread(self.notify, f"shell: {why}", severity="error", timeout=8)
        else:
            argv = podshell.enter_argv(lab, node, uuid, podshell.shell_command())
            self.app.call_from_thread(self.run_shell, node, uuid, argv)

    def run_shell(self, node: str, uuid: str, argv: list[str]) -> None:
        try:
            with self.app.suspend():
                code = subprocess.run(argv, check=False).returncode
        except Exception:  # headless (tests) or no terminal to hand over: run it as is
            code = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL).returncode
        note = "" if code == 0 else f" (exit code {code})"
        self.notify(f"shell in {uuid[:8]} on {node} ended{note}")

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
