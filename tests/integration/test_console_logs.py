"""Pod logs and shells on the shared 2-node lab (issue 14, item 2): the node API's
`/v1/pods/{uuid}/logs` and the console's `l` and `s` keys against real pods.

What is checked is what a user sees: the lines a pod printed, in order, arriving while it
runs, the end of the stream with the pod's exit code, one-line errors, the log screen's
lines, and a shell that ran inside the pod (a file it wrote, read back with `rkt enter`).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from textual.widgets import RichLog

from calico.nodeapi import NodeAPIError, NodeClient
from console.app import CalicoConsole
from console.screens.logs import LogScreen

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.etcd]

NODE = "calico-02"
UNKNOWN = "0123dead-0000-4000-8000-000000000000"


def api(lab, node=NODE) -> NodeClient:
    return NodeClient(f"unix://{lab.node_dir(node) / 'agent.sock'}")


@pytest.fixture
def pods(lab):
    """Pods this test starts (on NODE), stopped and removed afterwards even on failure."""
    started: list[str] = []

    def run(script: str) -> str:
        with api(lab) as client:
            uuid = client.run_pod("docker://busybox", [], "/bin/sh", ["-c", script])["uuid"]
        started.append(uuid)
        return uuid

    yield run
    with api(lab) as client:
        for uuid in started:
            for call in (client.stop_pod, client.remove_pod):
                try:
                    call(uuid)
                except NodeAPIError:
                    pass


def test_logs_tail_follow_and_errors(lab, pods):
    uuid = pods("echo first; echo second >&2; sleep 1.5; echo third; exit 4")
    with api(lab) as client:
        deadline = time.monotonic() + 10
        while True:  # the pod prints its first two lines at once
            got = list(client.logs(uuid))
            if len(got) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got == [
            {"type": "line", "line": "first"},
            {"type": "line", "line": "second"},  # stderr is kept with stdout, in order
            {"type": "end", "state": "running", "exit_code": None},
        ]
        assert [r.get("line") for r in client.logs(uuid, tail=1)] == ["second", None]
        # follow from now (tail=0): "third" arrives when printed, then the end with code 4
        t0 = time.monotonic()
        followed = []
        for rec in client.logs(uuid, follow=True, tail=0):
            followed.append((rec, time.monotonic() - t0))
        assert [r for r, _ in followed] == [
            {"type": "line", "line": "third"},
            {"type": "end", "state": "exited", "exit_code": 4},
        ]
        assert followed[0][1] > 0.3  # it waited for the line: nothing was there before
        assert followed[-1][1] < 10
        # After the pod ended its whole log is still there.
        assert [r.get("line") for r in client.logs(uuid)] == ["first", "second", "third", None]
        with pytest.raises(NodeAPIError) as exc:
            list(client.logs(UNKNOWN))
        assert exc.value.status == 404 and "no pod found" in str(exc.value)
        with pytest.raises(NodeAPIError) as exc:
            list(_raw_logs(client, uuid, "tail=ten"))
        assert exc.value.status == 400 and "tail must be a number" in str(exc.value)


def _raw_logs(client: NodeClient, uuid: str, query: str):
    resp = client.http.get(f"/v1/pods/{uuid}/logs?{query}")
    if resp.status_code >= 400:
        raise NodeAPIError(resp.json()["error"], resp.status_code)
    yield resp.text


def test_a_foreground_pods_output_is_served_too(lab):
    with api(lab) as client:
        before = {p["uuid"] for p in client.pods()}
        out = client.run_pod("docker://busybox", [], "/bin/sh", ["-c", "echo fg-out; exit 2"],
                             wait=True)  # fmt: skip
        assert out["exit_code"] == 2 and "fg-out" in out["output"]
        (uuid,) = {p["uuid"] for p in client.pods()} - before
        try:
            assert [r.get("line") for r in client.logs(uuid)] == ["fg-out", None]
        finally:
            client.remove_pod(uuid)


async def wait_for(pilot, predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def shown_lines(screen: LogScreen) -> list[str]:
    return [strip.text.rstrip() for strip in screen.query_one(RichLog).lines]


async def select_pod(pilot, app, uuid):
    app.switch_view("pods")
    await wait_for(
        pilot,
        lambda: any(r.data and r.data.get("uuid") == uuid and r.cells[4] == "running"
                    for r in app.browse.current_rows()),
        timeout=20, what=f"pod {uuid[:8]} running in :pods",
    )  # fmt: skip
    table = app.browse.query_one("ResourceTable")

    def on_it() -> bool:
        # The table's own rows, not the view's: in a shared lab other tests' pods come and
        # go, and an index taken from one list could land on another pod in the other.
        uuids = [r.data.get("uuid") if r.data else None for r in table.rows]
        if uuid in uuids:
            table.move_cursor(uuids.index(uuid))
        current = table.current()
        return current is not None and bool(current.data) and current.data.get("uuid") == uuid

    await wait_for(pilot, on_it, what=f"the cursor on pod {uuid[:8]}")
    await pilot.pause()


def test_console_l_follows_a_pods_output_and_searches_it(lab, pods):
    uuid = pods("i=0; while [ $i -lt 5 ]; do echo tick $i; i=$((i+1)); done; sleep 1; "
                "echo late line; sleep 60")  # fmt: skip

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(120, 36)) as pilot:
            await select_pod(pilot, app, uuid)
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, LogScreen), what="log screen")
            screen = app.screen
            assert isinstance(screen, LogScreen) and screen.model.uuid == uuid
            await wait_for(pilot, lambda: "late line" in shown_lines(screen), timeout=15,
                           what="the line printed a second later, followed")  # fmt: skip
            assert shown_lines(screen)[:6] == [f"tick {i}" for i in range(5)] + ["late line"]
            await pilot.press("slash", *"tick [34]", "enter")
            await pilot.pause()
            assert "/tick [34] 2/2" in screen.model.header()
            await pilot.press("1")  # the last 100 lines again, a fresh stream
            await wait_for(pilot, lambda: len(shown_lines(screen)) >= 6, what="restarted stream")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is app.browse, what="back to pods")

    asyncio.run(run())


def test_console_s_runs_a_shell_inside_the_pod_and_resumes(lab, pods, monkeypatch):
    uuid = pods("sleep 120")
    # The shell's command, as a user's $CALICO_POD_SHELL would pick it: it leaves a mark in
    # the pod's own root, with the app's environment, to be read back with rkt enter.
    monkeypatch.setenv(
        "CALICO_POD_SHELL", f"/bin/sh -c 'echo in-pod $AC_APP_NAME > /tmp/shell-mark-{uuid[:8]}'"
    )

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(120, 36)) as pilot:
            await select_pod(pilot, app, uuid)
            await pilot.press("s")
            await wait_for(
                pilot,
                lambda: any("shell in" in str(n.message) and "ended" in str(n.message)
                            for n in app._notifications),
                timeout=20, what="the shell ended and the console resumed",
            )  # fmt: skip
            assert app.screen is app.browse and app.browse.view.name == "pods"
            # The mark is in the pod's root (its /tmp), not the node's.
            mark = lab.exec(NODE, ["rkt", "enter", uuid, "cat", f"/tmp/shell-mark-{uuid[:8]}"])
            assert mark.stdout == "in-pod busybox\n", mark.stderr
            assert not os.path.exists(
                f"/tmp/shell-mark-{uuid[:8]}"
            )  # the node's /tmp is the host's
            # A pod that is not running: one line, no shell.
            with api(lab) as client:
                client.stop_pod(uuid)
            app.poller.poll_now()
            await wait_for(
                pilot,
                lambda: any(r.data and r.data.get("uuid") == uuid and r.cells[4] == "exited"
                            for r in app.browse.current_rows()),
                timeout=20, what="the pod exited in :pods",
            )  # fmt: skip
            await pilot.press("s")
            await wait_for(
                pilot,
                lambda: any("is not running" in str(n.message) for n in app._notifications),
                timeout=20,
                what="the refusal",
            )

    asyncio.run(run())
