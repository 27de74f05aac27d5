"""Snapshot tests of the log screen (`l` on a pod) with fixed lines, no node API.

Update after an intended change: pytest tests/unit/console --snapshot-update
"""

from console.app import CalicoConsole
from console.screens.logs import LogScreen

from .fixtures import seed_state

SIZE = (100, 24)
HTTPD = [f"192.168.0.{i % 7 + 2}:4{i:04d} GET /etc/passwd HTTP/1.1 200" for i in range(12)] + [
    "httpd: error: /etc/shadow: Permission denied",
    "a very long line: " + "0123456789 " * 14 + "end",
    "192.168.0.3:40999 GET /index.html HTTP/1.1 404",
]


def app():
    return CalicoConsole(
        endpoints="http://127.0.0.1:1", cluster_name="calilab", follow=False, state=seed_state()
    )


async def open_logs(pilot, end=None):
    screen = LogScreen("calico-01", "6876aae5-0000", "busybox", "", stream=False)
    await pilot.app.push_screen(screen)
    await pilot.pause()
    screen.feed(HTTPD, end)
    await pilot.pause()
    return screen


def test_logs_following(snap_compare):
    async def go(pilot):
        await open_logs(pilot)

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)


def test_logs_searched_and_wrapped_after_the_pod_ended(snap_compare):
    async def go(pilot):
        await open_logs(pilot, end={"state": "exited", "exit_code": 137})
        await pilot.press("w", "slash", *"error|404", "enter")
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, run_before=go)
