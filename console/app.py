"""calico-console: browse a Calico-on-rkt cluster live, from etcd and the node agents.

`calico-console` with no arguments opens the running local lab (and offers to start one if
there is none); `--etcd-endpoints` or `ETCD_ENDPOINTS` opens any cluster.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from calico.policy import describe_rule
from console.model import VIEWS, ClusterState, Row, RowFilter, View, complete_view, profile_members
from console.nodes import NodePoller
from console.screens.confirm import ConfirmScreen
from console.screens.help import help_screen
from console.screens.text_view import TextScreen
from console.sync import EtcdFollower, SyncReport
from console.widgets.command_bar import CommandBar
from console.widgets.resource_table import ResourceTable
from console.widgets.status_bar import StatusBar

SYNC_ROWS = 2000  # up to this many rows a view is drawn at once; beyond, in slices
SCREEN_VIEWS = ("matrix", "flows")  # views that are whole screens of their own


class BrowseScreen(Screen):
    """The main screen: one table showing the current view, k9s style."""

    BINDINGS = [
        Binding("colon", "command", ":view", key_display=":"),
        Binding("slash", "filter", "/filter", key_display="/"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("d", "describe", "describe"),
        Binding("y", "yaml", "yaml"),
        Binding("e", "edit", "edit"),
        Binding("ctrl+d", "delete", "delete"),
        Binding("n", "launch", "new pod"),
        Binding("p", "probe", "probe"),
        Binding("escape", "clear_filter", "clear", show=False),
    ]

    def on_mount(self) -> None:
        self.app.refresh_view(self)  # type: ignore[attr-defined]
        self.query_one(ResourceTable).focus()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="view-title")
        yield ResourceTable(id="table")
        yield Static(id="empty-hint")
        yield CommandBar(id="command")
        yield StatusBar(id="status")
        yield Footer()

    # actions delegate to the app, which owns state and the datastore
    def action_command(self) -> None:
        self.query_one(CommandBar).open(":")

    def action_filter(self) -> None:
        self.query_one(CommandBar).open("/", self.app.row_filter.text)  # type: ignore[attr-defined]

    def action_clear_filter(self) -> None:
        bar = self.query_one(CommandBar)
        if bar.has_class("-active"):
            bar.close()
            self.query_one(ResourceTable).focus()
        else:
            self.app.set_filter("")  # type: ignore[attr-defined]

    def action_help(self) -> None:
        self.app.action_help()  # type: ignore[attr-defined]

    def action_describe(self) -> None:
        self.app.action_describe()  # type: ignore[attr-defined]

    def action_yaml(self) -> None:
        self.app.action_yaml()  # type: ignore[attr-defined]

    def action_edit(self) -> None:
        self.app.action_edit()  # type: ignore[attr-defined]

    def action_delete(self) -> None:
        self.app.action_delete()  # type: ignore[attr-defined]

    def action_launch(self) -> None:
        self.app.action_launch()  # type: ignore[attr-defined]

    def action_probe(self) -> None:
        self.app.action_probe()  # type: ignore[attr-defined]

    def on_input_submitted(self, event: Input.Submitted) -> None:
        bar = self.query_one(CommandBar)
        bar.close()
        self.query_one(ResourceTable).focus()
        if bar.mode == ":":
            self.app.switch_view(event.value.strip().lstrip(":"))  # type: ignore[attr-defined]
        else:
            self.app.set_filter(event.value)  # type: ignore[attr-defined]


class CalicoConsole(App):
    CSS_PATH = "app.tcss"
    TITLE = "calico-console"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+s", "screenshot_svg", "screenshot", show=False),
    ]

    def __init__(
        self,
        endpoints: str | None = None,
        cluster_name: str = "",
        read_only: bool = False,
        follow: bool = True,
        state: ClusterState | None = None,
        lab_name: str | None = None,
    ):
        super().__init__()
        self.endpoints = endpoints
        self.cluster_name = cluster_name or (endpoints or "etcd")
        self.read_only = read_only
        self.follow = follow
        self.state = state or ClusterState()
        self.sync_state = "connecting" if follow else "in-sync"
        self.last_error = ""
        self.view: View = VIEWS["nodes"]
        self.row_filter = RowFilter()
        self.follower: EtcdFollower | None = None
        self.poller: NodePoller | None = None
        self.node_infos: dict = dict(self.state.nodes)
        self.lab_name = lab_name
        self.tutorial_screen = None
        self.screens_by_view: dict[str, Screen] = {}
        self.probe_history: list = []
        self.generation = 0  # bumps on every refresh; stale background builds are dropped
        self._datastore = None

    # ------------------------------------------------------------ lifecycle
    def get_default_screen(self) -> Screen:
        return BrowseScreen()

    def on_mount(self) -> None:
        # Background threads (etcd decode, row builds) hold the GIL in 5 ms turns by default;
        # shorter turns keep the event loop's waits for it well under a frame.
        sys.setswitchinterval(0.0005)
        self.sub_title = self.cluster_name
        if self.follow:
            self.follower = EtcdFollower(self.endpoints, self._deliver_from_thread)
            self.run_follower()
            self.poller = NodePoller(self.node_api_urls, self._nodes_from_thread)
            self.run_poller()

    @work(thread=True, exclusive=True, group="etcd-follow", exit_on_error=False)
    def run_follower(self) -> None:
        assert self.follower is not None
        self.follower.run()

    @work(thread=True, exclusive=True, group="node-poll", exit_on_error=False)
    def run_poller(self) -> None:
        assert self.poller is not None
        self.poller.run()

    def node_api_urls(self) -> dict[str, str]:
        """Node name -> API URL, read from the Node resources (called from the poll thread)."""
        from calico.resources import Node

        return {
            n.metadata.name: n.api_url or ""
            for n in self.state.of_kind(Node)
            if isinstance(n, Node)
        }

    def _nodes_from_thread(self, infos) -> None:
        self.call_from_thread(self.apply_node_infos, infos)

    def apply_node_infos(self, infos) -> None:
        if infos == self.node_infos:
            return  # the usual case: a poll that found nothing new costs no repaint
        self.state.nodes = infos
        self.node_infos = infos
        self.refresh_view()

    def on_unmount(self) -> None:
        if self.follower:
            self.follower.stop()
        if self.poller:
            self.poller.stop()

    def _deliver_from_thread(self, report: SyncReport) -> None:
        self.call_from_thread(self.apply_report, report)

    def apply_report(self, report: SyncReport) -> None:
        self.state = report.state
        self.state.nodes = self.node_infos  # node API data comes from the poller, not etcd
        self.sync_state = report.sync
        if report.error:
            self.last_error = report.error
        self.refresh_view()

    def datastore(self):
        """The datastore for writes (made on first use, in a worker thread)."""
        if self._datastore is None:
            from calico.datastore import Datastore

            self._datastore = Datastore.connect(self.endpoints, timeout=5.0)
        return self._datastore

    # ------------------------------------------------------------ view
    @property
    def browse(self) -> BrowseScreen | None:
        screen = self.screen
        if isinstance(screen, BrowseScreen):
            return screen
        for s in self.screen_stack:
            if isinstance(s, BrowseScreen):
                return s
        return None

    def switch_view(self, name: str) -> None:
        matches = complete_view(name)
        target = name if name in VIEWS else (matches[0] if len(matches) == 1 else "")
        if target == "tutorial":
            self.open_tutorial()
        elif target in SCREEN_VIEWS:
            self.open_screen(target)
        elif target in VIEWS:
            self.view = VIEWS[target]
            self.row_filter = RowFilter()
            self.refresh_view()
        elif target or matches:
            self.notify(f":{name} is not available yet", severity="warning")
        else:
            self.notify(f"unknown view {name!r}; try one of: {', '.join(VIEWS)}", severity="error")

    def open_tutorial(self) -> None:
        from console.screens.tutorial import TutorialScreen
        from console.shell import LabShell

        if self.tutorial_screen is None:
            # calicoctl steps run in the operator's namespace against the cluster on screen
            env = {"ETCD_ENDPOINTS": self.endpoints} if self.endpoints else {}
            self.tutorial_screen = TutorialScreen(LabShell(self.lab_name, env))
        self.push_screen(self.tutorial_screen)

    def open_screen(self, name: str) -> None:
        """`:matrix`, `:flows`: full screens, one module each (console/screens/<name>.py,
        class `<Name>Screen(app)`), created once and kept so their state survives."""
        import importlib

        screen = self.screens_by_view.get(name)
        if screen is None:
            module = importlib.import_module(f"console.screens.{name}")
            screen = getattr(module, f"{name.capitalize()}Screen")(self)
            self.screens_by_view[name] = screen
        self.push_screen(screen)

    def set_filter(self, text: str) -> None:
        self.row_filter = RowFilter(text)
        self.refresh_view()

    def current_rows(self) -> list[Row]:
        return self.row_filter.apply(self.view.rows(self.state))

    def refresh_view(self, browse: BrowseScreen | None = None) -> None:
        """Show the current view. Rows of small clusters are built at once; large ones in a
        worker thread, so the UI never stalls (the table draws only what is on screen)."""
        browse = browse or self.browse
        if browse is None:
            return
        try:
            browse.query_one(ResourceTable)
        except NoMatches:  # not composed yet; its on_mount refreshes again
            return
        self.generation += 1
        if self.row_estimate() <= SYNC_ROWS:
            self._show(browse, self.view, self.current_rows(), self.generation)
        else:
            self.build_rows_in_background(self.view, self.row_filter, self.state, self.generation)

    def row_estimate(self) -> int:
        return len(self.state.resources) + sum(len(i.pods) for i in self.state.nodes.values())

    def build_rows_in_background(
        self, view: View, flt: RowFilter, state: ClusterState, gen: int
    ) -> None:
        # run_worker with a closure, not @work: @work describes a worker by repr() of its
        # arguments, and repr of 10,000 resources alone stalled the event loop 150 ms.
        def build() -> None:
            rows = flt.apply(view.rows(state))
            self.call_from_thread(self._show_async, view, rows, gen)

        self.run_worker(
            build, thread=True, exclusive=True, group="rows", description="build rows",
            exit_on_error=False,
        )  # fmt: skip

    def _show_async(self, view: View, rows: list[Row], gen: int) -> None:
        browse = self.browse
        if browse is None or gen != self.generation:
            return  # a newer refresh superseded this one
        table = browse.query_one(ResourceTable)
        table.set_view(view)
        self._show_header(browse, view, rows)
        table.show_rows(rows)

    def _show(self, browse: BrowseScreen, view: View, rows: list[Row], gen: int) -> None:
        table = browse.query_one(ResourceTable)
        table.set_view(view)
        table.show_rows(rows)
        self._show_header(browse, view, rows)

    def _show_header(self, browse: BrowseScreen, view: View, rows: list[Row]) -> None:
        flt = f"  /{self.row_filter.text}" if self.row_filter.text else ""
        browse.query_one("#view-title", Static).update(f" {view.title} ({len(rows)}){flt}")
        hint = browse.query_one("#empty-hint", Static)
        if rows:
            hint.update("")
        else:
            hint.update(
                view.empty_hint if not flt else "No rows match the filter (escape clears it)."
            )
        hint.display = not rows
        extra = "read-only" if self.read_only else ""
        browse.query_one(StatusBar).show(self.cluster_name, self.sync_state, self.last_error, extra)

    def selected(self) -> Row | None:
        browse = self.browse
        return browse.query_one(ResourceTable).current() if browse else None

    # ------------------------------------------------------------ actions
    def action_help(self) -> None:
        self.push_screen(help_screen(self.view.title, [], self.read_only))

    def action_describe(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("nothing selected", severity="warning")
            return
        self.push_screen(TextScreen(f"Describe {row.cells[0]}", describe(row, self.state)))

    def action_yaml(self) -> None:
        row = self.selected()
        if row is None or row.resource is None:
            self.notify("the selected row is not a stored resource", severity="warning")
            return
        import yaml

        body = yaml.safe_dump(row.resource.to_dict(), sort_keys=False)
        self.push_screen(TextScreen(f"{row.resource.ident}", body, syntax="yaml"))

    def action_edit(self) -> None:
        if self.read_only:
            self.notify("read-only: editing is off", severity="warning")
            return
        row = self.selected()
        if row is None or row.resource is None:
            self.notify("select a stored resource to edit", severity="warning")
            return
        import yaml

        original = yaml.safe_dump(row.resource.to_dict(), sort_keys=False)
        path = Path(tempfile.mkstemp(prefix="calico-edit-", suffix=".yaml")[1])
        path.write_text(original)
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        try:
            try:
                with self.suspend():
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
        from calico.errors import DatastoreError
        from calico.resources import ValidationError, load_documents

        try:
            docs = load_documents(text)
            if len(docs) != 1:
                raise ValidationError("", "the edit must hold exactly one resource")
            saved = self.datastore().update(docs[0])
        except (ValidationError, DatastoreError, ValueError) as exc:
            self.call_from_thread(self._edit_failed, str(exc))
            return
        self.call_from_thread(
            self.notify, f"saved {saved.ident} (resourceVersion {saved.metadata.resource_version})"
        )

    def _edit_failed(self, message: str) -> None:
        self.last_error = message
        self.notify(f"not saved: {message}", severity="error", timeout=8)
        self.refresh_view()

    def action_delete(self) -> None:
        if self.read_only:
            self.notify("read-only: deleting is off", severity="warning")
            return
        row = self.selected()
        if row is None or row.resource is None:
            self.notify("select a stored resource to delete", severity="warning")
            return
        res = row.resource

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_resource(res)

        self.push_screen(ConfirmScreen(f"Delete {res.ident}?"), answered)

    @work(thread=True, group="write", exit_on_error=False)
    def delete_resource(self, res) -> None:
        from calico.errors import DatastoreError

        try:
            self.datastore().delete(type(res), res.metadata.name, res.metadata.namespace)
        except DatastoreError as exc:
            self.call_from_thread(self._edit_failed, str(exc))
            return
        self.call_from_thread(self.notify, f"deleted {res.ident}")

    def known_nodes(self) -> list[str]:
        from calico.resources import Node

        return sorted({n.metadata.name for n in self.state.of_kind(Node)} | set(self.state.nodes))

    def known_networks(self) -> list[str]:
        names = {n.get("name", "") for info in self.state.nodes.values() for n in info.networks}
        return sorted(n for n in names if n)

    def action_launch(self) -> None:
        if self.read_only:
            self.notify("read-only: launching pods is off", severity="warning")
            return
        from console.screens.launch import LaunchScreen

        row = self.selected()
        default = row.cells[0] if row is not None and self.view.name == "nodes" else None

        def launched(req) -> None:
            if req is not None:
                self.notify(f"launching: {req.command()}")
                self.launch_pod(req)

        self.push_screen(LaunchScreen(self.known_nodes(), self.known_networks(), default), launched)

    @work(thread=True, group="write", exit_on_error=False)
    def launch_pod(self, req) -> None:
        from calico.nodeapi import NodeAPIError, NodeClient

        url = self.node_api_urls().get(req.node, "")
        try:
            if not url:
                raise NodeAPIError(f"node {req.node} publishes no API address")
            with NodeClient(url, timeout=120) as client:
                res = client.run_pod(req.image, req.networks, req.exec_, req.args)
        except NodeAPIError as exc:
            self.call_from_thread(self._edit_failed, f"launch on {req.node}: {exc}")
            return
        if self.poller:
            self.poller.poll_now()
        self.call_from_thread(self.notify, f"pod {res.get('uuid', '')[:8]} started on {req.node}")

    def action_probe(self) -> None:
        from console.screens.probe import ProbeScreen

        row = self.selected()
        source = None
        target = ""
        if row is not None and self.view.name == "pods" and row.data:
            source = row.data
        elif row is not None and self.view.name == "endpoints" and row.resource is not None:
            nets = row.resource.spec.ip_networks
            target = f"{nets[0].split('/')[0]}:80" if nets else ""
        screen = ProbeScreen(
            self, self.known_nodes(), self.known_networks(), source, target, self.probe_history
        )
        self.push_screen(screen)

    def action_screenshot_svg(self) -> None:
        path = self.save_screenshot()
        self.notify(f"screenshot saved: {path}")

    # ------------------------------------------------------------ command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for name, view in VIEWS.items():
            yield SystemCommand(
                f"View: {view.title}", f":{name}", lambda n=name: self.switch_view(n)
            )
        yield SystemCommand("Describe selected", "d", self.action_describe)
        yield SystemCommand("Show YAML of selected", "y", self.action_yaml)
        yield SystemCommand("Probe connectivity", "p", self.action_probe)
        if not self.read_only:
            yield SystemCommand("Launch a test pod", "n", self.action_launch)
            yield SystemCommand("Edit selected in $EDITOR", "e", self.action_edit)
            yield SystemCommand("Delete selected", "ctrl+d", self.action_delete)
        yield SystemCommand("Clear filter", "escape", lambda: self.set_filter(""))
        yield SystemCommand("Screenshot (SVG)", "ctrl+s", self.action_screenshot_svg)


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
    return "\n".join(lines)


def _columns_for(row: Row) -> tuple[str, ...]:
    for view in VIEWS.values():
        if len(view.columns) == len(row.cells) and row.key.split("/")[0] in view.name:
            return view.columns
    return tuple(f"col{i}" for i in range(len(row.cells)))


def find_lab_endpoints() -> tuple[str, str] | None:
    """(lab name, etcd endpoints) of a running local lab, asked of the `calico-lab` CLI."""
    from calico.tools import program

    try:
        names = subprocess.run(
            [program("calico-lab"), "list"], capture_output=True, text=True, timeout=10
        )
        for name in names.stdout.split():
            env = subprocess.run(
                [program("calico-lab"), "env", "--name", name],
                capture_output=True,
                text=True,
                timeout=10,
            )
            for line in env.stdout.splitlines():
                if line.startswith("export ETCD_ENDPOINTS="):
                    return name, shlex.split(line.split("=", 1)[1])[0]
    except (OSError, subprocess.SubprocessError):
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calico-console", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--etcd-endpoints", help="etcd to open (default: ETCD_ENDPOINTS, else the running lab)"
    )
    parser.add_argument(
        "--read-only", action="store_true", help="hide everything that changes the cluster"
    )
    args = parser.parse_args(argv)
    endpoints = args.etcd_endpoints or os.environ.get("ETCD_ENDPOINTS")
    name = ""
    if not endpoints:
        found = find_lab_endpoints()
        if found is None:
            if sys.stdin.isatty():
                answer = input("No local lab is running. Start one now (calico-lab up)? [Y/n] ")
                if answer.strip().lower() in ("", "y", "yes"):
                    subprocess.run(["calico-lab", "up"], check=False)
                    found = find_lab_endpoints()
            if found is None:
                print(
                    "calico-console: no cluster: start a lab (calico-lab up) or pass --etcd-endpoints",
                    file=sys.stderr,
                )
                return 1
        name, endpoints = found
    CalicoConsole(
        endpoints=endpoints, cluster_name=name or endpoints, read_only=args.read_only
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
