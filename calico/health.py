"""Reading an agent's health record honestly: fresh or stale, and why it is unhealthy.

An agent writes its health (`agent.status.Health.to_dict()`) to `--health-file`, to its
host status key in etcd and answers it at the node API's `/v1/health`. Every copy carries
`heartbeat` (when the agent's main loop last ran, UTC ISO-8601) and `stale_after` (seconds
after which a reader must stop believing it). A record that has not been refreshed in
time, or whose writer is known to be dead, reads as unhealthy whatever `healthy` says:
this module is the one place every reader (`calico-lab status`, the console) decides so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_STALE_AFTER = 15.0  # seconds, for a record that does not say (3 status intervals)


def stamp(t: float | None = None) -> str:
    """A wall-clock time as health records write it."""
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )


def parse_stamp(text: Any) -> float | None:
    """Seconds since the epoch of a stamp (with or without fractions); None if unreadable."""
    if not isinstance(text, str) or not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    fresh: bool
    age: float | None  # seconds since the record's heartbeat; None: no stamp at all
    reason: str  # "" when healthy; otherwise the first thing wrong, as a phrase
    rejected: int = 0  # resources the agent could not program (see `rejected` in the record)

    @property
    def freshness(self) -> str:
        return "fresh" if self.fresh else "stale"


def assess(
    health: dict[str, Any] | None,
    now: float | None = None,
    writer_alive: bool | None = None,
    live: bool = False,
) -> Verdict:
    """Judge one health record. `writer_alive`: whether the agent process that wrote it
    still runs (False: dead, whatever the record says; None: not known to the reader).
    `live`: the record was just answered by the agent (`/v1/health`), so its own `age`
    (measured on the agent's clock) is used, and a reader's clock skew does not matter."""
    now = time.time() if now is None else now
    if not health:
        return Verdict(False, False, None, "no health record")
    rejected = int(health.get("rejected") or 0)
    beat = parse_stamp(health.get("heartbeat")) or parse_stamp(health.get("time"))
    age = None if beat is None else max(0.0, now - beat)
    if live and isinstance(health.get("age"), int | float):
        age = float(health["age"])
    try:
        limit = float(health.get("stale_after") or DEFAULT_STALE_AFTER)
    except (TypeError, ValueError):
        limit = DEFAULT_STALE_AFTER
    fresh = age is not None and age <= limit
    if writer_alive is False:
        return Verdict(False, fresh, age, f"agent pid {health.get('pid')} is dead", rejected)
    if age is None:
        return Verdict(False, False, None, "health has no time stamp", rejected)
    if not fresh:
        return Verdict(
            False, False, age, f"health stale: {age:.0f} s old (limit {limit:.0f} s)", rejected
        )
    if not health.get("healthy"):
        if not health.get("ready"):
            why = "not ready: no complete snapshot applied yet"
        elif not health.get("in_sync"):
            why = "not in sync with etcd"
        elif not health.get("datastore_ok", True):
            why = "cannot write status to etcd"
        else:
            why = "applies failing"
        if health.get("error"):
            why += f": {health['error']}"
        return Verdict(False, True, age, why, rejected)
    return Verdict(True, True, age, "", rejected)
