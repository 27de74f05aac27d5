"""The console in a browser: page load to the nodes view, and a key press to the screen's
answer, over the websocket.

    .venv/bin/python bench/bench_web.py [--runs 20]      # root only for chromium's --no-sandbox

Starts its own etcd (loopback, temp dir) holding two Nodes, serves the console with
`calico-console --web` on loopback, and drives Debian's chromium headless (Playwright,
/usr/bin/chromium) at it. Times are taken inside the page (performance.now(), 0 = the
navigation's start) by a script that wraps the page's WebSocket before textual.js runs; the
screen is read by replaying the same frames into pyte (tests/integration/browser.py), so
"painted" means: the frame after which the nodes view shows both nodes has arrived (xterm.js
draws it on the next animation frame, ~16 ms at most).

- first paint: navigation start -> that frame, a fresh tab (so a fresh console process)
  per run. Reference, same run: the same console headless in this process (Textual's test
  driver) from app start to its nodes view showing both nodes: what the browser adds is
  the page, the process start and the websocket.
- key -> update: keydown (Down / Up, moving the table's cursor) -> the first data frame
  after it. Reference, same run: a websocket ping -> pong on the same socket (textual-serve
  answers it itself, no console involved): the transport's floor.
p50 of --runs each (>= 20).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calico.datastore import Datastore  # noqa: E402
from calico.resources import load  # noqa: E402
from lab.etcd import local_etcd  # noqa: E402
from tests.integration.browser import (  # noqa: E402
    browser,
    children,
    chromium_missing,
    open_tab,
    web_console,
)

NODES = ("calico-01", "calico-02")

# Runs in the page before its own scripts: keeps the socket, and stamps every binary
# (terminal) message, every pong and every keydown with performance.now().
TIMING = """
(() => {
  const Native = window.WebSocket;
  window.__data = []; window.__pongs = {}; window.__keys = []; window.__ws = null;
  function Timed(url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    window.__ws = ws;
    ws.addEventListener("open", () => { window.__open = performance.now(); });
    ws.addEventListener("message", (e) => {
      const t = performance.now();
      if (typeof e.data !== "string") { window.__data.push(t); return; }
      try { const m = JSON.parse(e.data); if (m[0] === "pong") window.__pongs[m[1]] = t; }
      catch (err) {}
    });
    return ws;
  }
  Timed.prototype = Native.prototype;
  Object.assign(Timed, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
  window.WebSocket = Timed;
  document.addEventListener("keydown", () => window.__keys.push(performance.now()), true);
})();
"""


def nodes_shown(text: str) -> bool:
    return "Nodes (2)" in text and all(n in text for n in NODES)


def node_doc(i: int, name: str) -> dict:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"bgp": {"ipv4Address": f"10.99.0.{i + 1}/24"}},
    }


def first_paint(b, url: str) -> tuple[float, float]:
    """One fresh tab: seconds from its navigation start to the frame completing the view,
    and to its websocket's open (the page and textual.js loaded, the console spawned)."""
    seen: list[int] = []

    def mark(tab) -> None:
        if not seen and nodes_shown(tab.text()):
            seen.append(len(tab.frames) - 1)  # index of the frame that completed it

    tab = open_tab(b, url, init_script=TIMING, on_frame=[mark])
    tab.wait_for(lambda t: bool(seen), timeout=30, what="the nodes view")
    took, opened = tab.page.evaluate(f"[window.__data[{seen[0]}], window.__open]")
    tab.page.close()
    return took / 1000, opened / 1000


def first_paints(b, url: str, runs: int, server_pid: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(runs):
        out.append(first_paint(b, url))
        deadline = time.monotonic() + 15
        while children(server_pid) and time.monotonic() < deadline:  # one session at a time
            time.sleep(0.05)
    return out


def key_updates(b, url: str, runs: int) -> tuple[list[float], list[float]]:
    tab = open_tab(b, url, init_script=TIMING)
    tab.wait_for(nodes_shown, timeout=30, what="the nodes view")
    tab.page.wait_for_timeout(500)  # let the first poll of the node agents settle
    keys, pings = [], []
    for i in range(runs):
        before = tab.page.evaluate("window.__data.length")
        tab.press("ArrowDown" if i % 2 == 0 else "ArrowUp")
        tab.page.wait_for_function(f"window.__data.length > {before}", timeout=10_000)
        tab.page.wait_for_timeout(100)  # the rest of the update, then quiet
        pressed, reply = tab.page.evaluate(
            "[window.__keys[window.__keys.length - 1],"
            " window.__data.find((t) => t >= window.__keys[window.__keys.length - 1])]"
        )
        keys.append((reply - pressed) / 1000)
        sent = tab.page.evaluate(
            f"(() => {{ const t = performance.now(); "
            f"window.__ws.send(JSON.stringify(['ping', 'b{i}'])); return t; }})()"
        )
        tab.page.wait_for_function(f"window.__pongs['b{i}'] !== undefined", timeout=10_000)
        pings.append((tab.page.evaluate(f"window.__pongs['b{i}']") - sent) / 1000)
    tab.page.close()
    return keys, pings


def import_times(runs: int = 5) -> list[float]:
    """A bare `python -c "import console.app"`: the part of a session's start that is
    Python's start and the console's imports, before any frame can be sent."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import console.app"], check=True)
        out.append(time.perf_counter() - t)
    return out


def headless_first_paints(endpoints: str, runs: int) -> list[float]:
    from console.app import CalicoConsole

    async def once() -> float:
        t0 = time.perf_counter()
        app = CalicoConsole(endpoints=endpoints, cluster_name="bench", read_only=True)
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.screen.query_one("#table")
            while table.row_count < 2:
                await pilot.pause(0.005)
            return time.perf_counter() - t0

    return [asyncio.run(once()) for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if args.runs < 20:
        parser.error("--runs: at least 20 (p50 of >= 20)")
    reason = chromium_missing()
    if reason:
        print(f"bench_web: {reason}", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="bench-web-"))
    etcd = local_etcd(base)
    etcd.start()
    try:
        ds = Datastore.connect(etcd.endpoints)
        for i, name in enumerate(NODES):
            ds.create(load(node_doc(i, name)))
        ds.close()
        with web_console(etcd.endpoints, "bench", log=base / "web.log") as (proc, port):
            url = f"http://127.0.0.1:{port}/"
            with browser() as b:
                open_tab(b, url).page.close()  # warm the OS caches once, not measured
                paints = first_paints(b, url, args.runs, proc.pid)
                keys, pings = key_updates(b, url, args.runs)
        headless = headless_first_paints(etcd.endpoints, args.runs)
        imports = import_times()
    finally:
        etcd.stop()
        shutil.rmtree(base, ignore_errors=True)

    def ms(xs: list[float]) -> float:
        return statistics.median(xs) * 1000

    fp, ref_fp, key, ping = ms([p for p, _ in paints]), ms(headless), ms(keys), ms(pings)
    opened, imported = ms([o for _, o in paints]), ms(imports)
    print(f"\n| measure (p50 of {args.runs}) | web console | reference | ratio |")
    print("|---|---:|---:|---:|")
    print(
        f"| page load -> nodes view painted | {fp:.0f} ms | headless console, in process: "
        f"{ref_fp:.0f} ms | {fp / ref_fp:.1f} |"
    )
    print(
        f"| key press -> screen update | {key:.1f} ms | websocket ping -> pong: {ping:.1f} ms "
        f"| {key / ping:.1f} |"
    )
    print(
        f"\n(of the first paint: websocket open at {opened:.0f} ms (page, textual.js, font);"
        f" a bare python -c 'import console.app' takes {imported:.0f} ms of what follows."
        f" Key: min {min(keys) * 1000:.1f} ms, max {max(keys) * 1000:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
