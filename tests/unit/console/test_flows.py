"""Live flows as data: hubble-style queries, the bounded store, rates, and a follower that
outlives its node."""

from __future__ import annotations

import threading
import time

import pytest

from calico.flowfilter import FlowFilter
from console.flows import HOST, FlowStore, Rates
from console.flowstream import FlowFollower


def rec(verdict="allowed", src="192.168.0.65", dst="192.168.0.100", dport=80, t=100.0,
        src_net="network1", dst_net="network1", pod="6876aae5-1111"):  # fmt: skip
    def ep(net, p):
        if not net:
            return None
        return {"name": f"calico--01-cni-{p}-eth0", "network": net, "networks": [net],
                "profiles": [net], "pod": p, "namespace": "default"}  # fmt: skip

    return {"type": "flow", "time": t, "verdict": verdict, "protocol": "tcp", "src": src,
            "dst": dst, "sport": 40000, "dport": dport, "src_endpoint": ep(src_net, pod),
            "dst_endpoint": ep(dst_net, "9a1b2c3d-2222"), "rule_text": "profile network1 ingress rule 0"}  # fmt: skip


def store_of(*records, node="calico-01"):
    store = FlowStore()
    store.add(node, records)
    return store


@pytest.mark.parametrize(
    "text, keeps",
    [
        ("", [True, True, True]),
        ("verdict:denied", [False, True, False]),
        ("--verdict DROPPED", [False, True, False]),
        ("verdict=allowed port:80", [True, False, False]),
        ("from:network2", [False, True, False]),
        ("--from-ip 192.168.0.66", [False, True, False]),
        ("to:192.168.0.0/24", [True, True, False]),
        ("to:ip:10.0.0.1", [False, False, True]),
        ("from:pod:6876aae5", [True, False, False]),
        ("network:network2", [False, True, False]),
        ("network:network1,network2 verdict:allowed", [True, False, False]),
        ("node:calico-01", [True, True, True]),
        ("node:calico-02", [False, False, False]),
        ("protocol:udp", [False, False, False]),
        ("deny", [False, True, False]),  # a bare word: anywhere in the row
    ],
)
def test_query_matches_like_hubble_observe(text, keeps):
    records = [
        rec(),
        rec("denied", src="192.168.0.66", dport=81, src_net="network2", pod="77e0f00d-3333"),
        rec(dst="10.0.0.1", dport=443, src_net=None, dst_net=None),
    ]
    records[1]["rule_text"] = "default deny ingress (network1)"
    store = store_of(*records)
    query = FlowFilter.parse(text)
    got = [query.matches(e) for e in store.entries]
    assert got == keeps


def test_store_keeps_the_newest_n_and_counts_markers():
    store = FlowStore(capacity=100)
    store.add("calico-01", [rec(t=100.0 + i) for i in range(250)])
    store.add("calico-01", [{"type": "dropped", "count": 7}, {"type": "keepalive"}])
    assert len(store.entries) == 100 and store.total == 250
    assert [e.record["time"] for e in store.newest_first()][:2] == [349.0, 348.0]
    assert store.dropped == {"calico-01": 7}


def test_rates_per_network_per_second():
    store = store_of(
        rec(t=1000.2), rec(t=1000.7), rec("denied", t=1001.1),
        rec(t=999.0, src_net=None, dst_net=None),
    )  # fmt: skip
    assert store.networks() == ["network1", HOST]
    allowed, denied = store.rates["network1"].series(now=1001.5)
    assert len(allowed) == 60 and allowed[-2:] == [2, 0] and denied[-2:] == [0, 1]
    r = Rates(span=10)
    r.add("allowed", 5.0)
    assert r.series(now=100.0) == ([0] * 10, [0] * 10) and not r.allowed  # old seconds go


def test_cells_show_endpoints_protocol_and_rule():
    (entry,) = store_of(rec()).entries
    t, src, dst, verdict, rule, node = entry.cells
    assert src == "192.168.0.65:40000 network1"
    assert dst == "192.168.0.100:80/TCP network1"
    assert (verdict, rule, node) == ("ALLOWED", "profile network1 ingress rule 0", "calico-01")


def test_follower_reports_an_absent_node_and_stops_at_once(tmp_path):
    statuses: list[tuple[str, bool, str]] = []
    follower = FlowFollower(
        "calico-09", f"unix://{tmp_path}/gone.sock", lambda n, i: None,
        lambda n, ok, err: statuses.append((n, ok, err)), retry=0.05,
    )  # fmt: skip
    thread = threading.Thread(target=follower.run)
    thread.start()
    deadline = time.monotonic() + 5
    while len(statuses) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    follower.stop()
    thread.join(2)
    assert not thread.is_alive()
    assert statuses and statuses[0][:2] == ("calico-09", False) and statuses[0][2]


def test_follower_skips_history_it_has_already_seen(tmp_path):
    import json
    import os
    import socket

    path = str(tmp_path / "agent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    lines = [rec(t=10.0), rec(t=11.0), rec(t=12.0), {"type": "keepalive"}, rec(t=11.5)]

    def serve():
        conn, _ = server.accept()
        conn.recv(65536)
        body = "".join(json.dumps(x) + "\n" for x in lines)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                     b"Connection: close\r\n\r\n" + body.encode())  # fmt: skip
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    got: list[dict] = []
    follower = FlowFollower("n", f"unix://{path}", lambda n, i: got.append(i),
                            lambda n, ok, err: follower.stopped.set() if not ok else None,
                            since=11.0)  # fmt: skip
    follower.run()
    server.close()
    os.unlink(path)
    # 10 and 11 were seen before (replayed history); 11.5 after a newer one is new
    assert [x.get("time") for x in got] == [12.0, None, 11.5]


def test_a_networks_counts_given_before_or_after_its_labels_exist_are_not_an_error():
    """`:flows` refreshes every second: counts that reach a network's line while it is
    still mounting are shown once it is, and counts that reach it after the screen took it
    away are kept, not a crash (CI saw NoMatches on '.rates-count')."""
    import asyncio

    from textual.app import App

    from console.screens.flows import NetworkRates

    async def run() -> None:
        app = App()
        async with app.run_test() as pilot:
            line = NetworkRates("net1")
            line.show([1, 2], [3])  # not mounted yet
            await app.mount(line)
            await pilot.pause()
            assert "3 ✔" in str(line.query_one(".rates-count").render())
            await line.remove()
            line.show([5], [0])  # gone with its labels
            assert line.series == ([5], [0])

    asyncio.run(run())
