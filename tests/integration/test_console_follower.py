"""The console's etcd follower process (console/follower_process.py) against a real etcd:
forked or spawned it lists then follows; killed, it is reported and replaced by a fresh
listing; stopped, or left by a console that died, it leaves no process and no open file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from calico.datastore import Change, Snapshot, SyncStatus
from console.follower_process import FollowerProcess

pytestmark = pytest.mark.etcd
ROOT = Path(__file__).resolve().parents[2]
WEP_KEY = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/n1-cni-c1-eth0"
WEP = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "WorkloadEndpoint",
    "metadata": {"name": "n1-cni-c1-eth0", "namespace": "default"},
    "spec": {"node": "n1", "containerID": "c1", "endpoint": "eth0", "ipNetworks": ["10.9.0.1/32"]},
}


class Updates:
    """A follower's updates, gathered by a thread, waited for by condition."""

    def __init__(self, follower: FollowerProcess) -> None:
        self.follower = follower
        self.stop = threading.Event()
        self.seen: list[object] = []
        self.pages: list[tuple[list, list]] = []
        follower.on_page = lambda kvs, fields: self.pages.append((kvs, fields))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for update in self.follower.updates(self.stop):
            self.seen.append(update)

    def wait(self, predicate, timeout: float = 15.0, what: str = "update"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for update in list(self.seen):
                if predicate(update):
                    return update
            time.sleep(0.02)
        raise AssertionError(f"no {what} in {timeout} s; saw {self.seen!r}")

    def close(self) -> None:
        self.stop.set()
        self.follower.stop()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_spawned_follower_lists_then_follows(datastore, etcd_server):
    datastore.kv_put(WEP_KEY, json.dumps(WEP))
    datastore.kv_put("/calico/felix/v2/x", '{"status": "up"}')
    fds = open_fds()
    updates = Updates(FollowerProcess(etcd_server.endpoints))
    try:
        snap = updates.wait(lambda u: isinstance(u, Snapshot), what="snapshot")
        assert updates.follower.child is not None
        assert updates.follower.child.how == "spawned"  # this process has gRPC loaded
        assert set(snap.kvs) == {WEP_KEY, "/calico/felix/v2/x"}
        assert json.loads(snap.kvs[WEP_KEY].value) == WEP
        # the page came with the table's fields of the endpoint, and none for the rest
        fields = {kv.key: f for kvs, fs in updates.pages for kv, f in zip(kvs, fs, strict=True)}
        assert fields["/calico/felix/v2/x"] is None
        assert fields[WEP_KEY][:3] == ("default", "n1-cni-c1-eth0", "n1")
        updates.wait(lambda u: u == SyncStatus("in-sync"), what="in-sync")

        rev = datastore.kv_put(WEP_KEY, json.dumps({**WEP, "spec": {**WEP["spec"], "node": "n2"}}))
        change = updates.wait(lambda u: isinstance(u, Change) and u.kv is not None, what="put")
        assert change.key == WEP_KEY and change.revision == rev
        assert json.loads(change.kv.value)["spec"]["node"] == "n2"
        datastore.kv_delete(WEP_KEY)
        updates.wait(lambda u: isinstance(u, Change) and u.kv is None, what="delete")
    finally:
        child = updates.follower.child
        updates.close()
    assert child is not None and child.returncode is not None  # reaped
    assert open_fds() == fds  # pipes and pidfd closed


def test_a_killed_follower_is_reported_and_a_fresh_listing_follows(datastore, etcd_server):
    datastore.kv_put("/calico/felix/v2/a", "{}")
    updates = Updates(FollowerProcess(etcd_server.endpoints))
    try:
        updates.wait(lambda u: isinstance(u, Snapshot), what="first snapshot")
        first = updates.follower.child
        assert first is not None
        datastore.kv_put("/calico/felix/v2/b", "{}")
        os.kill(first.pid, signal.SIGKILL)
        down = updates.wait(
            lambda u: isinstance(u, SyncStatus) and u.state == "disconnected", what="report"
        )
        assert "etcd follower exited (code -9)" in down.error
        snaps = lambda: [u for u in updates.seen if isinstance(u, Snapshot)]  # noqa: E731
        updates.wait(lambda u: len(snaps()) == 2, what="second snapshot")
        assert set(snaps()[1].kvs) == {"/calico/felix/v2/a", "/calico/felix/v2/b"}
        assert updates.follower.child is not None and updates.follower.child.pid != first.pid
    finally:
        updates.close()


def test_settings_that_cannot_work_are_reported(etcd_server):
    updates = Updates(FollowerProcess("ftp://127.0.0.1:2379"))
    try:
        down = updates.wait(lambda u: isinstance(u, SyncStatus), what="report")
        assert down == SyncStatus(
            "disconnected", "bad etcd endpoint 'ftp://127.0.0.1:2379': expected http://HOST:PORT"
        )
    finally:
        updates.close()


CHILD_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from calico.datastore import Change, Snapshot
    from console.follower_process import FollowerProcess
    follower = FollowerProcess(sys.argv[1])
    follower.start()  # one thread, no gRPC: forked
    print(json.dumps({"how": follower.child.how, "pid": follower.child.pid}), flush=True)
    for update in follower.updates(threading.Event()):
        if isinstance(update, Snapshot):
            print(json.dumps({"snapshot": sorted(update.kvs)}), flush=True)
        elif isinstance(update, Change):
            print(json.dumps({"change": update.key}), flush=True)
            break
    sys.stdout.flush()
    import os
    os._exit(0)  # the console dies without stopping its follower
    """
)


def test_a_forked_follower_follows_and_ends_with_its_console(datastore, etcd_server):
    datastore.kv_put("/calico/felix/v2/before", "{}")
    console = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, etcd_server.endpoints],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert console.stdout is not None
        started = json.loads(console.stdout.readline())
        assert started["how"] == "forked"
        assert json.loads(console.stdout.readline()) == {"snapshot": ["/calico/felix/v2/before"]}
        datastore.kv_put("/calico/felix/v2/after", "{}")
        assert json.loads(console.stdout.readline()) == {"change": "/calico/felix/v2/after"}
        assert console.wait(timeout=10) == 0
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
    # its stdin closed with the console: the follower exits on its own
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(started["pid"]):
        time.sleep(0.05)
    assert not _alive(started["pid"]), "the follower outlived its console"


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (its parent died: init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_console_says_when_its_follower_died_and_catches_up(datastore, etcd_server):
    """What an operator sees: the endpoint's row, `disconnected` with the follower's exit
    while it is gone, then `in-sync` again with what was written meanwhile."""
    import asyncio

    from console.app import CalicoConsole
    from console.model import VIEWS
    from console.widgets.status_bar import StatusBar

    datastore.kv_put(WEP_KEY, json.dumps(WEP))
    second = WEP_KEY.replace("c1", "c2")
    wep2 = {**WEP, "metadata": {**WEP["metadata"], "name": "n1-cni-c2-eth0"}}

    async def until(pilot, predicate, what):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if predicate():
                return
            await pilot.pause(0.05)
        raise AssertionError(f"the console never showed {what}")

    async def run() -> None:
        app = CalicoConsole(endpoints=etcd_server.endpoints, cluster_name="t")
        app.browse.view = VIEWS["endpoints"]
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.screen.query_one("#table")
            status = app.screen.query_one(StatusBar)
            await until(pilot, lambda: table.row_count == 1, "the endpoint")
            await until(pilot, lambda: "in-sync" in str(status.render()), "in-sync")
            child = app.follower.source.child
            os.kill(child.pid, signal.SIGKILL)
            await until(pilot, lambda: "disconnected" in str(status.render()), "disconnected")
            assert "etcd follower exited (code -9)" in str(status.render())
            assert table.row_count == 1  # what it knew stays on screen meanwhile
            datastore.kv_put(second, json.dumps(wep2))
            await until(pilot, lambda: table.row_count == 2, "the endpoint written meanwhile")
            await until(pilot, lambda: "etcd in-sync" in str(status.render()), "in-sync again")
        assert app.follower.source.child is None  # stopped with the app

    asyncio.run(run())


def test_without_pidfds_the_follower_is_still_ended_and_reaped(datastore, etcd_server, monkeypatch):
    """On a kernel without pidfd_open (before 5.3) the follower is killed by pid, and only
    while it is not yet reaped."""

    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    datastore.kv_put("/calico/felix/v2/a", "{}")
    fds = open_fds()
    updates = Updates(FollowerProcess(etcd_server.endpoints))
    updates.wait(lambda u: isinstance(u, Snapshot), what="snapshot")
    child = updates.follower.child
    assert child is not None and child.pidfd is None
    updates.close()
    assert child.returncode == -signal.SIGKILL
    assert not _alive(child.pid) and open_fds() == fds


class Frames:
    """follow()'s frames, gathered in this process."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.thread: threading.Thread | None = None

    def send(self, frame: tuple) -> None:
        self.sent.append(frame)

    def page(self, kvs: list) -> None:
        self.sent.append(("page", [kv.key for kv in kvs]))

    def tags(self) -> list[str]:
        return [f[0] for f in self.sent]

    def wait(self, predicate, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(list(self.sent)):
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen in {timeout} s; frames: {self.sent!r}")
            time.sleep(0.02)


@contextlib.contextmanager
def following(endpoints: str):
    """follow() in a thread of this process, its frames gathered; stopped on the way out."""
    from console import follower_process

    frames, stop = Frames(), threading.Event()
    frames.thread = threading.Thread(
        target=follower_process.follow, args=(endpoints, frames, stop), daemon=True
    )
    frames.thread.start()
    try:
        yield frames
    finally:
        stop.set()
        frames.thread.join(10)


def test_a_first_listing_cut_short_is_taken_back_and_listed_over_grpc(
    datastore, etcd_server, monkeypatch
):
    """The first listing goes over calico.etcd_h2; a connection lost after its first page
    is said (disconnected, the reason), the page is taken back and the gRPC client lists
    the whole prefix, then follows."""
    from calico.errors import Unavailable
    from calico.etcd_gateway import Gateway
    from console import follower_process

    prefix = "/calico/resources/v3/projectcalico.org/profiles/cut-"
    for i in range(5):
        datastore.kv_put(f"{prefix}{i}", "{}")
    calls = []
    real_range = Gateway._range

    def lost_after_one_page(self, *args):
        calls.append(args)
        if len(calls) > 1:
            raise Unavailable("etcd http://x: the connection was closed")
        return real_range(self, *args)

    monkeypatch.setattr(Gateway, "_range", lost_after_one_page)
    monkeypatch.setattr(follower_process, "CHILD_PAGE", 2)
    with following(etcd_server.endpoints) as frames:
        frames.wait(lambda sent: ("status", "in-sync", "") in sent)
        datastore.kv_put(f"{prefix}after", "{}")
        frames.wait(lambda sent: any(f[0] == "change" for f in sent))
    tags = frames.tags()
    assert tags[:3] == ["page", "relist", "status"], frames.sent
    assert frames.sent[2] == ("status", "disconnected", "etcd http://x: the connection was closed")
    listed = [
        key for f in frames.sent[3 : tags.index("snapshot")] if f[0] == "page" for key in f[1]
    ]
    assert [k for k in listed if k.startswith(prefix)] == [f"{prefix}{i}" for i in range(5)]
    change = next(f for f in frames.sent if f[0] == "change")
    assert change[1] == f"{prefix}after"  # followed from the gRPC listing's revision
    assert not frames.thread.is_alive()


def test_after_a_first_listing_over_h2_nothing_written_meanwhile_is_missed(
    datastore, etcd_server, monkeypatch
):
    """The first listing (calico.etcd_h2) ends before the gRPC client connects: what is
    written between the two comes as changes, from the listing's revision on."""
    from calico import datastore as datastore_module

    prefix = "/calico/resources/v3/projectcalico.org/profiles/gap-"
    datastore.kv_put(f"{prefix}before", "{}")
    real_connect = datastore_module.Datastore.connect.__func__

    def write_then_connect(cls, *args, **kwargs):
        datastore.kv_put(f"{prefix}meanwhile", "{}")  # after the listing, before the watch
        datastore.kv_delete(f"{prefix}before")
        return real_connect(cls, *args, **kwargs)

    monkeypatch.setattr(datastore_module.Datastore, "connect", classmethod(write_then_connect))
    with following(etcd_server.endpoints) as frames:
        frames.wait(lambda sent: sum(f[0] == "change" for f in sent) >= 2)
    tags = frames.tags()
    assert "relist" not in tags and tags.index("snapshot") < tags.index("change"), tags
    listed = [k for f in frames.sent[: tags.index("snapshot")] if f[0] == "page" for k in f[1]]
    assert f"{prefix}before" in listed and f"{prefix}meanwhile" not in listed
    changes = [(f[1], f[2] is None) for f in frames.sent if f[0] == "change"]
    assert changes == [(f"{prefix}meanwhile", False), (f"{prefix}before", True)]
