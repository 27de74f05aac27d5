"""Agent health and per-endpoint programming status, in etcd and in memory.

Keys (Felix's status layout, region "no-region"):

    /calico/felix/v2/no-region/host/<node>/status
        {"time", "heartbeat", "age", "stale_after", "started", "uptime", "pid", "healthy",
         "in_sync", "ready", "last_apply_ms", "last_apply", "refresh_interval", "endpoints",
         "rules", "ipsets", "ipset_members", "routes", "error", "rejected", "rejected_keys"}
    /calico/felix/v2/no-region/host/<node>/workload/<orchestrator>/<wep name>/endpoint/<endpoint>
        {"status": "up" | "down" | "error", "namespace", "name", "interface", "since"}

`heartbeat` is when the agent's main loop last ran and `stale_after` how long a reader may
believe the record (a few of its writer's intervals: the health file and `/v1/health` are
refreshed every second, the etcd key every `interval`); `calico.health.assess` is how
every reader judges it. `rejected` counts the resources this agent cannot program (a
WorkloadEndpoint that fails validation, say) and `rejected_keys` lists them with the
reason; such an endpoint on this node also gets an endpoint key with status "error".

`status` is "up" once the endpoint's chains are in the kernel and its interface exists and
is configured, "down" while the interface is missing, "error" while applies fail.

A dead agent is visible two ways: every key is attached to a lease of `ttl` seconds that
the live agent refreshes every report, so the keys vanish after a crash; and the host
status's `time` is rewritten every `interval` seconds, so a reader can call anything older
than a few intervals stale. An endpoint key is rewritten only when its status changes
(`since` says when), so a thousand endpoints cost nothing per apply. `--once` writes without a lease (the process exits at once) and the
timestamps alone tell the age.

While etcd is unreachable nothing can be written there; the in-memory `Health` (served by
the node API at /v1/health, and written to `--health-file`) says unhealthy.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from calico.datastore import Datastore
from calico.health import stamp
from calico.keys import host_prefix, host_status_key

log = logging.getLogger("calico-agent")


HEALTH_FILE_INTERVAL = 1.0  # seconds between rewrites of --health-file by the main loop
STALE_INTERVALS = 3  # a record older than this many of its writer's intervals is stale
MIN_STALE_AFTER = 5.0  # seconds: never call a record stale sooner (a busy 2-core machine)
MAX_REJECTED_LISTED = 50  # keys listed in `rejected_keys` (the count is always complete)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stale_after_for(interval: float) -> float:
    return max(MIN_STALE_AFTER, STALE_INTERVALS * interval)


@dataclass
class Health:
    """What the agent knows about itself; `healthy` = datastore reachable and applies work."""

    node: str
    started: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)
    ready: bool = False  # first snapshot complete and applied
    in_sync: bool = False  # watching etcd right now
    datastore_ok: bool = False
    last_apply_ms: float | None = None
    last_apply: str | None = None
    last_apply_ok: bool = True
    refresh_interval: float = 10.0
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""
    heartbeat: float = field(default_factory=time.time)  # the main loop's last turn
    stale_after: float = field(default_factory=lambda: stale_after_for(HEALTH_FILE_INTERVAL))
    rejected: dict[str, str] = field(default_factory=dict)  # key -> why it cannot be programmed

    def beat(self) -> None:
        """The main loop is alive (called every turn; the record's freshness stamp)."""
        self.heartbeat = time.time()

    @property
    def healthy(self) -> bool:
        return self.ready and self.in_sync and self.datastore_ok and self.last_apply_ok

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        counts = data.pop("counts")
        rejected = data.pop("rejected")
        data.update(counts)
        now = time.time()
        data.update(
            healthy=self.healthy,
            time=stamp(now),
            heartbeat=stamp(self.heartbeat),
            age=round(max(0.0, now - self.heartbeat), 3),
            rejected=len(rejected),
            rejected_keys=[
                {"key": k, "reason": rejected[k]} for k in sorted(rejected)[:MAX_REJECTED_LISTED]
            ],
            uptime=round(time.time() - self.started, 1),
            started=datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if data["last_apply_ms"] is not None:
            data["last_apply_ms"] = round(data["last_apply_ms"], 1)
        return data

    def write_file(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), sort_keys=True) + "\n")
        os.replace(tmp, path)


