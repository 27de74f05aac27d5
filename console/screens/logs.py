"""`l` on a pod: its output, k9s style: follow, wrap, search, from the start or the last N.

The stream is the node API's `GET /v1/pods/{uuid}/logs?follow=1&tail=N`
(console/logstream.py, one thread); a 20 Hz timer moves what arrived onto the screen, so a
line the app writes is on screen within about 50 ms of reaching the console (the bench,
bench/bench_logs.py, measures the whole way: app → log file → agent → screen). What is
shown and searched is console/logview.py's LogModel (pure); this screen owns the keys and
draws the model.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Input, RichLog, Static

from console.logstream import LogFollower
from console.logview import CAPACITY, DEFAULT_TAIL, TAIL_KEYS, LogModel, compile_search
from console.screens.base import ConsoleScreen
from console.screens.help import help_screen
from console.widgets.key_footer import KeyFooter

DRAIN = 0.05  # seconds between moves from the stream's inbox to the screen
MATCH_STYLE = "black on yellow"
CURRENT_STYLE = "black on dark_orange"


class LogScreen(ConsoleScreen):
    DEFAULT_CSS = """
    LogScreen #log-header { height: 1; background: $panel; padding: 0 1; }
    LogScreen #log-body { height: 1fr; }
    LogScreen #log-search { dock: bottom; display: none; }
    """
    BINDINGS = [
        Binding("f", "toggle_follow", "follow", tooltip="follow: keep the newest line in view"),
        Binding("w", "toggle_wrap", "wrap", tooltip="wrap long lines"),
        Binding("slash", "search", "/search", key_display="/",
                tooltip="search (regex, case-insensitive); n / N: next / previous match"),
        Binding("n", "next_match", "next", show=False, tooltip="next match"),
        Binding("N", "previous_match", "previous", show=False, tooltip="previous match"),
        Binding("0", "tail('0')", "all", tooltip="from the start: the whole log"),
        Binding("1", "tail('1')", "last 100", tooltip="the last 100 lines, then follow"),
        Binding("2", "tail('2')", "last 1000", tooltip="the last 1000 lines, then follow"),
        Binding("question_mark", "help", "help", key_display="?", tooltip="this help"),
        Binding("escape,q", "back", "back", tooltip="close the search line, else back to pods"),
    ]  # fmt: skip

    def __init__(self, node: str, uuid: str, app: str, url: str, *, stream: bool = True) -> None:
        super().__init__()
        self.model = LogModel(node=node, uuid=uuid, app=app, tail=DEFAULT_TAIL)
        self.url = url
        self.stream = stream  # False: fed by feed() (snapshot tests), no node API
        self.follower: LogFollower | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="log-header")
        yield RichLog(id="log-body", max_lines=CAPACITY, wrap=False, markup=False,
                      highlight=False, auto_scroll=True)  # fmt: skip
        yield Input(placeholder="search (regex); enter: find, escape: close", id="log-search")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = self.model.title()
        self.show_header()
        self.query_one(RichLog).focus()
        self.set_interval(DRAIN, self.drain)
        if self.stream:
            self.start_stream()

    def on_unmount(self) -> None:
        self.stop_stream()

    # ------------------------------------------------------------ the stream
    def start_stream(self) -> None:
        self.stop_stream()
        self.follower = LogFollower(self.url, self.model.uuid, self.model.tail)
        self.run_follower(self.follower)

    @work(thread=True, group="log-follow", exit_on_error=False)
    def run_follower(self, follower: LogFollower) -> None:
        follower.run()

    def stop_stream(self) -> None:
        if self.follower is not None:
            self.follower.stop()
            self.follower = None

    def drain(self) -> None:
        if self.follower is None:
            return
        items = self.follower.take()
        if items:
            self.apply(items)

    def apply(self, items: list[dict]) -> None:
        """Records from the stream (or a test) onto the model and the screen."""
        new: list[str] = []
        for item in items:
            kind = item.get("type")
            if kind == "line":
                new.append(str(item.get("line", "")))
            elif kind == "end":
                self.model.end(item)
            elif kind == "connected":
                self.model.connected = True
            elif kind == "error":
                self.model.error = str(item.get("error", ""))
        if new:
            first = len(self.model.lines)
            self.model.add(new)
            log = self.query_one(RichLog)
            if first + len(new) > CAPACITY:
                self.redraw()
            else:
                for line in new:
                    log.write(self.styled(line), self.wrap_width(), scroll_end=self.model.follow)
        self.show_header()

    def feed(self, lines: list[str], end: dict | None = None) -> None:
        """Lines as if streamed (tests and screenshots without a node)."""
        self.apply([{"type": "connected"}, *({"type": "line", "line": x} for x in lines)]
                   + ([{"type": "end", **end}] if end else []))  # fmt: skip

    # ------------------------------------------------------------ drawing
    def styled(self, line: str, current: bool = False) -> Text:
        text = Text(line)
        pattern = compile_search(self.model.search)
        if pattern is not None:
            style = CURRENT_STYLE if current else MATCH_STYLE
            for m in pattern.finditer(line):
                if m.end() > m.start():
                    text.stylize(style, m.start(), m.end())
        return text

    def wrap_width(self) -> int | None:
        """Wrapped: the log's own width (RichLog would otherwise wrap at its min_width, 78
        columns). Not wrapped: None, each line as long as it is (scrolled sideways)."""
        width = self.query_one(RichLog).scrollable_content_region.width
        return width if self.model.wrap and width > 0 else None

    def redraw(self) -> None:
        log = self.query_one(RichLog)
        log.wrap = self.model.wrap
        log.auto_scroll = self.model.follow
        log.clear()
        for i, line in enumerate(self.model.lines):
            log.write(
                self.styled(line, i == self.model.current), self.wrap_width(), scroll_end=False
            )
        if self.model.follow:
            log.scroll_end(animate=False)
        elif self.model.current >= 0:
            log.scroll_to(y=max(0, self.model.current - 3), animate=False)

    def show_header(self) -> None:
        self.query_one("#log-header", Static).update(Text(self.model.header()))

    # ------------------------------------------------------------ keys
    def action_toggle_follow(self) -> None:
        self.model.follow = not self.model.follow
        log = self.query_one(RichLog)
        log.auto_scroll = self.model.follow
        if self.model.follow:
            log.scroll_end(animate=False)
        self.show_header()

    def action_toggle_wrap(self) -> None:
        self.model.wrap = not self.model.wrap
        self.redraw()
        self.show_header()

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.value = self.model.search
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#log-search", Input)
        box.display = False
        self.query_one(RichLog).focus()
        self.model.search = event.value
        self.model.current = -1
        if self.model.search and self.model.step(forward=False) is None:
            self.notify(f"no line matches {event.value!r}", severity="warning")
        self.redraw()
        self.show_header()

    def _step(self, forward: bool) -> None:
        if not self.model.search:
            self.notify("no search: press / first", severity="warning")
            return
        if self.model.step(forward) is None:
            self.notify(f"no line matches {self.model.search!r}", severity="warning")
        self.redraw()
        self.show_header()

    def action_next_match(self) -> None:
        self._step(True)

    def action_previous_match(self) -> None:
        self._step(False)

    def action_tail(self, key: str) -> None:
        self.model.restart(TAIL_KEYS[key])
        self.model.follow = True
        self.query_one(RichLog).clear()
        if self.stream:
            self.model.connected = False
            self.model.error = ""
            self.start_stream()
        self.show_header()

    def action_help(self) -> None:
        self.app.push_screen(help_screen(f"Keys in logs of {self.model.uuid[:8]}", self))

    def action_back(self) -> None:
        box = self.query_one("#log-search", Input)
        if box.display:
            box.display = False
            self.query_one(RichLog).focus()
            return
        self.app.pop_screen()
