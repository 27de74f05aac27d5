"""Flow records, the ring with per-reader cursors, filters, and the collector's enrichment."""

from __future__ import annotations

import threading
import time

import pytest

from agent.flows.collector import FlowCollector
from agent.flows.conntrack import parse_conntrack_messages
from agent.flows.nflog import parse_nflog_messages
from agent.flows.records import (
    ALLOWED,
    DENIED,
    Dropped,
    EndpointInfo,
    FlowRecord,
    FlowRing,
)
from calico.flowfilter import FlowFilter, matches_any
from tests.unit.test_nflog_parse import CT_NEW_TCP_80, CT_NEW_UDP_5353, NFLOG_SYN_81, with_seq

WEB = EndpointInfo(
    "node1-cni-abc-eth0", network="net1", networks=("net1",), profiles=("net1",), pod="web"
)
DB = EndpointInfo(
    "node1-cni-def-eth0", network="net2", networks=("net2", "net3"), profiles=("net2",), pod="db"
)


def rec(n: int = 0, verdict: str = ALLOWED, **kw) -> FlowRecord:
    base = dict(
        time=1000.0 + n,
        verdict=verdict,
        protocol="tcp",
        src="10.0.0.2",
        dst="10.0.1.3",
        sport=40000 + n,
        dport=80,
        src_endpoint=WEB,
        dst_endpoint=DB,
    )
    base.update(kw)
    return FlowRecord(**base)


# ---------------------------------------------------------------- ring


def test_fast_reader_sees_everything_and_no_marker():
    ring = FlowRing(capacity=100)
    cursor = ring.total
    seen: list = []
    for i in range(1000):
        ring.push(rec(i))
        if i % 50 == 49:
            cursor, items = ring.read(cursor)
            seen.extend(items)
    assert not any(isinstance(i, Dropped) for i in seen)
    assert [r.sport for r in seen] == [40000 + i for i in range(1000)]


def test_slow_reader_gets_one_dropped_marker_with_the_exact_count():
    ring = FlowRing(capacity=100)
    cursor = ring.total
    ring.push_many(rec(i) for i in range(350))
    cursor, items = ring.read(cursor)
    assert items[0] == Dropped(250)
    assert [r.sport for r in items[1:]] == [40000 + i for i in range(250, 350)]
    assert cursor == 350
    cursor, items = ring.read(cursor)
    assert items == []


def test_readers_are_independent():
    ring = FlowRing(capacity=10)
    slow, fast = ring.total, ring.total
    for i in range(25):
        ring.push(rec(i))
        fast, items = ring.read(fast)
        assert len(items) == 1 and isinstance(items[0], FlowRecord)
    slow, items = ring.read(slow, max_items=4)
    assert items[0] == Dropped(15)
    assert [r.sport - 40000 for r in items[1:]] == [15, 16, 17, 18]
    assert slow == 19


def test_read_waits_for_a_push_and_close_wakes_it():
    ring = FlowRing(capacity=10)
    threading.Timer(0.05, ring.push, args=(rec(1),)).start()
    t0 = time.monotonic()
    cursor, items = ring.read(0, timeout=5)
    assert len(items) == 1 and time.monotonic() - t0 < 2
    threading.Timer(0.05, ring.close).start()
    cursor, items = ring.read(cursor, timeout=None)
    assert items == []


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        FlowRing(0)


# ---------------------------------------------------------------- filters
# (the filter itself is calico/flowfilter.py's, tested in tests/unit/test_flowfilter.py)


def test_rule_text():
    r = rec(
        1,
        verdict=DENIED,
        rule={"direction": "ingress", "kind": "policy", "name": "default/deny-81", "rule_index": 3},
    )
    assert r.rule_text == "policy default/deny-81 ingress rule 3"
    d = rec(
        1,
        verdict=DENIED,
        rule={"direction": "ingress", "kind": "default", "name": "net1", "rule_index": None},
    )
    assert d.rule_text == "default deny ingress (net1)"


