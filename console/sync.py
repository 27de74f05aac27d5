"""Keeps a ClusterState fresh from etcd in background threads; the UI never waits on it.

One thread follows the `/calico/` prefix (snapshot, then changes) into a private state;
the worker thread hands the UI a shallow snapshot at most every `batch_interval`, so a burst
of 10,000 endpoint writes is a handful of repaints, not 10,000.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from calico.datastore import Change, Datastore, PrefixSyncer, Snapshot, SyncStatus
from calico.errors import DatastoreError
from calico.keys import ROOT
from console.model import ClusterState


@dataclass
class SyncReport:
    state: ClusterState
    sync: str  # connecting, in-sync, disconnected, resyncing
    error: str = ""


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

    def _follow(self) -> None:
        assert self.datastore is not None
        syncer = PrefixSyncer(self.datastore, ROOT)
        for update in syncer.updates(self.stop_event):
            with self._lock:
                if isinstance(update, Snapshot):
                    self._state.replace_all(update.kvs.values())
                elif isinstance(update, Change):
                    self._state.apply_kv(update.key, update.kv)
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
        while not self.stop_event.wait(self.batch_interval):
            with self._lock:
                if not self._dirty:
                    continue
                report = SyncReport(self._state.copy(), self._sync, self._error)
                self._dirty = False
            self.deliver(report)
        follower.join(timeout=2)
        self.datastore.close()

    def stop(self) -> None:
        self.stop_event.set()
