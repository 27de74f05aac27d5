"""Flows as people query them, the pure part: negation (`--not`, `!`), the time window
(`since`/`until`), their round trip through the node API's query, and aggregation
(calico/flowagg.py), which the console and `calicoctl flows` share."""

from __future__ import annotations

import datetime
import time

import pytest

from calico.flowagg import aggregate, end_text, group_key
from calico.flowfilter import FlowFilter, QueryError, parse_duration, parse_time
from calico.flowwords import ALLOWED, DENIED

NOW = 1_800_000_000.0


def rec(t: float, verdict: str = ALLOWED, src: str = "10.0.0.2", dst: str = "10.0.1.3",
        dport: int | None = 80, sport: int | None = 40000, protocol: str = "tcp",
        **kw) -> dict:  # fmt: skip
    return {"type": "flow", "time": t, "verdict": verdict, "protocol": protocol, "src": src,
            "dst": dst, "sport": sport, "dport": dport, "src_endpoint": None,
            "dst_endpoint": None, "rule": None, "rule_text": None, **kw}  # fmt: skip


# ---------------------------------------------------------------- negation


def test_not_negates_only_the_next_filter():
    f = FlowFilter.parse("--not --verdict ALLOWED --to-port 81")
    assert f.verdict == () and f.to_port == (81,)
    assert f.exclude == (FlowFilter(verdict=(ALLOWED,)),)
    assert f.matches(rec(1, DENIED, dport=81))
    assert not f.matches(rec(1, ALLOWED, dport=81))  # negated
    assert not f.matches(rec(1, DENIED, dport=80))  # the positive part still applies


def test_each_negated_term_hides_what_it_matches():
    """`--not A --not B` keeps what is neither A nor B (values of one field OR'ed)."""
    f = FlowFilter.parse("--not --verdict allowed --not --to-port 53,80")
    kept = [r["dport"] for r in (rec(1, DENIED, dport=p) for p in (53, 80, 81)) if f.matches(r)]
    assert kept == [81]
    assert not f.matches(rec(1, ALLOWED, dport=81))


def test_bang_is_the_same_negation_as_not():
    assert FlowFilter.parse("!verdict:denied !from:ip:10.0.0.2") == FlowFilter.parse(
        "--not --verdict denied --not --from-ip 10.0.0.2"
    )
    f = FlowFilter.parse("!deny")  # a negated bare word: not in the row
    assert f.exclude == (FlowFilter(words=("deny",)),)


@pytest.mark.parametrize(
    "text, error",
    [
        ("--not", "--not needs a filter after it"),
        ("--verdict denied --not", "--not needs a filter after it"),
        ("--not --not --verdict denied", "negate a filter once"),
        ("--not --since 5m", "not negated"),
        ("--not --bogus 1", "unknown filter 'bogus'"),
    ],
)
def test_a_negation_that_means_nothing_is_an_error(text, error):
    with pytest.raises(QueryError, match=error):
        FlowFilter.parse(text)


def test_negation_goes_to_the_agent_and_comes_back_the_same():
    typed = FlowFilter.parse("--not --verdict ALLOWED --not --from-pod web port:80", now=NOW)
    query = typed.to_query()
    assert query == {"port": "80", "not-verdict": "allowed", "not-from": "pod:web"}
    assert FlowFilter.from_query(query) == typed
    assert FlowFilter.from_query({k: [v] for k, v in query.items()}) == typed


def test_negated_view_fields_stay_with_the_console():
    """The agent cannot tell a node or a row's words: their negations are not sent (it
    sends more, never less), and the console applies the whole filter to what comes back."""
    typed = FlowFilter.parse("!node:calico-02 !deny --not --verdict allowed")
    assert typed.to_query() == {"not-verdict": "allowed"}
    assert FlowFilter.from_query(typed.to_query()) == typed.for_agent()


def test_the_node_api_refuses_a_negation_it_cannot_apply():
    for bad in ("not-since", "not-node", "not-colour"):
        with pytest.raises(QueryError, match=bad):
            FlowFilter.from_query({bad: "x"})


# ---------------------------------------------------------------- the time window


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25), ("5", None),
     ("m", None), ("", None), ("5x", None)],
)  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_times_as_hubble_takes_them():
    assert parse_time("5m", now=NOW) == NOW - 300
    assert parse_time("now", now=NOW) == NOW
    assert parse_time("1800000123.5", now=NOW) == 1800000123.5  # the node API's own form
    assert parse_time("2027-01-15T08:00:00Z") == 1_800_000_000.0
    stamp = datetime.datetime.fromtimestamp(NOW).replace(hour=7, minute=5, second=0)
    assert parse_time("07:05", now=NOW) == stamp.timestamp()  # today, local: the TIME column
    assert parse_time("07:05:30.5", now=NOW) == stamp.timestamp() + 30.5


@pytest.mark.parametrize("text", ["300", "yesterday", "25:00", "5 minutes"])
def test_a_time_that_is_not_one_says_what_would_be(text):
    with pytest.raises(QueryError, match="time"):
        parse_time(text, now=NOW)