def test_the_filter_matches_a_ring_record_as_it_is():
    """The ring's readers match FlowRecord objects, not their wire dicts (no dict per record
    when a filter rejects it)."""
    r = rec(1, rule={"kind": "policy", "name": "default/deny-81", "rule_index": 3})
    assert FlowFilter.from_query({"from": "pod:web", "to": "net:net3", "rule": "deny"}).matches(r)
    assert not FlowFilter.from_query({"from": "ns:default"}).matches(r)
    assert matches_any([FlowFilter(port=(9,)), FlowFilter(to=("db",))], r)


@pytest.mark.parametrize(
    "text",
    [
        "verdict:denied",
        "--verdict DROPPED --from-pod web",
        "from:net1 to:10.0.1.0/24 port:81",
        "to:profile:net2 protocol:TCP --verdict drop",
        "--pod db --to-port 80",
        "endpoint:cni-abc from-port:40003,40004",
        "rule:deny-81",
        "network:net3 verdict:allowed",
    ],
)
def test_what_the_console_types_the_agent_sends(text):
    """A filter typed in the console, sent as the node API's query, selects in the ring
    exactly the records the console itself would keep of the whole stream."""
    c = collector(capacity=50)
    deny = {"direction": "ingress", "kind": "policy", "name": "default/deny-81", "rule_index": 3}
    c.ring.push_many(
        rec(i, verdict=DENIED, dport=81, rule=deny) if i % 3 == 0 else rec(i) for i in range(12)
    )
    typed = FlowFilter.parse(text)
    sent = list(c.subscribe(FlowFilter.from_query(typed.to_query())))
    kept = [item for item in c.subscribe() if typed.matches(item)]
    assert sent == kept and 0 < len(kept) < 12


def test_record_dict_and_summary():
    d = rec(1).to_dict()
    assert d["src_endpoint"]["pod"] == "web" and d["dst_endpoint"]["networks"] == ["net2", "net3"]
    assert "web" not in rec(1, src_endpoint=None).summary().split("->")[0]
    assert "ALLOWED" in rec(1).summary()


def test_endpoint_info_from_a_lookup_mapping():
    ep = EndpointInfo.coerce({"name": "e", "network": "n1", "profiles": ["n1", "n2"], "pod": "p"})
    assert ep == EndpointInfo("e", network="n1", networks=("n1",), profiles=("n1", "n2"), pod="p")
    assert EndpointInfo.coerce(None) is None


# ---------------------------------------------------------------- collector (no sockets)

ENDPOINTS = {
    "10.251.0.2": {
        "name": "node-cni-1234-eth0",
        "network": "net1",
        "profiles": ["net1"],
        "pod": "client",
    }
}


def collector(**kw) -> FlowCollector:
    return FlowCollector(lookup=ENDPOINTS.get, capacity=kw.pop("capacity", 100), **kw)


def test_denied_record_from_captured_nflog():
    c = collector()
    assert c.ingest_nflog(parse_nflog_messages(NFLOG_SYN_81), received=1795813864.3) == 1
    (item,) = list(c.subscribe())
    assert item["type"] == "flow"
    assert item["verdict"] == "denied"
    assert (item["src"], item["dst"], item["dport"], item["protocol"]) == (
        "10.251.0.2",
        "10.251.0.1",
        81,
        "tcp",
    )
    assert item["src_endpoint"]["pod"] == "client" and item["dst_endpoint"] is None
    assert item["rule"] == {
        "direction": "ingress",
        "kind": "policy",
        "name": "default/deny-81",
        "rule_index": 3,
        "truncated": False,
        "name_hash": None,
    }
    assert item["direction"] == "ingress"
    assert item["time"] == pytest.approx(1795813864.222139)  # the kernel's stamp
    assert item["tcp_flags"] == ["SYN"]


