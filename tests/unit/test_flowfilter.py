"""The one flow filter (calico/flowfilter.py): the node API's query, the console's text, the
round trip between them, and matching a record in either of its shapes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from calico.flowfilter import FIELDS, FlowFilter, QueryError, match_end, matches_any
from calico.flowwords import ALLOWED, DENIED

WEB = {"name": "node1-cni-abc-eth0", "network": "net1", "networks": ["net1"],
       "profiles": ["net1"], "pod": "web", "namespace": "default"}  # fmt: skip
DB = {"name": "node1-cni-def-eth0", "network": "net2", "networks": ["net2", "net3"],
      "profiles": ["net2"], "pod": "db", "namespace": "shop"}  # fmt: skip


BASE = {"protocol": "tcp", "src": "10.0.0.2", "dst": "10.0.1.3", "dport": 80,
        "src_endpoint": WEB, "dst_endpoint": DB, "rule": None, "rule_text": None}  # fmt: skip


def record(n: int = 0, verdict: str = ALLOWED, **kw) -> dict:
    """A record in FlowRecord.to_dict's shape (the n-th: its time and source port)."""
    return {**BASE, "time": 1000.0 + n, "sport": 40000 + n, "verdict": verdict, **kw}


def as_attributes(d: dict) -> SimpleNamespace:
    """The same record as an object with attributes, the way the agent's ring holds it."""
    ends = {k: SimpleNamespace(**d[k]) if d[k] else None for k in ("src_endpoint", "dst_endpoint")}
    return SimpleNamespace(**{**d, **ends})


@pytest.fixture(params=["wire dict", "attributes"])
def rec(request):
    """Every matching test runs on both shapes of a record: they must agree."""
    if request.param == "wire dict":
        return record
    return lambda *a, **kw: as_attributes(record(*a, **kw))


# ---------------------------------------------------------------- the node API's query


def test_filters_by_verdict_port_and_protocol(rec):
    allowed, denied = rec(1), rec(2, verdict=DENIED, dport=81)
    assert FlowFilter.from_query({"verdict": "denied"}).matches(denied)
    assert not FlowFilter.from_query({"verdict": "denied"}).matches(allowed)
    assert FlowFilter.from_query({"verdict": "DROPPED"}).matches(denied)  # hubble's word
    assert FlowFilter.from_query({"port": "81"}).matches(denied)
    assert FlowFilter.from_query({"port": "40002"}).matches(denied)  # either side, as hubble
    assert not FlowFilter.from_query({"to-port": "40002"}).matches(denied)
    assert FlowFilter.from_query({"port": ["22", "80"]}).matches(allowed)
    assert not FlowFilter.from_query({"protocol": "udp"}).matches(allowed)


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"from": "web"}, True),
        ({"from": "pod:web"}, True),
        ({"from": "db"}, False),
        ({"to": "db"}, True),
        ({"from": "node1-cni-abc-eth0"}, True),
        ({"from": "10.0.0.2"}, True),
        ({"from": "10.0.0.0/24"}, True),
        ({"from": "10.0.1.0/24"}, False),
        ({"from": "net1"}, True),
        ({"from": "net:net1"}, True),
        ({"from": "ip:net1"}, False),
        ({"to": "net3"}, True),
        ({"to": "profile:net2"}, True),
        ({"network": "net3"}, True),
        ({"network": "net9"}, False),
        ({"endpoint": "db"}, True),
        ({"from": "web", "to": "web"}, False),  # fields AND
        ({"from": "web,db"}, True),  # values OR
        ({"rule": "deny-81"}, False),
    ],
)
def test_filters_by_endpoint_network_address(rec, query, expected):
    assert FlowFilter.from_query(query).matches(rec(1)) is expected


def test_unknown_endpoint_matches_only_by_address(rec):
    r = rec(1, src_endpoint=None)
    assert FlowFilter.from_query({"from": "10.0.0.2"}).matches(r)
    assert not FlowFilter.from_query({"from": "web"}).matches(r)


def test_rule_filter(rec):
    r = rec(
        1,
        verdict=DENIED,
        rule={"direction": "ingress", "kind": "policy", "name": "default/deny-81", "rule_index": 3},
        rule_text="policy default/deny-81 ingress rule 3",
    )
    assert FlowFilter.from_query({"rule": "deny-81"}).matches(r)
    assert FlowFilter.from_query({"rule": "ingress rule 3"}).matches(r)  # or the rule's text


@pytest.mark.parametrize("query", [{"verdict": "maybe"}, {"port": "http"}, {"to-port": "70000"}])
def test_bad_filter_values_say_what(query):
    with pytest.raises(ValueError, match=next(iter(query))):
        FlowFilter.from_query(query)


def test_several_filters_are_alternatives(rec):
    r = rec(1)
    assert matches_any([FlowFilter(port=(9,)), FlowFilter(to=("db",))], r)
    assert not matches_any([FlowFilter(port=(9,))], r)
    assert matches_any(None, r) and matches_any([], r)


def test_the_query_takes_the_console_term_kinds_too(rec):
    """What the console's matcher knew (namespaces, uuid prefixes, name substrings) the agent
    now knows, so a console filter sent to the agent means the same there."""
    r = rec(1)
    assert FlowFilter.from_query({"from": "ns:default"}).matches(r)
    assert not FlowFilter.from_query({"to": "ns:default"}).matches(r)
    assert FlowFilter.from_query({"to": "pod:d"}).matches(r)  # a pod uuid's prefix
    assert FlowFilter.from_query({"endpoint": "ep:cni-def"}).matches(r)
    assert FlowFilter.from_query({"from": "profile:net1"}).matches(r)
    assert FlowFilter.from_query({"from_": "endpoint:node1-cni-abc"}).matches(r)  # long kinds