def test_the_window_keeps_flows_inside_it_inclusive():
    f = FlowFilter.parse("since:10m until:1m", now=NOW)
    assert (f.since, f.until) == (NOW - 600, NOW - 60)
    times = [NOW - 900, NOW - 600, NOW - 300, NOW - 60, NOW - 5]
    assert [t for t in times if f.matches(rec(t))] == [NOW - 600, NOW - 300, NOW - 60]
    assert not f.matches({**rec(0), "time": None})  # no time: not inside any window


def test_the_window_is_resolved_once_and_travels_as_unix_times():
    """Every node gets the same absolute window, whatever its clock says `now` is."""
    typed = FlowFilter.parse("--since 5m --verdict denied", now=NOW)
    query = typed.to_query()
    assert query == {"verdict": "denied", "since": repr(NOW - 300)}
    assert FlowFilter.from_query(query, now=NOW + 3600) == typed
    assert not typed.is_empty() and not FlowFilter(until=NOW).is_empty()


def test_window_errors():
    with pytest.raises(QueryError, match="one time"):
        FlowFilter.parse("since:5m since:1m")
    with pytest.raises(QueryError, match="since: time '300'"):
        FlowFilter.from_query({"since": "300"})


def test_the_window_in_words(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert FlowFilter.parse("since:10m", now=NOW).window_text(NOW) == "since 07:50:00"
        both = FlowFilter.parse("since:10m until:07:59", now=NOW)
        assert both.window_text(NOW) == "07:50:00 → 07:59:00"
        assert FlowFilter(until=NOW - 86400).window_text(NOW) == "until 2027-01-14 08:00:00"
        assert FlowFilter().window_text(NOW) == ""
    finally:
        monkeypatch.undo()
        time.tzset()


# ---------------------------------------------------------------- aggregation


def test_groups_by_source_destination_port_and_verdict():
    records = [
        ("calico-01", rec(10, sport=40001)),
        ("calico-02", rec(11, sport=40001)),  # the same connection seen by the other node
        ("calico-01", rec(12, sport=40002)),
        ("calico-01", rec(13, DENIED, dport=81, sport=40003)),
        ("calico-01", rec(14, DENIED, dport=81, sport=40003)),  # a retried SYN
        ("calico-01", rec(15, src="10.0.0.9")),
        ("calico-01", rec(16, protocol="udp")),
    ]
    groups = aggregate(records)
    by_key = {g.key: g for g in groups}
    web = by_key[("10.0.0.2", "10.0.1.3", "tcp", 80, ALLOWED)]
    assert (web.count, web.connections, web.first, web.last) == (3, 2, 10, 12)
    assert web.nodes == {"calico-01", "calico-02"}
    denied = by_key[("10.0.0.2", "10.0.1.3", "tcp", 81, DENIED)]
    assert (denied.count, denied.connections) == (2, 1)
    assert len(groups) == 4  # the other source and UDP are groups of their own
    assert [g.last for g in groups] == [16, 15, 14, 12]  # newest-seen first


def test_a_group_carries_its_newest_record_and_item():
    class Entry:  # the console's FlowEntry shape: node + record
        def __init__(self, node, record):
            self.node, self.record = node, record

    older = Entry("calico-01", rec(5, DENIED, dport=81, rule_text="default deny ingress (n1)"))
    newer = Entry("calico-02", rec(9, DENIED, dport=81, rule_text="profile n1 ingress end"))
    (group,) = aggregate([newer, older])  # order does not matter
    assert group.latest is newer and group.rule_text() == "profile n1 ingress end"
    assert (group.first, group.last) == (5, 9)
    assert group.to_dict() == {
        "type": "group", "src": "10.0.0.2", "dst": "10.0.1.3", "protocol": "tcp",
        "dport": 81, "verdict": DENIED, "count": 2, "connections": 1, "first_seen": 5.0,
        "last_seen": 9.0, "nodes": ["calico-01", "calico-02"], "src_endpoint": None,
        "dst_endpoint": None, "rule_text": "profile n1 ingress end",
    }  # fmt: skip


def test_icmp_and_other_wire_items():
    ping = rec(1, protocol="icmp", dport=None, sport=None)
    groups = aggregate([ping, {**ping, "time": 2}, {"type": "dropped", "count": 3},
                        {"type": "keepalive", "time": 3}])  # fmt: skip
    assert [(g.dport, g.count, g.connections) for g in groups] == [(None, 2, 1)]
    assert groups[0].destination_text() == "10.0.1.3/ICMP"
    assert group_key(ping) == ("10.0.0.2", "10.0.1.3", "icmp", None, ALLOWED)


def test_a_group_reads_like_a_flow_row():
    ep = {"name": "wep", "network": "network1"}
    (g,) = aggregate([rec(1, src_endpoint={"name": "x", "network": "network2"}, dst_endpoint=ep)])
    assert g.source_text() == "10.0.0.2 network2"
    assert g.destination_text() == "10.0.1.3:80/TCP network1"
    assert end_text("10.0.0.2", 40000, None) == "10.0.0.2:40000"


def test_aggregation_after_the_filter():
    """What the console and calicoctl do: filter, then group what is left."""
    f = FlowFilter.parse("--not --verdict allowed since:1m", now=NOW)
    records = [rec(NOW - 120, DENIED), rec(NOW - 30, DENIED), rec(NOW - 20), rec(NOW - 10, DENIED)]
    (group,) = aggregate(r for r in records if f.matches(r))
    assert (group.verdict, group.count, group.first) == (DENIED, 2, NOW - 30)
