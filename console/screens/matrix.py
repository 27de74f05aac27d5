"""`:matrix`: who should reach whom (policy) beside who does (probes), cyclonus style.

Rows are sources, columns destinations. By network (default) a source is "a fresh pod on
network N on node Y", for every calico network on every node; by pod (`m`) the sources
are the running pods' endpoints themselves. Destinations are the running pods' endpoints:
one per address on a calico network, so a pod on two networks is two rows and two
columns (`httpd/6876aae5/eth0`, `.../eth1`), each judged by its own profiles and probed
from its own address. Each cell shows `expected observed`: expected from `calico.policy`
(console/matrix.py), observed from a TCP probe run now through the source node's agent,
one `probes` batch per node in worker threads, filled in as each batch answers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Input, Static

from calico.errors import DatastoreError
from calico.nodeapi import NodeAPIError, NodeClient
from calico.policy import PolicySet
from calico.resources import GlobalNetworkPolicy, NetworkPolicy, Profile, WorkloadEndpoint
from calico.whatif import StageError
from calico.whatif_store import commit
from console.access import changing
from console.matrix import (
    ALLOWED,
    DENIED,
    UNKNOWN,
    Cell,
    Matrix,
    Target,
    build,
    clear_staged,
    stage_into,
)
from console.model import ClusterState
from console.screens.base import ClusterChanged, ConsoleScreen
from console.screens.help import bound_key, help_screen
from console.screens.text_view import TextScreen
from console.screens.why import WhyScreen, policy_set_of
from console.staging import Staging, summary
from console.widgets.key_footer import KeyFooter
from console.widgets.labelled_table import LabelledDataTable

PROBE_TIMEOUT = 2.0  # seconds a probe waits for a connection before calling it denied
PROBE_POD_APP = "probe"  # the agent's reusable "fresh pod on a network" (not a destination)
MARK_STYLE = {ALLOWED: "bold green", DENIED: "bold yellow", UNKNOWN: "dim"}
FLIP_STYLE = "bold black on magenta"  # a staged mark that turns the cell's verdict around
WORDS = {ALLOWED: "allowed", DENIED: "denied", UNKNOWN: "unknown"}
POLICY_KINDS = (Profile, GlobalNetworkPolicy, NetworkPolicy, WorkloadEndpoint)


# ---------------------------------------------------------------- targets from the state


def calico_networks(state: ClusterState) -> list[str]:
    """Networks of type calico found in any reachable node's net.d."""
    names = set()
    for info in state.nodes.values():
        for net in info.networks:
            if net.get("type") == "calico" and net.get("name"):
                names.add(net["name"])
    return sorted(names)


def network_sources(state: ClusterState, networks: list[str]) -> list[Target]:
    """ "A fresh pod on network N on node Y", for every calico network × node that has it."""
    out = []
    for net in networks:
        for node, info in sorted(state.nodes.items()):
            if info.reachable and any(n.get("name") == net for n in info.networks):
                out.append(Target(f"{net}@{node}", node, net))
    return out


def pod_targets(state: ClusterState, policy_set: PolicySet, networks: list[str]) -> list[Target]:
    """One target per endpoint of every running pod: each address it has on a calico
    network (probe pods left out). A pod on several networks gets one per interface,
    labelled with it (`httpd/6876aae5/eth1`), each with its own endpoint and profiles."""
    out = []
    for node, info in sorted(state.nodes.items()):
        for pod in info.pods:
            if pod.get("state") != "running" or pod.get("app") == PROBE_POD_APP:
                continue
            uuid = str(pod.get("uuid", ""))
            label = f"{pod.get('app') or 'pod'}/{uuid[:8]}"
            ends = []
            for index, net in enumerate(pod.get("networks", [])):
                name, ip = net.get("name"), str(net.get("ip") or "").split("/")[0]
                if name in networks and ip:
                    endpoint = policy_set.endpoint_for_ip(ip)
                    iface = str(
                        net.get("ifName")
                        or (endpoint.spec.endpoint if endpoint is not None else "")
                        or f"eth{index}"
                    )
                    ends.append((name, ip, endpoint, iface))
            for name, ip, endpoint, iface in ends:
                shown = f"{label}/{iface}" if len(ends) > 1 else label
                out.append(Target(shown, node, name, ip, uuid, endpoint, interface=iface))
    return out


