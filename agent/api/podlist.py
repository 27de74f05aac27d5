"""The body of `GET /v1/pods`, built from per-pod JSON kept between requests.

At 1,000 pods the answer is ~650 kB of JSON. Encoding it with one `json.dumps` of 1,000
fresh dicts cost ~10 ms on a quiet 2-core machine (on top of reading every pod.json, which
`rkt.index.PodIndex` now avoids), against a 20 ms budget for the whole request. Most of
each item only changes when the pod's record or effective state does, so that part is
encoded once and kept, keyed by the record object `PodIndex` hands out (a new object means
the file changed) and the state. What changes by itself - ``created`` ("5 minutes ago")
and ``endpoints`` (the agent's view, with its status) - is encoded per request and
appended. The bytes are exactly `json.dumps(items, separators=(",", ":"))` of the items
`item()` builds: `tests/unit/test_podlist.py` checks it.

Pure: plain data in, text out.
"""

from __future__ import annotations

import json
from typing import Any

from rkt.format import humanize_since, pod_json
from rkt.state import PodState

_SEP = (",", ":")
_NO_ENDPOINTS = "[]"


def item(pod: PodState, state: str, now: float, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """One pod of the answer: rkt's v1 pod object (`rkt list --format=json`) plus the
    fields the console reads (uuid, app, image, humanized created, networks, endpoints)."""
    out = pod_json(pod, state)
    out.update(
        {
            "uuid": pod.uuid,
            "app": pod.app.name,
            "image": pod.app.image_name,
            "created": humanize_since(pod.created, now),
            "networks": [
                {"name": n["netName"], "ip": n.get("ip") or "", "ifName": n.get("ifName")}
                for n in out["networks"]
            ],
            "endpoints": endpoints,
        }
    )
    return out


def _stable_prefix(pod: PodState, state: str) -> str:
    """The item's JSON up to (not including) ``,"created":``: every key before it depends
    on the record and the state only (the dict keeps `item()`'s key order)."""
    fixed = item(pod, state, 0.0, [])
    del fixed["created"], fixed["endpoints"]
    return json.dumps(fixed, separators=_SEP)[:-1]


class PodListEncoder:
    """Keeps each pod's stable JSON prefix while its record and state stay the same."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[PodState, str, str]] = {}
        self.encoded = 0  # prefixes encoded so far (tests check the cache is used)

    def encode(
        self,
        pods: list[tuple[PodState, str]],
        now: float,
        endpoints: dict[str, list[dict[str, Any]]],
    ) -> str:
        """The JSON array of `item()` for each (record, effective state), in the given order."""
        old = self._cache
        new: dict[str, tuple[PodState, str, str]] = {}
        parts = []
        for pod, state in pods:
            hit = old.get(pod.uuid)
            if hit is not None and hit[0] is pod and hit[1] == state:
                prefix = hit[2]
            else:
                prefix = _stable_prefix(pod, state)
                self.encoded += 1
            new[pod.uuid] = (pod, state, prefix)
            eps = endpoints.get(pod.uuid)
            eps_json = json.dumps(eps, separators=_SEP) if eps else _NO_ENDPOINTS
            # humanize_since's words are ASCII letters, digits and spaces: no escaping needed
            created = humanize_since(pod.created, now)
            parts.append(f'{prefix},"created":"{created}","endpoints":{eps_json}}}')
        self._cache = new
        return "[" + ",".join(parts) + "]"
