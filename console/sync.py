"""Keeps a ClusterState fresh from etcd in background threads; the UI never waits on it.

One thread follows the `/calico/` prefix (snapshot, then changes) into a private state;
the worker thread hands the UI a shallow snapshot at most every `batch_interval` (a whole
listing at once: a first view waited up to 100 ms for the next tick), so a burst
of 10,000 endpoint writes is a handful of repaints, not 10,000.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from calico.datastore import KV, Change, Datastore, PrefixSyncer, Snapshot, SyncStatus
from calico.errors import DatastoreError
from calico.keys import RESOURCE_ROOT, ROOT
from console.model import ClusterState, Decoded, decode


@dataclass
class SyncReport:
    state: ClusterState
    sync: str  # connecting, in-sync, disconnected, resyncing
    error: str = ""
    # False when only `sync`/`error` moved since the last report: the views need not rebuild
    # their rows (10,000 endpoint rows are 30-90 ms; the in-sync word after a first listing
    # came one batch later and threw the first view's rows away mid-build).
    data_changed: bool = True


class DecodeAhead:
    """Decodes the pages of a listing in a thread of its own while the follower reads the
    next ones (PrefixSyncer.on_page); `take()` hands over what the listing that a Snapshot
    completes decoded, and starts afresh for the next one."""

    def __init__(self) -> None:
        self._pages: queue.Queue[list[KV] | None] = queue.Queue()
        self._done: dict[str, tuple[int, Decoded]] = {}
        self._thread: threading.Thread | None = None

    def put(self, kvs: list[KV]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="etcd-decode", daemon=True)
            self._thread.start()
        self._pages.put(kvs)

    def take(self) -> dict[str, tuple[int, Decoded]]:
        if self._thread is None:
            return {}
        self._pages.put(None)
        self._thread.join()
        done, self._done, self._thread = self._done, {}, None
        return done

    def _run(self) -> None:
        while (kvs := self._pages.get()) is not None:
            for kv in kvs:
                if kv.key.startswith(RESOURCE_ROOT):
                    self._done[kv.key] = (kv.mod_revision, decode(kv))


class EtcdFollower:
    """Follows `/calico/`; `run()` calls `deliver(SyncReport)` from the calling thread."""

    def __init__(
        self,
        endpoints: str | None,
        deliver: Callable[[SyncReport], None],
        batch_interval: float = 0.1,
    ):
        self.endpoints = endpoints
        self.deliver = deliver
        self.batch_interval = batch_interval
        self.stop_event = threading.Event()
        self.datastore: Datastore | None = None
        self._lock = threading.Lock()
        self._state = ClusterState()
        self._sync = "connecting"
        self._error = ""
        self._dirty = True
        self._data_dirty = True
        self._wake = threading.Event()

    def _follow(self) -> None:
        assert self.datastore is not None
        ahead = DecodeAhead()
        syncer = PrefixSyncer(self.datastore, ROOT, on_page=ahead.put)
        for update in syncer.updates(self.stop_event):
            decoded = ahead.take() if isinstance(update, Snapshot) else {}  # outside the lock
            with self._lock:
                if isinstance(update, Snapshot):
                    self._state.replace_all(update.kvs.values(), decoded)
                    self._data_dirty = True
                    self._wake.set()  # a whole listing goes out at once, not at the next tick
                elif isinstance(update, Change):
                    self._state.apply_kv(update.key, update.kv)
                    self._data_dirty = True
                elif isinstance(update, SyncStatus):
                    self._sync, self._error = update.state, update.error
                self._dirty = True

    def run(self) -> None:
        """The worker body: connect, start following, deliver batches until stopped."""
        while not self.stop_event.is_set() and self.datastore is None:
            try:
                self.datastore = Datastore.connect(self.endpoints, timeout=3.0)
            except (DatastoreError, ValueError) as exc:
                self.deliver(SyncReport(ClusterState(), "disconnected", str(exc)))
                self.stop_event.wait(1.0)
        if self.datastore is None:
            return
        follower = threading.Thread(target=self._follow, name="etcd-follow", daemon=True)
        follower.start()
        while not self.stop_event.is_set():
            self._wake.wait(self.batch_interval)
            self._wake.clear()
            if self.stop_event.is_set():
                break
            with self._lock:
                if not self._dirty:
                    continue
                report = SyncReport(
                    self._state.copy() if self._data_dirty else self._state,
                    self._sync,
                    self._error,
                    data_changed=self._data_dirty,
                )
                self._dirty = self._data_dirty = False
            self.deliver(report)
        follower.join(timeout=2)
        self.datastore.close()

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()
