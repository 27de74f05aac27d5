#!/usr/bin/env python3
"""Take an SVG screenshot of every console view from a real lab (run as root):

    sudo .venv/bin/python scripts/screenshots.py [--out screenshots]

Brings up its own lab (name `shots`), opens the console headless on it, runs the
walkthrough from `:tutorial` (one SVG per step), starts a web server in each network, saves
one SVG per view plus the matrix's why? panel, the flows (as they come, and grouped), an
endpoint's dataplane and its policies (enter), a pod's log (l), and a staged label edit on
the matrix (what-if), and takes the lab down again, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.app import CalicoConsole  # noqa: E402
from console.model import VIEWS  # noqa: E402
from lab.cluster import Lab  # noqa: E402

SIZE = (130, 36)


async def shoot(lab: Lab, out: Path, prepare) -> list[Path]:
    saved = []
    app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name, lab_name=lab.name)
    async with app.run_test(size=SIZE) as pilot:

        async def settle(predicate, timeout=20.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not predicate():
                await pilot.pause(0.1)

        def save(name: str) -> None:
            path = out / f"{name}.svg"
            path.write_text(app.export_screenshot(title=f"calico-console {name}"))
            saved.append(path)

        await settle(
            lambda: len([r for r in app.browse.current_rows() if r.cells[2] == "ready"]) == 2
        )

        # The walkthrough, run from the console against the fresh lab: one shot per step.
        app.switch_view("tutorial")
        await pilot.pause(0.3)
        tutorial = app.screen
        await pilot.press("a")
        steps = tutorial.tutorial.steps
        await settle(
            lambda: (
                all(s.result is not None for s in steps)
                or any(s.result is not None and not s.result.ok for s in steps)
            ),
            timeout=120,
        )
        for i, step in enumerate(steps):
            tutorial.query_one("ListView").index = i
            tutorial.show_detail(i)
            await pilot.pause(0.2)
            save(f"tutorial-{i + 1}-{step.key}")
        app.pop_screen()

        prepare()  # a web server in each network for the views below
        for name in VIEWS:
            app.switch_view(name)
            await settle(lambda: bool(app.browse.current_rows()), timeout=5)
            await pilot.pause(0.3)
            save(name)

        app.switch_view("matrix")
        matrix = app.screen
        await settle(
            lambda: getattr(matrix, "matrix", None) is not None and not matrix.pending, timeout=30
        )
        await pilot.pause(0.5)
        save("matrix")
        await pilot.press("down", "down", "w")  # network2 -> the network1 server: denied
        await pilot.pause(0.5)
        save("why")
        await pilot.press("escape")
        await pilot.press("escape")
        app.switch_view("flows")
        await pilot.pause(3)
        save("flows")
        await pilot.press("a")  # the same flows grouped: source, destination, port, verdict
        await pilot.pause(0.5)
        save("flows-aggregated")
        app.pop_screen()
        # :dataplane of the network1 server's endpoint, its profile's allow rule selected
        app.switch_view("endpoints")
        await pilot.pause(0.3)
        rows = app.browse.current_rows()
        first = next(
            i for i, r in enumerate(rows) if r.resource and r.resource.spec.node == lab.nodes[0]
        )
        app.browse.query_one("#table").move_cursor(row=first)
        await pilot.press("D")
        dataplane = app.screen
        await settle(lambda: getattr(dataplane, "polls", 0) >= 1)
        dataplane.query_one("#dp-rules").move_to("cali-pri-network1#1")
        await pilot.pause(0.3)
        save("dataplane")
        app.pop_screen()

        # enter on that endpoint: its policies and profiles, in the order Calico asks them
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause(0.3)
        save("drill-policies")
        await pilot.press("escape")

        # l on the ticking pod: its output, followed
        app.switch_view("pods")
        await settle(lambda: any((r.data or {}).get("uuid") == prepare.ticker
                                 for r in app.browse.current_rows()))  # fmt: skip
        rows = app.browse.current_rows()
        ticker = next(
            (i for i, r in enumerate(rows) if (r.data or {}).get("uuid") == prepare.ticker), 0
        )
        app.browse.query_one("#table").move_cursor(row=ticker)
        await pilot.press("l")
        await pilot.pause(2.5)
        save("logs")
        app.pop_screen()

        # what-if: network2's profile would give its pods the label network1 (staged, not
        # written): :matrix marks the cells that would flip
        app.switch_view("profiles")
        await pilot.pause(0.3)
        rows = app.browse.current_rows()
        app.browse.query_one("#table").move_cursor(
            row=next(i for i, r in enumerate(rows) if r.cells[0] == "network2")
        )
        await pilot.press("l")
        await pilot.pause(0.3)
        await pilot.press(*"network1=", "enter")
        matrix = app.screen
        await settle(lambda: getattr(matrix, "matrix", None) is not None and not matrix.pending,
                     timeout=30)  # fmt: skip
        await pilot.pause(0.5)
        save("matrix-whatif")
        await pilot.press("x")  # discarded: nothing was written
        await pilot.pause(0.2)
    return saved


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lab = Lab("shots")
    try:
        lab.up()

        def prepare() -> None:
            for node, net in ((lab.nodes[0], "network1"), (lab.nodes[1], "network2")):
                lab.exec(node, ["rkt", "run", "--detach", f"--net={net}", "docker://busybox",
                                "--exec", "httpd", "--", "-f", "-h", "/"])  # fmt: skip
            ticking = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.5; done"
            proc = lab.exec(lab.nodes[0], ["rkt", "run", "--detach", "--net=network1",
                                           "docker://busybox", "--exec", "/bin/sh", "--", "-c",
                                           ticking])  # fmt: skip
            prepare.ticker = proc.stdout.strip().splitlines()[-1]  # type: ignore[attr-defined]

        for path in asyncio.run(shoot(lab, out, prepare)):
            print(path)
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
