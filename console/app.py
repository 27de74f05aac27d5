"""calico-console: browse a Calico-on-rkt cluster live, from etcd and the node agents.

`calico-console` with no arguments opens the running local lab (and offers to start one if
there is none); `--etcd-endpoints` or `ETCD_ENDPOINTS` opens any cluster, with TLS from
`--etcd-ca-cert-file/--etcd-cert-file/--etcd-key-file` or Calico's ETCD_*_FILE variables.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Iterable
from functools import partial

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from calico.datastore import Datastore
from calico.heap import space_out as space_out_gc
from calico.resources import Node
from console.model import SCREEN_VIEWS, VIEWS, ClusterState, NodeInfo, complete_view, view_names
from console.nodes import NodePoller
from console.screens.base import ClusterChanged, ConsoleScreen
from console.screens.browse import BrowseScreen
from console.screens.flows import FlowsScreen
from console.screens.help import key_help
from console.screens.matrix import MatrixScreen
from console.screens.probe import ProbeRecord
from console.screens.tutorial import TutorialScreen
from console.shell import LabShell
from console.staging import Staging
from console.sync import EtcdFollower, SyncReport


class CalicoConsole(App):
    CSS_PATH = "app.tcss"
    TITLE = "calico-console"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+s", "screenshot_svg", "screenshot", show=False,
                tooltip="save a screenshot (SVG)"),
        # Textual's own palette key, declared here to say what it offers
        Binding("ctrl+p", "command_palette", "palette", show=False, priority=True,
                tooltip="command palette: every action"),
    ]  # fmt: skip
    # Made on first use and kept, so a screen's state (a probed matrix, the flows seen)
    # survives leaving it. Plain imports above, not importlib on demand: the matrix, flows
    # and tutorial screens add about 30 ms to importing the app (python -X importtime,
    # median of 15 runs), against a first paint budget of 1 s.
    SCREENS = {
        "browse": BrowseScreen,
        "matrix": MatrixScreen,
        "flows": FlowsScreen,
        "tutorial": TutorialScreen,
    }

    def __init__(
        self,
        endpoints: str | None = None,
        cluster_name: str = "",
        *,
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
        self.follower: EtcdFollower | None = None
        self.poller: NodePoller | None = None
        self.node_infos: dict[str, NodeInfo] = dict(self.state.nodes)
        self.lab_name = lab_name
        self.probe_history: list[ProbeRecord] = []  # kept across probe dialogs
        self.staging = Staging()  # what-if: changes staged by the browse screen, shown by :matrix
        self._datastore: Datastore | None = None
        if follow:
            # Its process starts with the app: it imports the etcd client, connects and
            # lists while Textual starts (console/follower_process.py); on_load reads it.
            self.follower = EtcdFollower(endpoints, self._deliver_from_thread)
            self.follower.source.start()

    # ------------------------------------------------------------ lifecycle
    def get_default_screen(self) -> Screen:
        return self.browse

    def on_load(self) -> None:
        """Before the screens are composed: the follower's updates are taken in while the
        first screen is built (its process started with the app)."""
        # Background threads (the follower's pages, row builds) hold the GIL in 5 ms turns
        # by default; shorter turns keep the event loop's waits for it well under a frame.
        sys.setswitchinterval(0.0005)
        # Young collections 50,000 allocations apart while 10,000 resources arrive
        # (calico.heap); nothing frozen, the tests run hundreds of consoles in one process.
        space_out_gc()
        if self.follower is not None:
            self.run_follower()

    def on_mount(self) -> None:
        self.sub_title = self.cluster_name
        if self.follow:
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
        return {
            n.metadata.name: n.api_url or ""
            for n in self.state.of_kind(Node)
            if isinstance(n, Node)
        }

    def _nodes_from_thread(self, infos: dict[str, NodeInfo]) -> None:
        self.call_from_thread(self.apply_node_infos, infos)

    def apply_node_infos(self, infos: dict[str, NodeInfo]) -> None:
        if infos == self.node_infos:
            return  # the usual case: a poll that found nothing new costs no repaint
        self.state.nodes = infos
        self.node_infos = infos
        self.cluster_changed()

    def on_unmount(self) -> None:
        if self.follower:
            self.follower.stop()
        if self.poller:
            self.poller.stop()

    def _deliver_from_thread(self, report: SyncReport) -> None:
        self.call_from_thread(self.apply_report, report)

    def apply_report(self, report: SyncReport) -> None:
        if report.data_changed:
            self.state = report.state
            self.state.nodes = self.node_infos  # node API data comes from the poller, not etcd
        self.sync_state = report.sync
        if report.error:
            self.last_error = report.error
        self.cluster_changed(data=report.data_changed)

    def cluster_changed(self, data: bool = True) -> None:
        """Tell every screen on the stack (the browse screen is always there); each redraws
        what it shows from the new state (`data` False: only the sync state changed). A
        screen off the stack catches up when resumed."""
        for screen in self.screen_stack:
            screen.post_message(ClusterChanged(self.state, data=data))

    def datastore(self) -> Datastore:
        """The datastore for writes (made on first use, in a worker thread)."""
        if self._datastore is None:
            self._datastore = Datastore.connect(self.endpoints, timeout=5.0)
        return self._datastore

    # ------------------------------------------------------------ navigation
    @property
    def browse(self) -> BrowseScreen:
        """The main screen (installed from SCREENS, so there is one, kept for the whole run)."""
        return self.get_screen("browse", BrowseScreen)

    def switch_view(self, name: str) -> None:
        """`:name`: a table of the browse screen, or one of the screens in SCREENS;
        `:tutorial NAME` opens that walkthrough."""
        name, _, arg = name.strip().partition(" ")
        if arg and name == "tutorial":
            self._open_tutorial(arg.strip())
            return
        matches = complete_view(name)
        target = name if name in VIEWS else (matches[0] if len(matches) == 1 else "")
        if target == "dataplane":  # of the node or endpoint selected in the browse screen
            self.browse.action_dataplane()
        elif target in SCREEN_VIEWS:
            self.push_screen(target)
        elif target in VIEWS:
            self.browse.show_view(VIEWS[target])
        elif target or matches:
            self.notify(f":{name} is not available yet", severity="warning")
        else:
            self.notify(f"unknown view {name!r}; try one of: {', '.join(VIEWS)}", severity="error")

    def _open_tutorial(self, which: str) -> None:
        from calico.tutorial import TUTORIALS

        if which not in TUTORIALS:
            self.notify(
                f"unknown tutorial {which!r}; try one of: {', '.join(TUTORIALS)}", severity="error"
            )
            return
        self.push_screen("tutorial")
        screen = self.get_screen("tutorial", TutorialScreen)
        self.call_after_refresh(screen.choose, which)

    def lab_shell(self) -> LabShell:
        """Runs the tutorial's commands in the lab's nodes, against the cluster on screen."""
        # calicoctl steps run in the operator's namespace against the cluster on screen
        env = {"ETCD_ENDPOINTS": self.endpoints} if self.endpoints else {}
        return LabShell(self.lab_name, env)

    # ------------------------------------------------------------ what the cluster holds
    def known_nodes(self) -> list[str]:
        return sorted({n.metadata.name for n in self.state.of_kind(Node)} | set(self.state.nodes))

    def known_networks(self) -> list[str]:
        names = {n.get("name", "") for info in self.state.nodes.values() for n in info.networks}
        return sorted(n for n in names if n)

    def action_screenshot_svg(self) -> None:
        if self.is_web:  # a file on the server is no use to the browser: it opens in a tab
            self.deliver_screenshot()
            self.notify("screenshot: opened in a new tab (SVG)")
            return
        path = self.save_screenshot()
        self.notify(f"screenshot saved: {path}")

    # ------------------------------------------------------------ command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own, a command per view, then the keys of the screen on top (the app's
        keys, quit and screenshot, are among Textual's)."""
        yield from super().get_system_commands(screen)
        for name in view_names():
            title = VIEWS[name].title if name in VIEWS else name
            yield SystemCommand(f"View: {title}", f":{name}", partial(self.switch_view, name))
        hidden = screen.hidden_actions() if isinstance(screen, ConsoleScreen) else ()
        for entry in key_help(screen, hidden=hidden):
            if entry.node is not self:
                yield SystemCommand(
                    entry.text[:1].upper() + entry.text[1:],
                    f"key {entry.key_text}",
                    partial(entry.node.run_action, entry.action),
                )


