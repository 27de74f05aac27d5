"""An allowed flow names the rule the reporting node applied: egress on the source's node,
ingress on the destination's."""

from types import SimpleNamespace

from agent.flows.enrich import agent_allow_resolver
from tests.unit.console.fixtures import seed_state


def resolver_on(node):
    cache = SimpleNamespace(revision=1, resources=seed_state().resources)
    return agent_allow_resolver(SimpleNamespace(cache=cache, nodename=node))


def test_source_node_names_its_egress_rule_destination_node_its_ingress_verdict():
    # network2 pod on calico-02 -> network1 pod on calico-01, port 81 (the policy opens 80)
    rec = SimpleNamespace(src="192.168.0.66", dst="192.168.0.1", protocol="tcp", dport=81)
    assert resolver_on("calico-02")(rec) == "profile network2 egress rule 0 (Allow)"
    assert resolver_on("calico-01")(rec).startswith("no rule matched: default deny")


def test_ingress_is_named_when_both_ends_are_local():
    rec = SimpleNamespace(src="192.168.0.65", dst="192.168.0.66", protocol="tcp", dport=80)
    assert resolver_on("calico-02")(rec) == "no rule matched: default deny (after profile network2)"
    same = SimpleNamespace(src="192.168.0.66", dst="192.168.0.66", protocol="tcp", dport=80)
    assert "ingress" in resolver_on("calico-02")(same)


def test_a_node_that_enforces_neither_end_names_nothing():
    rec = SimpleNamespace(src="192.168.0.66", dst="192.168.0.65", protocol="tcp", dport=80)
    assert resolver_on("calico-01")(rec) is None
