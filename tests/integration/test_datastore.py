"""The etcd datastore against a real etcd: key layout, CAS, races, and the gap-free watch.

The restart and compaction cases start their own etcd (lab.etcd.local_etcd in tmp_path)
so killing it cannot disturb the session's shared server.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest

from calico.datastore import Change, Datastore, PrefixSyncer, Snapshot, SyncStatus, wait_for
from calico.errors import AlreadyExists, Conflict, NotFound
from calico.keys import RESOURCE_ROOT, kind_prefix, resource_key
from calico.resources import Profile, WorkloadEndpoint, load
from lab.etcd import local_etcd

pytestmark = pytest.mark.etcd

WEP_NAME = "calico--01-cni-" + "ab" * 32 + "-eth0"


def profile(name: str = "network1", **labels: str) -> Profile:
    return load(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": name},
            "spec": {"labelsToApply": labels or {name: ""}, "egress": [{"action": "Allow"}]},
        }
    )


def wep(namespace: str = "default") -> WorkloadEndpoint:
    return load(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": WEP_NAME, "namespace": namespace},
            "spec": {
                "orchestrator": "cni",
                "node": "calico-01",
                "containerID": "ab" * 32,
                "endpoint": "eth0",
                "interfaceName": "caliabababababa",
                "ipNetworks": ["10.0.0.2/32"],
                "profiles": ["network1"],
            },
        }
    )


# ---------------------------------------------------------------- key layout and CRUD


def test_key_layout(datastore):
    datastore.create(profile())
    datastore.create(wep())
    pkey = "/calico/resources/v3/projectcalico.org/profiles/network1"
    wkey = f"/calico/resources/v3/projectcalico.org/workloadendpoints/default/{WEP_NAME}"
    assert resource_key("profiles", "network1") == pkey
    assert resource_key("wep", WEP_NAME, "default") == wkey
    assert kind_prefix("WorkloadEndpoint", "prod") == f"{RESOURCE_ROOT}workloadendpoints/prod/"
    stored = datastore.kv_get(pkey).json()
    assert stored["apiVersion"] == "projectcalico.org/v3" and stored["kind"] == "Profile"
    assert stored["metadata"]["name"] == "network1"
    assert "resourceVersion" not in stored["metadata"]  # it is the key's mod_revision
    assert datastore.kv_get(wkey).json()["metadata"]["namespace"] == "default"
    keys = sorted(kv.key for kv in datastore.kv_list("/calico/")[0])
    assert keys == [pkey, wkey]


def test_crud_with_revisions(datastore):
    created = datastore.create(profile())
    rev1 = int(created.metadata.resource_version)
    assert rev1 == datastore.kv_get(resource_key("Profile", "network1")).mod_revision
    assert created.metadata.uid and created.metadata.creation_timestamp
    with pytest.raises(AlreadyExists):
        datastore.create(profile())
    got = datastore.get("profile", "network1")
    assert got == created
    got.spec.labels_to_apply["extra"] = "yes"
    updated = datastore.update(got)
    assert int(updated.metadata.resource_version) > rev1
    assert updated.metadata.uid == created.metadata.uid
    assert datastore.get("Profile", "network1").spec.labels_to_apply["extra"] == "yes"
    datastore.create(profile("network2"))
    assert [p.name for p in datastore.list("profiles")] == ["network1", "network2"]
    datastore.create(wep("prod"))
    assert datastore.list("wep", "default") == []
    assert [w.namespace for w in datastore.list("wep")] == ["prod"]
    deleted = datastore.delete("profile", "network1")
    assert deleted.name == "network1"
    with pytest.raises(NotFound):
        datastore.get("profile", "network1")
    with pytest.raises(NotFound):
        datastore.delete("profile", "network1")
    with pytest.raises(NotFound):
        datastore.update(profile("network9"))


def test_stale_resource_version_is_a_conflict(datastore):
    first = datastore.create(profile())
    stale = datastore.get("profile", "network1")
    first.spec.labels_to_apply["a"] = "1"
    datastore.update(first)
    stale.spec.labels_to_apply["b"] = "2"
    with pytest.raises(Conflict):
        datastore.update(stale)
    with pytest.raises(Conflict):
        datastore.delete("profile", "network1", resource_version=stale.metadata.resource_version)
    assert "b" not in datastore.get("profile", "network1").spec.labels_to_apply


# ---------------------------------------------------------------- racing writers


def run_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def wrap(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:  # surfaced below, with the thread's own error
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_cas_increments_lose_no_update(datastore, etcd_server):
    key = "/calico/test/counter"
    datastore.kv_put(key, "0")
    writers, per_writer = 4, 50
    clients = [Datastore.connect(etcd_server.endpoints) for _ in range(writers)]

    def increment(i: int) -> tuple[int, int]:
        ds, wins, losses = clients[i], 0, 0
        while wins < per_writer:
            kv = ds.kv_get(key)
            if ds.kv_cas(key, str(int(kv.value) + 1), kv.mod_revision):
                wins += 1
            else:
                losses += 1
        return wins, losses

    try:
        results = run_threads(writers, increment)
    finally:
        for ds in clients:
            ds.close()
    assert int(datastore.kv_get(key).value) == writers * per_writer
    assert sum(w for w, _ in results) == writers * per_writer
    # every write bumped the revision once: no write landed twice or vanished
    kv = datastore.kv_get(key)
    assert kv.mod_revision - kv.create_revision == writers * per_writer


def test_racing_creates_and_updates_have_one_winner_per_round(datastore, etcd_server):
    clients = [Datastore.connect(etcd_server.endpoints) for _ in range(2)]
    rounds = 20
    try:
        for r in range(rounds):
            barrier = threading.Barrier(2)

            def create(i: int, r: int = r, barrier: threading.Barrier = barrier) -> str:
                res = profile(f"race{r}", writer=str(i))
                barrier.wait()
                try:
                    clients[i].create(res)
                    return "won"
                except AlreadyExists:
                    return "lost"

            assert sorted(run_threads(2, create)) == ["lost", "won"]
            current = datastore.get("profile", f"race{r}")
            winner = current.spec.labels_to_apply["writer"]
            barrier = threading.Barrier(2)

            def update(i: int, r: int = r, barrier: threading.Barrier = barrier) -> str:
                mine = clients[i].get("profile", f"race{r}")
                mine.spec.labels_to_apply["writer"] = f"updated-by-{i}"
                barrier.wait()  # both hold the same resourceVersion now
                try:
                    clients[i].update(mine)
                    return f"updated-by-{i}"
                except Conflict:
                    return "conflict"

            outcome = run_threads(2, update)
            assert outcome.count("conflict") == 1, (r, winner, outcome)
            (won,) = [o for o in outcome if o != "conflict"]
            assert datastore.get("profile", f"race{r}").spec.labels_to_apply["writer"] == won
    finally:
        for ds in clients:
            ds.close()


# ---------------------------------------------------------------- the watch


class Consumer:
    """Runs a PrefixSyncer in a thread; the test takes its updates off a queue."""

    def __init__(self, syncer: PrefixSyncer):
        self.syncer = syncer
        self.stop = threading.Event()
        self.updates: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for update in self.syncer.updates(self.stop):
            self.updates.put(update)

    def take(self, until: Callable[[Any], bool], timeout: float = 15.0) -> list[Any]:
        """Updates up to and including the first for which `until` is true."""
        got = []
        while True:
            try:
                update = self.updates.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no matching update within {timeout}s; got {got}") from None
            got.append(update)
            if until(update):
                return got

    def drain(self) -> list[Any]:
        out = []
        while not self.updates.empty():
            out.append(self.updates.get_nowait())
        return out

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def changes(updates: list[Any]) -> list[tuple[str, str | None]]:
    """(key suffix, value or None for a delete) for each Change."""
    return [
        (u.key.rsplit("/", 1)[1], u.kv.value.decode() if u.kv else None)
        for u in updates
        if isinstance(u, Change)
    ]


def is_change(key_suffix: str) -> Callable[[Any], bool]:
    return lambda u: isinstance(u, Change) and u.key.endswith("/" + key_suffix)


def in_sync(u: Any) -> bool:
    return isinstance(u, SyncStatus) and u.state == "in-sync"


PREFIX = "/calico/test/watch/"


def test_a_listing_taken_page_by_page_ends_on_a_small_page(datastore):
    """With `on_page`, the last page is an eighth of one (what the consumer still has to
    do once the read is over), and the pages are the whole listing, in order, once."""
    from concurrent.futures import ThreadPoolExecutor

    prefix = "/calico/test/pages/"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: datastore.kv_put(f"{prefix}{i:04d}", "{}"), range(1000)))
    pages: list[list[Any]] = []
    kvs, rev = datastore.kv_list(prefix, page=500, on_page=lambda p: pages.append(p))
    assert [len(p) for p in pages] == [500, 438, 62]
    assert [kv.key for p in pages for kv in p] == [kv.key for kv in kvs]
    plain, plain_rev = datastore.kv_list(prefix, page=500)
    assert (
        [kv.key for kv in plain]
        == [f"{prefix}{i:04d}" for i in range(1000)]
        == [kv.key for kv in kvs]
    )
    assert plain_rev == rev


def test_syncer_snapshot_then_changes(datastore):
    for name in ("a", "b"):
        datastore.kv_put(PREFIX + name, json.dumps({"v": name}))
    datastore.kv_put("/calico/test/other", "not watched")
    consumer = Consumer(PrefixSyncer(datastore, PREFIX))
    try:
        first = consumer.take(in_sync)
        snapshot = first[0]
        assert isinstance(snapshot, Snapshot)
        assert sorted(snapshot.kvs) == [PREFIX + "a", PREFIX + "b"]
        assert snapshot.revision == datastore.revision()
        datastore.kv_put(PREFIX + "c", "3")
        datastore.kv_put(PREFIX + "a", "1")
        datastore.kv_put("/calico/test/other", "still not watched")
        datastore.kv_delete(PREFIX + "b")
        got = consumer.take(is_change("b"))
        assert changes(got) == [("c", "3"), ("a", "1"), ("b", None)]
        assert [u.revision for u in got] == sorted(u.revision for u in got)
        assert got[-1].revision == datastore.revision()
    finally:
        consumer.close()


class GatedDatastore:
    """The syncer's view of a datastore, whose watch (re)starts wait for `gate`: so a
    test can change and compact etcd while the syncer is known to be disconnected."""

    def __init__(self, ds: Datastore):
        self.ds = ds
        self.client = ds.client
        self.gate = threading.Event()
        self.gate.set()
        self.watch_attempts = 0

    def kv_list(self, prefix: str, **kwargs):
        return self.ds.kv_list(prefix, **kwargs)

    def _call(self, fn, *args, **kwargs):
        if getattr(fn, "__name__", "") == "add_watch_prefix_callback":
            self.watch_attempts += 1
            self.gate.wait()
        return self.ds._call(fn, *args, **kwargs)


@pytest.fixture
def own_etcd(tmp_path):
    """An etcd just for this test, which it may kill and restart."""
    server = local_etcd(tmp_path, name="own")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def restart_with_syncer_held(own_etcd, gated: GatedDatastore, consumer: Consumer) -> Datastore:
    """Kill etcd (as a crash), wait until the syncer saw it, start etcd again with the
    syncer's re-watch held at the gate; returns a fresh client for the test's writes."""
    gated.gate.clear()
    attempts = gated.watch_attempts
    own_etcd.kill()
    consumer.take(lambda u: isinstance(u, SyncStatus) and u.state == "disconnected")
    assert wait_for(lambda: gated.watch_attempts > attempts, timeout=15)
    own_etcd.start()
    writer = Datastore.connect(own_etcd.endpoints)
    assert wait_for(writer.healthy, timeout=15)
    return writer


def test_watch_survives_an_etcd_restart(own_etcd):
    ds = Datastore.connect(own_etcd.endpoints)
    gated = GatedDatastore(ds)
    consumer = Consumer(PrefixSyncer(gated, PREFIX))  # type: ignore[arg-type]
    writer = None
    try:
        consumer.take(in_sync)
        ds.kv_put(PREFIX + "before", "1")
        assert changes(consumer.take(is_change("before"))) == [("before", "1")]
        writer = restart_with_syncer_held(own_etcd, gated, consumer)
        # changes the syncer cannot see as they happen
        writer.kv_put(PREFIX + "while-down-1", "a")
        writer.kv_put(PREFIX + "while-down-2", "b")
        writer.kv_delete(PREFIX + "before")
        gated.gate.set()
        got = consumer.take(is_change("before"))
        assert changes(got) == [("while-down-1", "a"), ("while-down-2", "b"), ("before", None)]
        writer.kv_put(PREFIX + "after", "z")
        got = consumer.take(is_change("after"))
        assert changes(got) == [("after", "z")]  # nothing delivered twice in between
        assert not [u for u in got if isinstance(u, Snapshot)]
        assert sorted(consumer.syncer.known) == [
            PREFIX + "after",
            PREFIX + "while-down-1",
            PREFIX + "while-down-2",
        ]
    finally:
        gated.gate.set()
        consumer.close()
        if writer:
            writer.close()
        ds.close()


def test_compaction_past_the_watch_relists_and_emits_only_differences(own_etcd):
    ds = Datastore.connect(own_etcd.endpoints)
    for name in ("same", "updated", "deleted", "twice"):
        ds.kv_put(PREFIX + name, "0")
    gated = GatedDatastore(ds)
    consumer = Consumer(PrefixSyncer(gated, PREFIX))  # type: ignore[arg-type]
    writer = None
    try:
        snapshot = consumer.take(in_sync)[0]
        assert len(snapshot.kvs) == 4
        writer = restart_with_syncer_held(own_etcd, gated, consumer)
        writer.kv_put(PREFIX + "updated", "1")
        writer.kv_delete(PREFIX + "deleted")
        writer.kv_put(PREFIX + "created", "1")
        writer.kv_put(PREFIX + "transient", "1")
        writer.kv_delete(PREFIX + "transient")
        writer.kv_put(PREFIX + "twice", "1")
        writer.kv_put(PREFIX + "twice", "2")
        rev = writer.revision()
        writer.client.compact(rev)
        gated.gate.set()
        # The re-watch is accepted, then etcd says its start revision is gone: the syncer
        # relists, emits the difference, and watches again from the relisted revision.
        seen: list[str] = []

        def resynced(u: Any) -> bool:
            if isinstance(u, SyncStatus):
                seen.append(u.state)
            return seen[-2:] == ["resyncing", "in-sync"]

        got = consumer.take(resynced)
        assert seen in (["resyncing", "in-sync"], ["in-sync", "resyncing", "in-sync"])
        resync_at = next(
            i for i, u in enumerate(got) if isinstance(u, SyncStatus) and u.state == "resyncing"
        )
        assert changes(got[:resync_at]) == []  # nothing came from the compacted history
        # one Change per key that differs from what the consumer already had
        assert sorted(changes(got)) == [
            ("created", "1"),
            ("deleted", None),
            ("twice", "2"),
            ("updated", "1"),
        ]
        assert all(u.revision == rev for u in got if isinstance(u, Change))
        writer.kv_put(PREFIX + "later", "x")
        got = consumer.take(is_change("later"))
        assert changes(got) == [("later", "x")]
        assert {k.rsplit("/", 1)[1]: kv.value for k, kv in consumer.syncer.known.items()} == {
            "same": b"0",
            "updated": b"1",
            "created": b"1",
            "twice": b"2",
            "later": b"x",
        }
    finally:
        gated.gate.set()
        consumer.close()
        if writer:
            writer.close()
        ds.close()