TLS_VARS = ("ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE")


def find_lab_endpoints() -> tuple[str, str] | None:
    """(lab name, etcd endpoints) of a running local lab, asked of the `calico-lab` CLI."""
    from calico.tools import program

    try:
        names = subprocess.run(
            [program("calico-lab"), "list"], capture_output=True, text=True, timeout=10
        )
        # the lab `calico-lab` itself would pick first ($CALICO_LAB, else its default
        # "calilab"), then any other: with test labs about, the console opens the one
        # `calico-lab up` just started
        preferred = os.environ.get("CALICO_LAB") or "calilab"
        for name in sorted(names.stdout.split(), key=lambda n: n != preferred):
            env = subprocess.run(
                [program("calico-lab"), "env", "--name", name],
                capture_output=True,
                text=True,
                timeout=10,
            )
            found = None
            for line in env.stdout.splitlines():
                var, _, value = line.removeprefix("export ").partition("=")
                if var == "ETCD_ENDPOINTS":
                    found = name, shlex.split(value)[0]
                elif var in TLS_VARS:  # a TLS lab: its client certificate, for us and our children
                    os.environ[var] = shlex.split(value)[0]
            if found:
                return found
    except (OSError, subprocess.SubprocessError):
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calico-console", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--etcd-endpoints", help="etcd to open (default: ETCD_ENDPOINTS, else the running lab)"
    )
    for var in TLS_VARS:
        flag = "--" + var.lower().replace("_", "-")
        parser.add_argument(flag, metavar="FILE", help=f"etcd TLS (default: ${var})")
    parser.add_argument(
        "--read-only", action="store_true", help="hide everything that changes the cluster"
    )
    parser.add_argument("--cluster-name", default="", help=argparse.SUPPRESS)  # web sessions
    from console import web

    web.add_arguments(parser)
    args = parser.parse_args(argv)
    # TLS flags become the environment: the console's datastore connections and the
    # calicoctl steps it runs (the tutorial) all read it.
    for var in TLS_VARS:
        value = getattr(args, var.lower())
        if value:
            os.environ[var] = value
    endpoints = args.etcd_endpoints or os.environ.get("ETCD_ENDPOINTS")
    if endpoints:
        from calico.config import ConfigError, resolve_settings

        try:
            resolve_settings(endpoints)
        except ConfigError as exc:
            print(f"calico-console: {exc}", file=sys.stderr)
            return 2
    name = args.cluster_name
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
    if args.web:  # every session a console of its own on the cluster resolved here
        return web.serve(
            ["--etcd-endpoints", endpoints, "--cluster-name", name or endpoints],
            cluster=name or endpoints,
            host=args.host,
            port=args.port,
            token=args.token,
            max_sessions=args.max_sessions,
            read_only=args.read_only or not args.allow_changes,
        )
    CalicoConsole(
        endpoints=endpoints, cluster_name=name or endpoints, read_only=args.read_only
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