def test_an_ipv6_address_is_a_bare_term():
    assert match_end("fd00::2", "fd00:0::2", None)
    assert match_end("ip:fd00::/64", "fd00::2", None)
    assert not match_end("ip:fd00::3", "fd00::2", None)


# ---------------------------------------------------------------- the console's text


@pytest.mark.parametrize(
    "text, error",
    [
        ("verdict:maybe", "allowed or denied"),
        ("port:http", "1-65535"),
        ("--colour red", "unknown filter"),
        ("--verdict", "needs a value"),
        ('from:"unclosed', "quotation"),
    ],
)
def test_bad_queries_say_what_is_wrong(text, error):
    with pytest.raises(QueryError, match=error):
        FlowFilter.parse(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("verdict:denied from:network2 to:192.168.0.100 port:80",
         FlowFilter(verdict=(DENIED,), from_=("network2",), to=("192.168.0.100",), port=(80,))),
        ("--verdict DROPPED --from-pod X --to-ip Y --port 80",
         FlowFilter(verdict=(DENIED,), from_=("pod:X",), to=("ip:Y",), port=(80,))),
        ("--from-namespace a --to-label b --from-endpoint c",
         FlowFilter(from_=("ns:a", "ep:c"), to=("net:b",))),
        ("verdict=allowed,denied protocol:TCP", FlowFilter(verdict=(ALLOWED, DENIED), protocol=("tcp",))),
        ("node:calico-01 Deny", FlowFilter(node=("calico-01",), words=("deny",))),
        ("colour:red", FlowFilter(words=("colour:red",))),  # not a field: a bare word
    ],
)  # fmt: skip
def test_the_console_syntax(text, expected):
    assert FlowFilter.parse(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("endpoint:db rule:deny-81", FlowFilter(endpoint=("db",), rule=("deny-81",))),
        ("from-port:40000 --to-port 80", FlowFilter(from_port=(40000,), to_port=(80,))),
        ("--pod web --ip 10.0.0.2 --namespace shop",
         FlowFilter(endpoint=("pod:web", "ip:10.0.0.2", "ns:shop"))),
    ],
)  # fmt: skip
def test_the_text_takes_the_agents_fields_too(text, expected):
    """What only the node API's query could say (either end, one side's port, the rule) can
    be typed, with hubble's either-side flags."""
    assert FlowFilter.parse(text) == expected


def test_port_zero_is_a_slip_when_typed_but_a_port_in_the_query():
    with pytest.raises(QueryError, match="1-65535"):
        FlowFilter.parse("to-port:0")
    assert FlowFilter.from_query({"to-port": "0"}).to_port == (0,)


def test_the_typed_text_is_kept_but_is_not_the_filter():
    f = FlowFilter.parse("  port:80  ")
    assert f.text == "port:80" and f == FlowFilter(port=(80,))
    assert FlowFilter().is_empty() and FlowFilter.parse("").is_empty()
    assert not FlowFilter.parse("deny").is_empty()


def test_every_field_the_text_names_is_a_field():
    names = {f.replace("-", "_") for f in FIELDS}
    assert names - set(FlowFilter.__dataclass_fields__) == {"from"}
    assert hasattr(FlowFilter(), "from_")


# ---------------------------------------------------------------- the round trip


@pytest.mark.parametrize(
    "text",
    [
        "",
        "verdict:denied from:network2 to:192.168.0.100 port:80",
        "--verdict DROPPED --from-pod 6876aae5 --to-ip 10.0.0.0/8 --port 80,443",
        "--from-namespace default to:profile:net2 protocol:UDP,tcp",
        "endpoint:db from-port:40000 to-port:81 network:net1,net3 rule:deny-81",
        "verdict=forwarded to:fd00::1 --pod web",
    ],
)
def test_text_to_query_and_back_is_the_same_filter(text):
    typed = FlowFilter.parse(text)
    query = typed.to_query()
    assert all(isinstance(v, str) and v for v in query.values())
    assert FlowFilter.from_query(query) == typed
    # as the node API receives it: every parameter a list of strings
    assert FlowFilter.from_query({k: [v] for k, v in query.items()}) == typed


def test_the_query_the_node_api_takes():
    f = FlowFilter.parse("--verdict drop --from-pod web to:net:net2 port:80,81 --to-port 9 rule:x")
    assert f.to_query() == {"verdict": "denied", "from": "pod:web", "to": "net:net2",
                            "port": "80,81", "to-port": "9", "rule": "x"}  # fmt: skip


def test_node_and_words_stay_with_the_console():
    """The agent holds only its own node's records and draws no rows: `node` and bare words
    are not sent, and the console keeps applying them to what comes back."""
    typed = FlowFilter.parse("node:calico-02 verdict:denied deny")
    assert typed.to_query() == {"verdict": "denied"}
    assert (
        FlowFilter.from_query(typed.to_query())
        == typed.for_agent()
        == FlowFilter(verdict=(DENIED,))
    )


# ---------------------------------------------------------------- the console's view


def test_node_and_words_match_the_console_view_of_a_record():
    r = record(1, verdict=DENIED)
    view = SimpleNamespace(record=r, node="calico-01", cells=("10:00", "DENIED", "calico-01"))
    assert FlowFilter.parse("node:calico-01 denied").matches(view)
    assert not FlowFilter.parse("node:calico-02").matches(view)
    assert not FlowFilter.parse("allowed").matches(view)
    # a bare record has no node and no row
    assert not FlowFilter.parse("node:calico-01").matches(r)
    assert not FlowFilter.parse("denied").matches(r)
    assert FlowFilter.parse("verdict:denied").matches(r) and FlowFilter.parse(
        "verdict:denied"
    ).matches(view)