def test_gaps_in_nflog_sequence_numbers_are_counted_as_lost():
    c = collector()
    for seq in (0, 1, 5, 6, 9):
        c.ingest_nflog(parse_nflog_messages(with_seq(seq)), received=1.0)
    assert c.stats()["nflog_lost"] == 3 + 2
    assert c.stats()["denied"] == 5


def test_untrusted_kernel_stamp_falls_back_to_receive_time():
    c = collector()
    c.ingest_nflog(parse_nflog_messages(NFLOG_SYN_81), received=5000.0)
    assert next(iter(c.subscribe()))["time"] == 5000.0


def test_allowed_record_from_captured_conntrack_with_resolver():
    seen = []

    def resolver(r: FlowRecord):
        seen.append(r)
        return {"kind": "profile", "name": "net1", "direction": "egress", "rule_index": 0}

    c = collector(allow_resolver=resolver)
    assert c.ingest_conntrack(parse_conntrack_messages(CT_NEW_TCP_80), received=1.0) == 1
    (item,) = list(c.subscribe())
    assert (item["verdict"], item["dport"], item["direction"]) == ("allowed", 80, "egress")
    assert item["rule_text"] == "profile net1 egress rule 0"
    assert seen[0].src_endpoint.name == "node-cni-1234-eth0"


def test_conntrack_between_unknown_addresses_is_skipped_unless_asked():
    c = FlowCollector(lookup=lambda ip: None, capacity=10)
    assert c.ingest_conntrack(parse_conntrack_messages(CT_NEW_UDP_5353), 1.0) == 0
    assert c.stats()["skipped_unknown"] == 1
    c = FlowCollector(lookup=lambda ip: None, capacity=10, keep_unknown=True)
    assert c.ingest_conntrack(parse_conntrack_messages(CT_NEW_UDP_5353), 1.0) == 1


def test_a_failing_lookup_or_resolver_does_not_lose_the_record():
    def boom(_):
        raise RuntimeError("etcd away")

    c = FlowCollector(lookup=boom, allow_resolver=boom, capacity=10, keep_unknown=True)
    assert c.ingest_conntrack(parse_conntrack_messages(CT_NEW_TCP_80), 1.0) == 1
    assert c.ingest_nflog(parse_nflog_messages(NFLOG_SYN_81), 1.0) == 1
    s = c.stats()
    assert s["lookup_errors"] == 4 and s["resolver_errors"] == 1


def test_subscribe_last_and_filters():
    c = collector(capacity=50)
    c.ring.push_many(rec(i, verdict=DENIED if i % 2 else ALLOWED) for i in range(20))
    items = list(c.subscribe(FlowFilter(verdict=(DENIED,)), last=3))
    assert [i["sport"] - 40000 for i in items] == [15, 17, 19]
    assert len(list(c.subscribe())) == 20
    assert list(c.subscribe(last=0)) == []


def test_follow_streams_new_records_then_ends_on_stop():
    c = collector(capacity=1000)
    c.ring.push(rec(0))
    sub = c.subscribe(FlowFilter(port=(81,)), follow=True, heartbeat=None)
    got: list = []

    def consume():
        got.extend(sub)

    t = threading.Thread(target=consume)
    t.start()
    c.ring.push(rec(1, dport=81))
    c.ring.push(rec(2))  # filtered out
    c.ring.push(rec(3, dport=81))
    time.sleep(0.2)
    c.stop()  # never started: closes the ring, which ends followers
    t.join(3)
    assert not t.is_alive()
    assert [i["sport"] - 40000 for i in got] == [1, 3]


def test_follow_reports_dropped_records_and_keepalives():
    c = collector(capacity=10)
    sub = c.subscribe(follow=True, heartbeat=0.1)
    assert next(sub)["type"] == "keepalive"
    c.ring.push_many(rec(i) for i in range(25))
    assert next(sub) == {"type": "dropped", "count": 15}
    assert next(sub)["sport"] == 40015
    sub.close()
    assert list(sub) == []
