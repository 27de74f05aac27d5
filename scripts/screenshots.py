#!/usr/bin/env python3
"""Take an SVG screenshot of every console view from a real lab (run as root):

    sudo .venv/bin/python scripts/screenshots.py [--out screenshots]

Brings up its own lab (name `shots`), plays the walkthrough up to the web server, adds a
pod on network2, opens the console headless on it, saves one SVG per view, and takes the
lab down again, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calico.tutorial import Tutorial  # noqa: E402
from console.app import CalicoConsole  # noqa: E402
from console.model import VIEWS  # noqa: E402
from lab.cluster import Lab  # noqa: E402

SIZE = (130, 36)


def lab_shell(lab: Lab):
    import os
    import subprocess

    def shell(node, argv, input=None, timeout=30.0):
        if node is None:
            proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, **lab.root_env()})  # fmt: skip
        else:
            proc = lab.exec(node, argv, input=input, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr

    return shell


async def shoot(lab: Lab, out: Path) -> list[Path]:
    saved = []
    app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name, lab_name=lab.name)
    async with app.run_test(size=SIZE) as pilot:

        async def settle(predicate, timeout=20.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not predicate():
                await pilot.pause(0.1)

        def save(name: str) -> None:
            path = out / f"{name}.svg"
            path.write_text(app.export_screenshot(title=f"calico-console :{name}"))
            saved.append(path)

        await settle(lambda: len([r for r in app.current_rows() if r.cells[2] == "ready"]) == 2)
        for name in VIEWS:
            app.switch_view(name)
            await settle(lambda: bool(app.current_rows()), timeout=5)
            save(name)
        for name in ("matrix", "flows"):
            app.switch_view(name)
            screen = app.screen
            done = getattr(screen, "screenshot_ready", None)
            await settle(done if callable(done) else (lambda: False), timeout=15)
            save(name)
            app.pop_screen()
        app.switch_view("tutorial")
        await pilot.pause(0.5)
        save("tutorial")
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
        tut = Tutorial(nodes=tuple(lab.nodes[:2]))
        shell = lab_shell(lab)
        for key in ("networks", "httpd"):
            result = tut.run_step([s.key for s in tut.steps].index(key), shell)
            if not result.ok:
                print(
                    f"screenshots: walkthrough step {key} failed:\n{result.seen}", file=sys.stderr
                )
                return 1
        lab.exec(lab.nodes[1], ["rkt", "run", "--detach", "--net=network2", "docker://busybox",
                                "--exec", "httpd", "--", "-f", "-h", "/"])  # fmt: skip
        for path in asyncio.run(shoot(lab, out)):
            print(path)
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
