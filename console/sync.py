"""Keeps a ClusterState fresh from etcd in background threads; the UI never waits on it.

One thread takes in what the follower process (console/follower_process.py) reads of
the `/calico/` prefix (snapshot, then changes) into a private state; the worker thread
hands the UI a shallow snapshot at most every `batch_interval` (a whole listing at once:
a first view waited up to 100 ms for the next tick), so a burst of 10,000 endpoint
writes is a handful of repaints, not 10,000.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from calico.datastore import KV, Change, Snapshot, SyncStatus
from calico.keys import RESOURCE_ROOT
from console.follower_process import FollowerProcess
from console.model import ClusterState, Decoded, decode_listed


@dataclass
class SyncReport:
    state: ClusterState
    sync: str  # connecting, in-sync, disconnected, resyncing
    error: str = ""
    # False when only `sync`/`error` moved since the last report: the views need not rebuild
    # their rows (10,000 endpoint rows are 30-90 ms; the in-sync word after a first listing
    # came one batch later and threw the first view's rows away mid-build).
    data_changed: bool = True
    listed: bool = False  # the state holds a whole listing (False before the first one)


class ListedPages:
    """The pages of a listing, decoded as they arrive (on the thread that reads them from
    the follower process, while that process reads the next ones from etcd); `take()` hands
    over what the listing that a Snapshot completes decoded, and starts afresh."""

    def __init__(self) -> None:
        self._done: dict[str, tuple[int, Decoded]] = {}

    def put(self, kvs: list[KV], fields: list[tuple[str, ...] | None]) -> None:
        for kv, f in zip(kvs, fields, strict=True):
            if kv.key.startswith(RESOURCE_ROOT):
                self._done[kv.key] = (kv.mod_revision, decode_listed(kv, f))

    def take(self) -> dict[str, tuple[int, Decoded]]:
        done, self._done = self._done, {}
        return done


def _undelivered(report: SyncReport) -> None:
    raise RuntimeError("EtcdFollower.run() before anything was given its reports")


class EtcdFollower:
    """Follows `/calico/`; `run()` calls `deliver(SyncReport)` from the calling thread."""

    def __init__(
        self,
        endpoints: str | None,
        deliver: Callable[[SyncReport], None] | None = None,
        batch_interval: float = 0.1,
    ):
        """`deliver` may be set later, before `run()` (calico-console starts the follower
        before the app that receives its reports exists)."""
        self.endpoints = endpoints
        self.deliver: Callable[[SyncReport], None] = deliver or _undelivered
        self.batch_interval = batch_interval
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._state = ClusterState()
        self._sync = "connecting"
        self._error = ""
        self._dirty = True
        self._data_dirty = True
        self._wake = threading.Event()
        self._listed = ListedPages()
        self._has_listing = False
        self.source = FollowerProcess(endpoints, on_page=self._listed.put)

    def _follow(self) -> None:
        for update in self.source.updates(self.stop_event):
            # outside the lock: what the listing's pages decoded
            decoded = self._listed.take() if isinstance(update, Snapshot) else {}
            with self._lock:
                if isinstance(update, Snapshot):
                    self._state.replace_all(update.kvs.values(), decoded)
                    self._has_listing = True
                    self._data_dirty = True
                    self._wake.set()  # a whole listing goes out at once, not at the next tick
                elif isinstance(update, Change):
                    self._state.apply_kv(update.key, update.kv)
                    self._data_dirty = True
                elif isinstance(update, SyncStatus):
                    self._sync, self._error = update.state, update.error
                self._dirty = True

    def run(self) -> None:
        """The worker body: follow, deliver batches until stopped."""
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
                    listed=self._has_listing,
                )
                self._dirty = self._data_dirty = False
            self.deliver(report)
        follower.join(timeout=2)

    def stop(self) -> None:
        self.stop_event.set()
        self.source.stop()
        self._wake.set()
