"""agent/api/podlist.py: the GET /v1/pods body is byte for byte one json.dumps of the
items, while each pod's stable part is encoded only when its record or state changes."""

from __future__ import annotations

import json

from agent.api.podlist import PodListEncoder, item
from rkt.state import AppState, NetworkState, PodState

NOW = 10_000.0


def pods() -> list[tuple[PodState, str]]:
    a = PodState(
        uuid="aaaaaaaa-0000-4000-8000-000000000000",
        state="running",
        app=AppState("web", "registry-1.docker.io/library/busybox:latest", "sha512-ab"),
        created=NOW - 30,
        started=NOW - 29.5,
        pid=4242,
        networks=[
            NetworkState("network1", "eth0", conf_file="/etc/rkt/net.d/10-a.conf",
                         ip4="10.0.0.2", added=True),
            NetworkState("default-restricted", "eth1", ip4="172.31.0.2", added=True),
            NetworkState("never", "eth2"),
        ],
    )  # fmt: skip
    b = PodState(
        uuid="bbbbbbbb-0000-4000-8000-000000000000",
        state="exited",
        app=AppState("node", "calico/node", "sha512-cd", exit_code=2),
        created=NOW - 7200,
        net_mode="host",
    )
    c = PodState(
        uuid="cccccccc-0000-4000-8000-000000000000",
        state="garbage",
        app=AppState("é-app", "img\u2603", "sha512-ef"),
        created=NOW + 3,  # a clock that went back: "3 seconds from now"
        networks=[NetworkState("network1", "eth0", ip4="10.0.0.9", added=True)],
    )
    return [(a, "running"), (b, "exited"), (c, "garbage")]


ENDPOINTS = {
    "aaaaaaaa-0000-4000-8000-000000000000": [
        {"name": "n-rkt-aaaa-eth0", "interface": "cali1234", "ipNetworks": ["10.0.0.2/32"],
         "profiles": ["network1"], "status": "up"}
    ]
}  # fmt: skip


def reference(listed, now, endpoints) -> str:
    items = [item(p, s, now, endpoints.get(p.uuid, [])) for p, s in listed]
    return json.dumps(items, separators=(",", ":"))


def test_the_body_is_exactly_one_dumps_of_the_items():
    listed = pods()
    enc = PodListEncoder()
    assert enc.encode(listed, NOW, ENDPOINTS) == reference(listed, NOW, ENDPOINTS)
    assert enc.encode([], NOW, ENDPOINTS) == "[]"
    got = json.loads(enc.encode(listed, NOW, ENDPOINTS))
    assert got[0]["networks"] == [
        {"name": "network1", "ip": "10.0.0.2", "ifName": "eth0"},
        {"name": "default-restricted", "ip": "172.31.0.2", "ifName": "eth1"},
    ]
    assert got[0]["endpoints"][0]["status"] == "up" and got[1]["endpoints"] == []
    assert [g["created"] for g in got] == ["30 seconds ago", "2 hours ago", "3 seconds from now"]
    assert got[2]["networks"] == []  # garbage: networks torn down, as rkt list shows


def test_stable_parts_are_encoded_once_and_the_rest_every_time():
    listed = pods()
    enc = PodListEncoder()
    enc.encode(listed, NOW, {})
    assert enc.encoded == 3
    later = NOW + 120
    body = enc.encode(listed, later, ENDPOINTS)
    assert enc.encoded == 3  # nothing re-encoded ...
    assert body == reference(listed, later, ENDPOINTS)  # ... yet age and endpoints are fresh
    # a new record object (the file changed) or a new effective state: encoded again
    a, _ = listed[0]
    fresh = PodState.from_dict(json.loads(json.dumps(a, default=vars)))
    fresh.app.exit_code = 137
    changed = [(fresh, "exited"), listed[1], (listed[2][0], "garbage")]
    assert enc.encode(changed, later, {}) == reference(changed, later, {})
    assert enc.encoded == 4
    # a pod that left the list is forgotten
    enc.encode(changed[1:], later, {})
    assert "aaaaaaaa-0000-4000-8000-000000000000" not in enc._cache
