"""`:tutorial [NAME]`: a guided walkthrough, one step at a time, against the live cluster.

The walkthroughs are calico.tutorial's data (the same `calico-lab tutorial NAME` runs); `t`
moves to the next one, and the heading says which of them is open."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Header, ListItem, ListView, Static

from calico.tutorial import TUTORIALS, Shell, Tutorial
from console.access import changing
from console.screens.base import ConsoleScreen
from console.widgets.key_footer import KeyFooter

MARKS = {None: ("○", "dim"), True: ("✔", "green"), False: ("✘", "red")}


class TutorialScreen(ConsoleScreen):
    BINDINGS = [
        *changing(Binding("enter,r", "run_step", "run step")),
        *changing(Binding("a", "run_all", "run all")),
        Binding("R", "reset", "reset"),
        Binding("t", "next_tutorial", "next tutorial"),
        Binding("escape", "app.pop_screen", "back"),
    ]

    def __init__(self, shell: Shell | None = None, tutorial: Tutorial | None = None) -> None:
        super().__init__()
        self.shell = shell  # None: the app's lab shell, asked for on mount
        self.tutorial = tutorial or Tutorial()
        self.running: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self._heading(), id="tutorial-title")
        with Horizontal():
            yield ListView(*self._items(), id="steps")
            with VerticalScroll(id="step-detail"):
                yield Static(id="detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        if self.shell is None:
            self.shell = self.console.lab_shell()
        self.query_one(ListView).index = 0
        self.show_detail(0)

    def _heading(self) -> Text:
        names = list(TUTORIALS)
        spec = self.tutorial.spec
        return Text.assemble(
            (f" {spec.title}", "bold"),
            (
                f"  ({names.index(spec.name) + 1}/{len(names)}: {spec.name}; t for the next)\n",
                "dim",
            ),
            f" {spec.summary}",
        )

    def _items(self) -> list[ListItem]:
        # ids carry the tutorial's name: the old items may linger while the new ones mount
        return [
            ListItem(Static(self._label(i)), id=f"step-{self.tutorial.name}-{i}")
            for i in range(len(self.tutorial.steps))
        ]

    def choose(self, name: str) -> None:
        """Open walkthrough `name` (its steps not yet run)."""
        if self.running is not None:
            self.notify("a step is running; wait for it", severity="warning")
            return
        nodes = self.tutorial.nodes
        self.tutorial = Tutorial.named(name, nodes)
        self.query_one("#tutorial-title", Static).update(self._heading())
        steps = self.query_one(ListView)
        steps.clear()
        steps.extend(self._items())
        steps.index = 0
        self.show_detail(0)

    def action_next_tutorial(self) -> None:
        names = list(TUTORIALS)
        self.choose(names[(names.index(self.tutorial.name) + 1) % len(names)])

    def _label(self, i: int) -> Text:
        step = self.tutorial.steps[i]
        ok = None if step.result is None else step.result.ok
        mark, style = ("…", "yellow") if self.running == i else MARKS[ok]
        return Text.assemble((f" {mark} ", style), f"{i + 1}. {step.title}")

    def refresh_labels(self) -> None:
        for i in range(len(self.tutorial.steps)):
            item = self.query_one(f"#step-{self.tutorial.name}-{i}", ListItem)
            item.query_one(Static).update(self._label(i))

    @property
    def index(self) -> int:
        return self.query_one(ListView).index or 0

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        self.show_detail(self.index)

    def show_detail(self, i: int) -> None:
        step = self.tutorial.steps[i]
        text = Text()
        text.append(f"{i + 1}. {step.title}\n\n", style="bold")
        text.append(step.why + "\n\n")
        text.append("Commands\n", style="bold underline")
        for cmd in step.commands:
            text.append(f"  $ {cmd}\n", style="cyan")
        text.append("\n")
        if self.running == i:
            text.append("running…\n", style="yellow")
        elif step.result is not None:
            verdict = ("PASS", "bold green") if step.result.ok else ("FAIL", "bold red")
            text.append(verdict[0], style=verdict[1])
            text.append(f"  ({step.result.seconds:.1f} s)\n\nWhat was seen\n", style="")
            text.append(step.result.seen + "\n", style="dim")
        elif self.console.read_only:
            text.append("Read-only: the steps can be read here, not run.", style="italic")
        else:
            text.append("Press enter to run this step against the live cluster.", style="italic")
        self.query_one("#detail", Static).update(text)

    def action_run_step(self) -> None:
        if self.running is None:
            self.run_steps([self.index])

    def action_run_all(self) -> None:
        if self.running is None:
            self.run_steps(list(range(len(self.tutorial.steps))))

    def action_reset(self) -> None:
        if self.running is None:
            self.tutorial.reset()
            self.refresh_labels()
            self.show_detail(self.index)

    @work(thread=True, exclusive=True, group="tutorial")
    def run_steps(self, indexes: list[int]) -> None:
        for i in indexes:
            self.running = i
            self.app.call_from_thread(self._progress, i)
            assert self.shell is not None  # set on mount
            result = self.tutorial.run_step(i, self.shell)
            self.running = None
            self.app.call_from_thread(self._progress, i)
            if not result.ok:
                break

    def _progress(self, i: int) -> None:
        self.refresh_labels()
        self.query_one(ListView).index = i
        self.show_detail(i)