TXN_OPS = 100  # operations per status transaction (etcd's default limit is 128)


class StatusReporter:
    """Writes health and endpoint status to etcd from its own thread, so a slow or absent
    etcd never holds up the dataplane. `publish()` hands it the latest state."""

    def __init__(
        self, datastore: Datastore, health: Health, interval: float = 5.0, ttl: float = 30.0
    ):
        self.datastore = datastore
        self.health = health
        self.interval = interval
        self.ttl = int(max(ttl, 2 * interval + 1))
        self.node = health.node
        self._endpoints: dict[str, dict[str, Any]] = {}
        self._written: dict[str, str] = {}
        self._lease: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_ok = True  # the last write reached etcd
        self._predecessor_cleared = False  # until a report removed what an earlier agent left

    def publish(self, endpoints: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            self._endpoints = dict(endpoints)
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.report()

    def report(self, use_lease: bool = True) -> bool:
        """Write what changed (and the host status, always); False if etcd failed."""
        with self._lock:
            endpoints = dict(self._endpoints)
        try:
            lease, renewed = self._ensure_lease() if use_lease else (None, False)
            wanted = {k: json.dumps(v, sort_keys=True) for k, v in endpoints.items()}
            changed = [(k, v) for k, v in wanted.items() if renewed or self._written.get(k) != v]
            gone = [k for k in self._written if k not in wanted]
            if not self._predecessor_cleared:
                gone += self._predecessor_keys(wanted)
            self._write_batched(changed, gone, lease)
            self._predecessor_cleared = True
            record = self.health.to_dict()
            # The key is rewritten every interval: stale after a few of them.
            record["stale_after"] = stale_after_for(self.interval)
            status = json.dumps(record, sort_keys=True)
            self._put(host_status_key(self.node), status, lease)
            self.last_ok = True
            return True
        except Exception as exc:  # etcd and gRPC failures come in many types
            log.debug("status report failed: %s", exc)
            self._lease = None
            self._written.clear()
            self._predecessor_cleared = False  # what we wrote is unknown now: list it again
            self.last_ok = False
            return False

    def _ensure_lease(self) -> tuple[Any, bool]:
        """The lease to attach keys to, and whether it is a new one (keys need rewriting)."""
        if self._lease is not None:
            resp = self.datastore._call(self._lease.refresh)
            if resp and getattr(resp[0], "TTL", 0) > 0:
                return self._lease, False
        self._lease = self.datastore._call(self.datastore.client.lease, self.ttl)
        return self._lease, True

    def _put(self, key: str, value: str, lease: Any) -> None:
        self.datastore._call(self.datastore.client.put, key, value, lease=lease)

    def _write_batched(self, puts: list[tuple[str, str]], deletes: list[str], lease: Any) -> None:
        """Endpoint keys in transactions of TXN_OPS (etcd allows 128 operations in one):
        a cold start's 10,000 statuses were 10,000 round trips (seconds of a thread
        holding the GIL beside the first apply); now 100. A key counts as written once its
        transaction committed."""
        t = self.datastore.ops
        for i in range(0, len(puts), TXN_OPS):
            chunk = puts[i : i + TXN_OPS]
            self.datastore.kv_txn([], [t.put(k, v, lease=lease) for k, v in chunk])
            self._written.update(chunk)
        for i in range(0, len(deletes), TXN_OPS):
            chunk = deletes[i : i + TXN_OPS]
            self.datastore.kv_txn([], [t.delete(k) for k in chunk])
            for key in chunk:
                self._written.pop(key, None)

    def _predecessor_keys(self, wanted: dict[str, str]) -> list[str]:
        """Endpoint keys of this node that an agent before this one wrote and nobody wants
        now, deleted with the first report (in its transactions, from this thread: one by
        one from the main loop, a predecessor's 9,000 keys held the agent's first change
        back for 6.6 s)."""
        prefix = host_prefix(self.node) + "workload/"
        kvs, _ = self.datastore.kv_list(prefix)
        return [kv.key for kv in kvs if kv.key not in wanted and kv.key not in self._written]
