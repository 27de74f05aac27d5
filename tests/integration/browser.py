"""A real browser on the web console: Debian's chromium, headless, driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium. xterm.js draws
the console on a canvas, so the page has no text to read; what the browser was sent over
the websocket is the terminal stream itself, and `BrowserTab` replays every frame the page
received into pyte (a terminal emulator) to read the screen the browser shows, with the
time each frame arrived (the benchmark's clock).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyte

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]


def chromium_missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"needs {CHROMIUM} (Debian's chromium; scripts/setup.sh installs it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "needs the playwright package (pip install -e '.[test]')"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class BrowserTab:
    """One page on the console, and the screen it was sent."""

    def __init__(self, page) -> None:
        self.page = page
        self.screen: pyte.Screen | None = None
        self.stream: pyte.ByteStream | None = None
        self.frames: list[float] = []  # perf_counter() of every data frame received
        self.on_frame: list[Callable[[BrowserTab], None]] = []  # called after each one
        self.requests: list[str] = []  # every URL the page asked for
        page.on("websocket", self._watch)
        page.on("request", lambda r: self.requests.append(r.url))

    def _watch(self, ws) -> None:
        query = parse_qs(urlparse(ws.url).query)
        width = int(query.get("width", ["80"])[0])
        height = int(query.get("height", ["24"])[0])
        self.screen = pyte.Screen(width, height)
        self.stream = pyte.ByteStream(self.screen)
        ws.on("framereceived", self._frame)
        ws.on("framesent", self._sent)

    def _sent(self, payload: str | bytes) -> None:
        """The page tells the console its size after fitting the window: follow it."""
        if isinstance(payload, str) and payload.startswith('["resize"'):
            size = json.loads(payload)[1]
            assert self.screen is not None
            self.screen.resize(lines=int(size["height"]), columns=int(size["width"]))

    def _frame(self, payload: str | bytes) -> None:
        if isinstance(payload, str):  # textual-serve's JSON (pong, open_url): not output
            return
        self.frames.append(time.perf_counter())
        assert self.stream is not None
        self.stream.feed(payload)
        for hook in self.on_frame:
            hook(self)

    def text(self) -> str:
        return "\n".join(self.screen.display) if self.screen else ""

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30.0, what="") -> str:
        """Pump the browser's events until the screen satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}:\n{text}")
            self.page.wait_for_timeout(20)

    def wait_for_text(self, *needles: str, timeout: float = 30.0) -> str:
        return self.wait_for(
            lambda t: all(n in t for n in needles), timeout, what=" and ".join(map(repr, needles))
        )

    def press(self, *keys: str) -> None:
        for key in keys:
            self.page.keyboard.press(key)

    def command(self, line: str) -> None:
        """`:` then a view's name and Enter, typed as a person does: the command line takes
        the focus when `:` opens it, so the name waits for it to be there."""
        self.press("Shift+Semicolon")
        self.wait_for(lambda t: "view: nodes" in t, what="the command line (its placeholder)")
        self.page.keyboard.type(line, delay=20)
        self.press("Enter")


@contextmanager
def browser() -> Iterator[object]:
    """A headless chromium (the system's); closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: the tests run as root, where chromium refuses its sandbox
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def open_tab(b, url: str, size=(1400, 900), *, init_script: str = "", on_frame=()) -> BrowserTab:
    page = b.new_page(viewport={"width": size[0], "height": size[1]})
    if init_script:
        page.add_init_script(init_script)
    tab = BrowserTab(page)
    tab.on_frame.extend(on_frame)
    page.goto(url)
    page.wait_for_selector("body.-first-byte", timeout=30_000)
    page.click(".textual-terminal")  # the keyboard goes to xterm's input, as a person's would
    return tab


@contextmanager
def web_console(
    endpoints: str, cluster: str, *extra: str, prefix: list[str] | None = None, log: Path
) -> Iterator[tuple[subprocess.Popen, int]]:
    """`calico-console --web` as a person starts it, on a port of its own, its output in
    `log`; stopped (by its pid, its sessions with it) on exit. `prefix` runs it under e.g.
    `ip netns exec NS`."""
    port = free_port()
    console = shutil.which("calico-console", path=str(Path(sys.executable).parent))
    cmd = [*(prefix or []), console or "calico-console", "--web", "--port", str(port)]
    cmd += ["--etcd-endpoints", endpoints, "--cluster-name", cluster, *extra]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while "serving" not in log.read_text():  # its first line says where it serves
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"calico-console --web did not start:\n{log.read_text()}")
            time.sleep(0.05)
        # aiohttp binds just after on_startup prints; from another namespace, allow for it
        if prefix:
            time.sleep(1.0)
        else:
            wait_listening(port)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children(pid: int) -> set[int]:
    """The processes `pid` started (its sessions), read from /proc."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return out
