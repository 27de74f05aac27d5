"""The console's Textual app: its screens, what it follows (etcd through its follower,
the node agents through the poller) and how it moves between views. The program around
it, `calico-console`, is console/cli.py."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from functools import partial

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from calico import heap
from calico.datastore import Datastore
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

FIRST_LOAD_HOLD = 5.0  # seconds at most the cyclic collector waits for the first rows


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
        follower: EtcdFollower | None = None,
    ):
        """`follower`: one already started (calico-console starts it before importing
        Textual); else, following, the app makes and starts its own."""
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
        self._first_load_held = False  # collections wait for the first rows (on_load)
        self._listed = not follow  # the state holds a listing (or was given whole)
        if follow:
            # Its process starts with the app at the latest: it imports the etcd client,
            # connects and lists while Textual starts (console/follower_process.py); on_load
            # takes its updates in.
            self.follower = follower or EtcdFollower(endpoints)
            self.follower.deliver = self._deliver_from_thread
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
        # Young collections 50,000 allocations apart while 10,000 resources arrive, and
        # what is alive now (the interpreter, Textual, this app) out of the collector's sight
        # while the app runs: a full collection walking it paused the event loop 35-40 ms
        # mid-load at 10,000 endpoints. Thawed when the app stops (calico.heap): the tests
        # run hundreds of consoles in one process.
        heap.space_out()
        heap.freeze()
        # And none at all until the first listing's rows are on screen (rows_shown), or
        # FIRST_LOAD_HOLD at most: all that load makes survives it (calico.heap.hold).
        heap.hold()
        self._first_load_held = True
        self.set_timer(FIRST_LOAD_HOLD, self._end_first_load)
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

    def rows_shown(self) -> None:
        """The browse screen put rows on screen: the end of the first load if they are
        a listing's."""
        if self._first_load_held and self._listed:
            self._end_first_load()

    def _end_first_load(self) -> None:
        if self._first_load_held:
            self._first_load_held = False
            heap.release()

    def on_unmount(self) -> None:
        self._end_first_load()
        heap.thaw()
        if self.follower:
            self.follower.stop()
        if self.poller:
            self.poller.stop()

    def _deliver_from_thread(self, report: SyncReport) -> None:
        self.call_from_thread(self.apply_report, report)

    def apply_report(self, report: SyncReport) -> None:
        self._listed = report.listed
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