def targets(state: ClusterState, mode: str) -> tuple[PolicySet, list[Target], list[Target]]:
    policy_set = policy_set_of(state)
    nets = calico_networks(state)
    destinations = pod_targets(state, policy_set, nets)
    sources = destinations if mode == "pod" else network_sources(state, nets)
    return policy_set, sources, destinations


def endpoint_story(target: Target) -> str:
    """Which endpoint of which pod a target is: interface, address, profiles, and for a
    source the address its probe leaves from."""
    ep = target.endpoint
    where = f"interface {target.interface or '?'} of pod {str(target.pod)[:8]} on {target.node}"
    if ep is None:
        return f"{where}, {target.address} on {target.network}: no endpoint in the datastore"
    profiles = ", ".join(ep.spec.profiles) or "none"
    return (
        f"{where}: endpoint {ep.metadata.name}, {target.address} on {target.network}, "
        f"profiles {profiles}"
    )


def empty_reason(state: ClusterState, matrix: Matrix | None, *, again: str) -> str:
    """What to do when there is nothing to show (empty string: there is a matrix); `again`
    is the key that builds the matrix again."""
    if matrix is not None and matrix.sources and matrix.destinations:
        return ""
    if not state.nodes:
        return (
            "No nodes yet. The matrix probes through each node's agent: start a lab with "
            f"`calico-lab up`, or wait for the agents to answer, then press {again}."
        )
    if not any(info.reachable for info in state.nodes.values()):
        return (
            f"No node agent answers (see :nodes). Start the lab or the agents, then press {again}."
        )
    if not calico_networks(state):
        return (
            "No calico network in any node's /etc/rkt/net.d yet. Create network1 and network2 "
            f"(:tutorial step 2, or `calico-lab tutorial --step networks`), then press {again}."
        )
    return (
        "No running pod has an address on a calico network, so there is nothing to probe. "
        "Start one, e.g. `calico-lab exec calico-01 -- rkt run --net=network1 docker://busybox "
        f"--exec httpd -- -f -h / &` (or :tutorial step 3), then press {again}."
    )


def cell_text(cell: Cell, *, pending: bool) -> Text:
    """` e o ` with each mark coloured; a wrong cell on red. With staged changes three
    marks, ` e s o ` (now, after the staged changes, observed), a flipping `s` on magenta."""
    observed = "…" if pending else cell.observed
    if cell.staged:
        text = Text(" ")
        now_style = "bold white on red" if cell.wrong else MARK_STYLE[cell.expected]
        text.append(cell.expected, style=now_style)
        text.append(" ")
        text.append(cell.staged, style=FLIP_STYLE if cell.flips else MARK_STYLE[cell.staged])
        text.append(" ")
        text.append(
            observed, style="bold white on red" if cell.wrong else MARK_STYLE.get(observed, "dim")
        )
        text.append(" ")
        return text
    if cell.wrong:
        return Text(f" {cell.expected} {observed} ", style="bold white on red")
    text = Text(" ")
    text.append(cell.expected, style=MARK_STYLE[cell.expected])
    text.append(" ")
    text.append(observed, style="dim" if pending else MARK_STYLE.get(observed, "dim"))
    text.append(" ")
    return text


def legend(staged: bool = False) -> Text:
    """The key under the grid: what a cell's letters are, then the marks both views share,
    then the staged view's (flips, wrong now) or the live view's (probing, wrong)."""
    columns = ("now", "after", "observed") if staged else ("expected", "observed")
    parts: list[str | tuple[str, str]] = [" cell = "]
    for i, column in enumerate(columns):
        parts += [" "] if i else []
        parts.append((column, "bold"))
    parts += [
        "   ",
        (".", MARK_STYLE[ALLOWED]),
        " allowed   ",
        ("X", MARK_STYLE[DENIED]),
        " denied   ",
        ("?", "dim"),
        " unknown   ",
    ]
    if staged:
        parts += [("X", FLIP_STYLE), " would flip   ", ("X", "bold white on red"), " wrong now"]
    else:
        parts += [("…", "dim"), " probing   ", (" X . ", "bold white on red"), " wrong"]
    return Text.assemble(*parts)


