"""`calicoctl flows`, the parts that decide: hubble's flags as the one flow filter (order
matters for --not), how much history to print, the merge of every node's answer by time,
and the lines it prints. The command against real agents: tests/integration/test_flows_queries.py."""

from __future__ import annotations

import pytest

from calico.flowfilter import FlowFilter
from calico.flowwords import ALLOWED, DENIED
from calicoctl.cli import build_parser
from calicoctl.context import CliError
from calicoctl.flows_commands import backlog_size, filter_of, flow_cells, merge

NOW = 1_800_000_000.0


def flags(*argv: str):
    return build_parser().parse_args(["flows", *argv])


def test_hubble_flags_make_the_consoles_filter_and_not_negates_the_next_one():
    a = flags("--verdict", "DROPPED", "--not", "--to-port", "53", "--from-pod", "6876aae5",
              "--since", "5m", "-f")  # fmt: skip
    f = filter_of(a.terms, NOW)
    assert f == FlowFilter(verdict=(DENIED,), from_=("pod:6876aae5",), since=NOW - 300,
                           exclude=(FlowFilter(to_port=(53,)),))  # fmt: skip
    assert a.follow and f.to_query() == {"verdict": "denied", "from": "pod:6876aae5",
                                         "since": repr(NOW - 300), "not-to-port": "53"}  # fmt: skip
    # the order is what --not applies to: the same flags, --not moved, another filter
    b = filter_of(flags("--not", "--verdict", "DROPPED", "--to-port", "53").terms, NOW)
    assert b == FlowFilter(to_port=(53,), exclude=(FlowFilter(verdict=(DENIED,)),))


@pytest.mark.parametrize(
    "argv, want",
    [
        (("--to-ip", "10.0.0.0/8", "--network", "n1"), FlowFilter(to=("ip:10.0.0.0/8",), network=("n1",))),
        (("--from-network", "n2", "--ip", "10.0.0.1"), FlowFilter(from_=("network:n2",), endpoint=("ip:10.0.0.1",))),
        (("--to-pod", "ab", "--pod", "cd", "--port", "80"), FlowFilter(to=("pod:ab",), endpoint=("pod:cd",), port=(80,))),
        (("--verdict", "ALLOWED", "--protocol", "UDP"), FlowFilter(verdict=(ALLOWED,), protocol=("udp",))),
        ((), FlowFilter()),
    ],
)  # fmt: skip
def test_each_flag(argv, want):
    assert filter_of(flags(*argv).terms, NOW) == want


@pytest.mark.parametrize(
    "argv, error",
    [
        (("--not",), "--not needs a filter after it"),
        (("--verdict", "maybe"), "verdict 'maybe'"),
        (("--since", "300"), "a duration needs a unit"),
        (("--to-port", "http"), "port 'http'"),
    ],
)
def test_a_bad_flag_is_one_line(argv, error):
    with pytest.raises(CliError, match=error) as exc:
        filter_of(flags(*argv).terms, NOW)
    assert exc.value.message.startswith("calicoctl flows: ") and "\n" not in exc.value.message


def test_how_much_history_is_printed_first():
    assert backlog_size(None, False, False, False) == 20  # hubble's default
    assert backlog_size(None, False, True, False) == 0  # following: only what comes
    assert backlog_size(None, False, False, True) is None  # a window: all of it
    assert backlog_size(None, True, True, False) is None  # --all
    assert backlog_size(5, False, True, True) == 5
    with pytest.raises(CliError, match="--last"):
        backlog_size(-1, False, False, False)


def test_nodes_answers_are_merged_by_time_and_the_newest_kept():
    answers = {
        "calico-01": [{"type": "flow", "time": 3.0}, {"type": "flow", "time": 1.0}],
        "calico-02": [{"type": "flow", "time": 2.0}, {"type": "dropped", "count": 4},
                      {"type": "flow", "time": 4.0}],
    }  # fmt: skip
    assert [(r["time"], r["node"]) for r in merge(answers, None)] == [
        (1.0, "calico-01"), (2.0, "calico-02"), (3.0, "calico-01"), (4.0, "calico-02")]  # fmt: skip
    assert [r["time"] for r in merge(answers, 2)] == [3.0, 4.0]
    assert merge(answers, 0) == []


def test_a_flow_line_reads_like_hubble(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        r = {"time": NOW + 0.123, "node": "calico-01", "src": "192.168.0.66", "sport": 40001,
             "dst": "192.168.0.100", "dport": 80, "protocol": "tcp", "verdict": DENIED,
             "src_endpoint": {"network": "network2"}, "dst_endpoint": {"network": "network1"},
             "rule_text": "profile network1 ingress end of chain"}  # fmt: skip
        assert flow_cells(r) == ["Jan 15 08:00:00.123", "calico-01", "192.168.0.66:40001 network2",
                                 "192.168.0.100:80/TCP network1", "DENIED",
                                 "profile network1 ingress end of chain"]  # fmt: skip
    finally:
        monkeypatch.undo()
        time.tzset()


def test_follow_with_an_end_or_counts_is_refused(monkeypatch):
    from calicoctl.context import Cli
    from calicoctl.flows_commands import cmd_flows

    for argv, error in (
        (("-f", "--until", "1m"), "--until"),
        (("-f", "--aggregate"), "--aggregate"),
    ):
        with pytest.raises(CliError, match=error):
            cmd_flows(Cli(flags(*argv)))