class MatrixScreen(ConsoleScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [
        Binding("r", "probe", "probe again", tooltip="build the matrix again and probe every cell"),
        Binding("m", "toggle_mode", "by pod/network",
                tooltip="toggle sources: a fresh pod per network × node, or the pods themselves"),
        Binding("p", "port", "port", tooltip="choose the destination port (default 80)"),
        Binding("w", "why", "why?", tooltip="why? the policies and profiles behind the selected cell"),
        Binding("c", "reproduce", "command", tooltip="the command that reproduces the selected cell"),
        Binding("n", "next_wrong", "next wrong", tooltip="jump to the next wrong cell"),
        Binding("f", "next_flip", "next flip", show=False,
                tooltip="what-if: jump to the next cell the staged changes would flip"),
        *changing(Binding("a", "apply_staged", "apply staged", show=False,
                tooltip="what-if: write the staged changes (all or nothing; a conflict writes nothing)")),
        Binding("x", "discard_staged", "discard staged", show=False, tooltip="what-if: drop the staged changes"),
        Binding("question_mark", "help", "help", key_display="?", tooltip="this help"),
        Binding("escape", "back", "back"),
    ]  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.mode = "network"
        self.port = 80
        self.matrix: Matrix | None = None
        self.generation = 0
        self.pending: set[tuple[int, int]] = set()
        self.started = 0.0
        self.elapsed: float | None = None
        self.policy_print: tuple = ()
        self.pods_print: tuple = ()
        self.stale = ""  # why the observed column may be out of date
        self.building = False
        self.staged_text = ""  # what the staging writes, or why it cannot be shown
        self.staging_print: tuple = ()

    def hidden_actions(self) -> Collection[str]:
        """Left out of help and the palette: the what-if keys while nothing is staged (in
        the footer they stay, and say "nothing staged" when pressed)."""
        if self.console.staging:
            return ("apply_staged",) if self.console.read_only else ()
        return ("next_flip", "apply_staged", "discard_staged")

    @property
    def staging(self) -> Staging:
        return self.console.staging

    # ------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="matrix-title")
        yield Static(id="matrix-whatif")
        yield Static(legend(), id="matrix-legend")
        yield LabelledDataTable(id="matrix-table", cursor_type="cell", header_height=3)
        yield Static(id="matrix-empty")
        yield Static(id="matrix-detail")
        yield Input(placeholder="port to probe (1-65535), enter to run", id="matrix-port")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#matrix-port", Input).display = False
        if self.matrix is None:
            self.action_probe()
        else:
            self.show_matrix(self.generation, self.matrix, probe=False)

    # ------------------------------------------------------------ building and probing
    def action_probe(self) -> None:
        self.generation += 1
        self.building = True
        self.stale = ""
        self.policy_print = self._policy_print()
        self.pods_print = self._pods_print()
        self.update_title()
        self.build_matrix(self.generation, self.console.state, self.mode, self.port)

    @work(thread=True, exclusive=True, group="matrix-build", exit_on_error=False)
    def build_matrix(self, generation: int, state: ClusterState, mode: str, port: int) -> None:
        policy_set, sources, destinations = targets(state, mode)
        matrix = build(policy_set, sources, destinations, port)
        self.staged_text = self._stage_into(matrix, state)
        self.app.call_from_thread(self.show_matrix, generation, matrix)

    def _stage_into(self, matrix: Matrix, state: ClusterState) -> str:
        """Fill the staged marks (or clear them); returns the title's what-if text."""
        self.staging_print = tuple(id(c) for c in self.staging.changes)
        if not self.staging:
            clear_staged(matrix)
            return ""
        try:
            staged, after = self.staging.after(state)
        except StageError as exc:
            clear_staged(matrix)
            return f"the staged changes no longer apply: {exc} (x discards them)"
        stage_into(matrix, after)
        return summary(staged)

    def show_matrix(self, generation: int, matrix: Matrix, *, probe: bool = True) -> None:
        if generation != self.generation:
            return
        self.building = False
        self.matrix = matrix
        self.query_one("#matrix-legend", Static).update(legend(matrix.staged))
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for j, dst in enumerate(matrix.destinations):
            header = Text.assemble(
                (dst.label, "bold"), "\n", (f"{dst.network}@{dst.node}", "cyan"), "\n", dst.address
            )
            table.add_column(header, key=f"c{j}")
        if probe:
            self.pending = {key for key, cell in matrix.cells.items() if cell.destination.address}
        for i, src in enumerate(matrix.sources):
            label = Text(src.label, style="bold")
            if src.pod:
                label.append(f" {src.network}@{src.node}", style="cyan")
            table.add_row(
                *[
                    cell_text(matrix.cell(i, j), pending=(i, j) in self.pending)
                    for j in range(len(matrix.destinations))
                ],
                key=f"r{i}",
                label=label,
            )
        reason = empty_reason(self.console.state, matrix, again=bound_key(self, "probe"))
        empty = self.query_one("#matrix-empty", Static)
        empty.update(reason)
        empty.display = bool(reason)
        table.display = not reason
        if probe and self.pending:
            self.start_probes(generation, matrix)
        elif probe:
            self.elapsed = 0.0
        self.update_title()
        self.update_detail()
        if not reason:
            table.focus()

    def start_probes(self, generation: int, matrix: Matrix) -> None:
        urls = self.console.node_api_urls()
        by_node: dict[str, list[tuple[tuple[int, int], dict[str, Any]]]] = defaultdict(list)
        for key, req in matrix.probe_requests():
            if key not in self.pending:
                continue
            node = req.pop("node")
            req = {k: v for k, v in req.items() if v is not None}
            by_node[node].append((key, {**req, "timeout": PROBE_TIMEOUT}))
        self.started = time.monotonic()
        self.elapsed = None
        for node, items in by_node.items():
            self.probe_node(generation, node, urls.get(node, ""), items)

    @work(thread=True, group="matrix-probe", exit_on_error=False)
    def probe_node(
        self,
        generation: int,
        node: str,
        url: str,
        items: list[tuple[tuple[int, int], dict[str, Any]]],
    ) -> None:
        """One `probes` batch for every cell whose source is on `node` (run concurrently by
        the agent); the answers come back to the UI as one update."""
        keys = [key for key, _ in items]
        try:
            if not url:
                raise NodeAPIError(f"node {node} publishes no API address")
            with NodeClient(url, timeout=10.0) as client:
                results = client.probes([req for _, req in items], timeout=PROBE_TIMEOUT)
        except NodeAPIError as exc:
            results = [{"result": "error", "error": f"{node}: {exc}"} for _ in keys]
        self.app.call_from_thread(self.record_results, generation, keys, results)

    def record_results(
        self, generation: int, keys: list[tuple[int, int]], results: list[dict[str, Any]]
    ) -> None:
        if generation != self.generation or self.matrix is None:
            return
        table = self.query_one(DataTable)
        for key, result in zip(keys, results, strict=False):
            self.matrix.record(key, result)
            self.pending.discard(key)
            i, j = key
            try:
                table.update_cell(
                    f"r{i}", f"c{j}", cell_text(self.matrix.cell(i, j), pending=False)
                )
            except Exception:  # the table was rebuilt meanwhile
                pass
        if not self.pending:
            self.elapsed = time.monotonic() - self.started
        self.update_title()
        self.update_detail()

    @property
    def done(self) -> bool:
        """Every cell of the current matrix has its probe answer."""
        return self.matrix is not None and not self.building and not self.pending

    # ------------------------------------------------------------ watching the cluster
    def on_cluster_changed(self, event: ClusterChanged) -> None:
        if event.data:
            self.watch_cluster()

    def on_screen_resume(self) -> None:
        """Back on screen: catch up with what changed while another screen was on top."""
        if self.matrix is not None:
            self.watch_cluster()
            if tuple(id(c) for c in self.staging.changes) != self.staging_print:
                self.restage()

    def restage(self) -> None:
        """The staging changed (browse staged more, or `a`/`x`): new staged marks, same
        expected and observed ones."""
        if self.matrix is None:
            return
        self.staged_text = self._stage_into(self.matrix, self.console.state)
        self.redraw_cells()
        self.query_one("#matrix-legend", Static).update(legend(self.matrix.staged))
        self.update_title()
        self.update_detail()

    def redraw_cells(self) -> None:
        if self.matrix is None:
            return
        table = self.query_one(DataTable)
        for (i, j), cell in self.matrix.cells.items():
            try:
                table.update_cell(f"r{i}", f"c{j}", cell_text(cell, pending=(i, j) in self.pending))
            except Exception:  # the table was rebuilt meanwhile
                pass

    def _policy_print(self) -> tuple:
        return tuple(
            sorted(
                (key, res.metadata.resource_version or "")
                for key, res in self.console.state.resources.items()
                if isinstance(res, POLICY_KINDS)
            )
        )

    def _pods_print(self) -> tuple:
        state = self.console.state
        return (
            tuple(calico_networks(state)),
            tuple(
                (t.node, t.pod, t.address)
                for t in pod_targets(state, PolicySet(), calico_networks(state))
            ),
        )

    def watch_cluster(self) -> None:
        """On ClusterChanged from the app (no timer). Policy changed: re-evaluate the expected
        marks now (observed ones are kept, and marked stale). Pods changed: say so, or build
        at once if there was nothing yet."""
        if self.building:
            return
        pods = self._pods_print()
        if pods != self.pods_print:
            if self.matrix is None or not self.matrix.cells:
                self.action_probe()
                return
            self.pods_print = pods
            self.stale = f"pods changed: press {bound_key(self, 'probe')} to rebuild"
            self.update_title()
        policy = self._policy_print()
        if policy != self.policy_print and self.matrix is not None:
            self.policy_print = policy
            self.reevaluate()

    def reevaluate(self) -> None:
        old = self.matrix
        if old is None:
            return
        fresh = build(policy_set_of(self.console.state), old.sources, old.destinations, old.port)
        self.staged_text = self._stage_into(fresh, self.console.state)
        changed = 0
        for key, cell in fresh.cells.items():
            before = old.cells[key]
            cell.observed, cell.detail = before.observed, before.detail
            changed += cell.expected != before.expected
        self.matrix = fresh
        self.redraw_cells()
        if changed:  # a change that moves no expected mark (e.g. a probe's pod creating its
            # network's profile) leaves every observed mark as good as it was
            again = bound_key(self, "probe")
            self.stale = (
                f"policy changed ({changed} expected cells moved): press {again} to probe again"
            )
        self.update_title()
        self.update_detail()

    # ------------------------------------------------------------ text around the table
    def update_title(self) -> None:
        by = "by pod" if self.mode == "pod" else "by network"
        text = Text.assemble((" Isolation matrix", "bold"), f"  {by} · TCP/{self.port} · ")
        m = self.matrix
        if self.building or m is None:
            text.append("building…", style="yellow")
        else:
            summary = m.summary()
            if not self.pending:  # nothing in flight: what is left is unknown, not pending
                summary = summary.replace(" pending", " unknown")
            wrong = sum(1 for c in m.cells.values() if c.wrong)
            text.append(summary, style="bold red" if wrong else "bold green")
            text.append(
                f" · {len(m.sources)} sources × {len(m.destinations)} destinations", style="dim"
            )
            if self.pending:
                text.append(f" · probing {len(self.pending)}…", style="yellow")
            elif self.elapsed is not None and m.cells:
                text.append(f" · probed in {self.elapsed:.1f} s", style="dim")
        if self.stale:
            text.append(f"  ⚠ {self.stale}", style="yellow")
        self.query_one("#matrix-title", Static).update(text)
        whatif = self.query_one("#matrix-whatif", Static)
        whatif.display = bool(self.staging)
        if self.staging and m is not None and not self.building:
            flips = len(m.flips())
            line = Text.assemble((" what-if ", "bold black on magenta"), " staged: ")
            line.append(self.staged_text, style="magenta")
            if m.staged:
                line.append(f" · {flips} cell{'s' * (flips != 1)} would flip", style="bold")
            keys = [bound_key(self, a) for a in ("apply_staged", "discard_staged", "next_flip")]
            line.append(f" · {keys[0]} apply, {keys[1]} discard, {keys[2]} next flip", style="dim")
            whatif.update(line)

    def current(self) -> Cell | None:
        if self.matrix is None or not self.matrix.cells:
            return None
        row, col = self.query_one(DataTable).cursor_coordinate
        return self.matrix.cells.get((row, col))

    def update_detail(self) -> None:
        cell = self.current()
        detail = self.query_one("#matrix-detail", Static)
        if cell is None:
            detail.update("")
            return
        src, dst = cell.source, cell.destination
        text = Text.assemble(
            (src.label, "bold"),
            (" → ", "dim"),
            (dst.label, "bold"),
            f" ({dst.address}:{self.port}/TCP)\n",
            "expected ",
            (WORDS[cell.expected], MARK_STYLE[cell.expected]),
        )
        if cell.verdict is not None and cell.verdict.decision is not None:
            text.append(f" by {cell.verdict.decision}", style="dim")
        elif cell.note:
            text.append(" (same pod: no policy applies)", style="dim")
        if cell.staged:
            text.append("\nafter the staged changes ")
            text.append(
                WORDS[cell.staged], style=FLIP_STYLE if cell.flips else MARK_STYLE[cell.staged]
            )
            verdict = cell.staged_verdict
            if verdict is not None and verdict.decision is not None:
                text.append(f" by {verdict.decision}", style="dim")
            if cell.flips:
                text.append("   FLIPS", style="bold magenta")
        text.append("\nobserved ")
        if self._key(cell) in self.pending:
            text.append("probing…", style="yellow")
        else:
            text.append(WORDS[cell.observed], style=MARK_STYLE[cell.observed])
            if cell.detail:
                text.append(f" ({cell.detail})", style="dim")
        why, command = bound_key(self, "why"), bound_key(self, "reproduce")
        if cell.wrong:
            text.append(f"   WRONG: {command} shows the command to reproduce it", style="bold red")
        text.append(f"\n{why}: why?   {command}: command to reproduce", style="dim")
        detail.update(text)

    def _key(self, cell: Cell) -> tuple[int, int] | None:
        if self.matrix is None:
            return None
        for key, c in self.matrix.cells.items():
            if c is cell:
                return key
        return None

    def on_data_table_cell_highlighted(self, event: DataTable.CellHighlighted) -> None:
        self.update_detail()

    # ------------------------------------------------------------ actions
    def action_toggle_mode(self) -> None:
        self.mode = "pod" if self.mode == "network" else "network"
        self.notify(f"matrix by {self.mode}")
        self.action_probe()

    def action_port(self) -> None:
        box = self.query_one("#matrix-port", Input)
        box.display = True
        box.value = str(self.port)
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#matrix-port", Input)
        value = event.value.strip().split("/")[0]
        if not value.isdigit() or not 0 < int(value) < 65536:
            self.notify(f"port {event.value!r}: use a number 1-65535", severity="error")
            return
        box.display = False
        self.port = int(value)
        self.query_one(DataTable).focus()
        self.action_probe()

    def action_back(self) -> None:
        box = self.query_one("#matrix-port", Input)
        if box.display:
            box.display = False
            self.query_one(DataTable).focus()
            return
        self.app.pop_screen()

    def action_why(self) -> None:
        cell = self.current()
        if cell is None:
            self.notify("no cell selected", severity="warning")
            return
        src, dst = cell.source, cell.destination
        observed = (
            "probing…"
            if self._key(cell) in self.pending
            else f"{WORDS[cell.observed]}" + (f" ({cell.detail})" if cell.detail else "")
        )
        sections = [
            ("Observed by the probe", observed),
            ("Reproduce it by hand", cell.reproduce(self.port, int(PROBE_TIMEOUT + 0.5))),
        ]
        if src.pod is None:
            sections.insert(
                0,
                (
                    "Source",
                    f"a fresh pod on {src.network} on {src.node}: an endpoint with only the "
                    f"profile {src.network}",
                ),
            )
        else:
            sections.insert(0, ("Source", endpoint_story(src)))
        if self.matrix is not None and sum(d.pod == dst.pod for d in self.matrix.destinations) > 1:
            sections.insert(1, ("Destination", endpoint_story(dst)))  # which interface
        title = f"{src.label} → {dst.label} ({dst.address}:{self.port}/TCP)"
        after = None
        if cell.staged:
            change = "would flip" if cell.flips else "stays"
            after = (
                f"After the staged changes ({self.staged_text}): {change}",
                cell.staged_verdict,
            )
        self.app.push_screen(
            WhyScreen(title, cell.verdict, sections, no_verdict=cell.note, after=after)
        )

    def action_reproduce(self) -> None:
        cell = self.current()
        if cell is None:
            self.notify("no cell selected", severity="warning")
            return
        command = cell.reproduce(self.port, int(PROBE_TIMEOUT + 0.5))
        state = (
            "WRONG"
            if cell.wrong
            else "correct"
            if UNKNOWN not in (cell.expected, cell.observed)
            else "not judged yet"
        )
        body = (
            f"{cell.source.label} → {cell.destination.label}: expected "
            f"{WORDS[cell.expected]}, observed {WORDS[cell.observed]} ({state})\n\n"
            f"  $ {command}\n\n"
            "A download means allowed; 'download timed out' means denied. "
            "(The command was also copied to the clipboard.)"
        )
        try:
            self.app.copy_to_clipboard(command)
        except Exception:
            pass
        self.app.push_screen(TextScreen("Reproduce this cell", body))

    def action_next_wrong(self) -> None:
        if self.matrix is None:
            return
        wrong = sorted(key for key, c in self.matrix.cells.items() if c.wrong)
        if not wrong:
            self.notify("no wrong cells")
            return
        table = self.query_one(DataTable)
        here = tuple(table.cursor_coordinate)
        after = [k for k in wrong if k > here]
        i, j = (after or wrong)[0]
        table.move_cursor(row=i, column=j)

    def action_next_flip(self) -> None:
        if self.matrix is None:
            return
        flips = self.matrix.flips()
        if not flips:
            self.notify("no cell would flip" if self.staging else "nothing staged")
            return
        table = self.query_one(DataTable)
        here = tuple(table.cursor_coordinate)
        i, j = ([k for k in flips if k > here] or flips)[0]
        table.move_cursor(row=i, column=j)

    def action_discard_staged(self) -> None:
        if not self.staging:
            self.notify("nothing staged")
            return
        count = len(self.staging.changes)
        self.staging.clear()
        self.notify(f"discarded {count} staged change{'s' * (count != 1)}; nothing was written")
        self.restage()

    def action_apply_staged(self) -> None:
        if self.console.read_only:
            self.notify("read-only: applying is off", severity="warning")
            return
        if not self.staging:
            self.notify("nothing staged")
            return
        try:
            staged = self.staging.staged(self.console.state)
        except StageError as exc:
            self._not_applied(str(exc))
            return
        self.commit_staged(staged, list(self.staging.changes))

    @work(thread=True, group="write", exit_on_error=False)
    def commit_staged(self, staged: Any, changes: list[Any]) -> None:
        """One etcd transaction, compare-and-swap on every staged key (calico/whatif_store)."""
        try:
            done = commit(self.console.datastore(), staged)
        except (StageError, DatastoreError) as exc:
            self.app.call_from_thread(self._not_applied, str(exc))
            return
        self.app.call_from_thread(self._committed, done, changes)

    def _not_applied(self, message: str) -> None:
        """The staging stays as it was, so it can be looked at again or discarded."""
        self.console.last_error = f"not applied, nothing written: {message}"
        self.notify(self.console.last_error, severity="error", timeout=8)

    def _committed(self, done: list[str], changes: list[Any]) -> None:
        for change in changes:  # what was applied; anything staged meanwhile stays
            if change in self.staging.changes:
                self.staging.changes.remove(change)
        self.stale = f"applied ({', '.join(done)}): press {bound_key(self, 'probe')} to probe again"
        self.notify(f"applied: {', '.join(done)}")
        self.restage()

    def action_help(self) -> None:
        self.app.push_screen(help_screen("Isolation matrix", self, hidden=self.hidden_actions()))
