"""Policy evaluation: the seed tutorial's profiles, then Calico's policy ordering rules."""

from __future__ import annotations

import timeit
from typing import Any

import pytest

from calico.policy import (
    DEFAULT_DENY,
    EGRESS,
    END_OF_TIER_DENY,
    INGRESS,
    Flow,
    PolicySet,
    applicable_policies,
    effective_labels,
    evaluate,
)
from calico.resources import (
    GlobalNetworkPolicy,
    NetworkPolicy,
    Profile,
    WorkloadEndpoint,
    load,
)
from plugin.veth import host_ifname

API = "projectcalico.org/v3"


def network_profile(name: str) -> Profile:
    """The profile the CNI plugin creates for network `name` (the tutorial's behaviour)."""
    res = load(
        {
            "apiVersion": API,
            "kind": "Profile",
            "metadata": {"name": name},
            "spec": {
                "ingress": [{"action": "Allow", "source": {"selector": f"has({name})"}}],
                "egress": [{"action": "Allow"}],
                "labelsToApply": {name: ""},
            },
        }
    )
    assert isinstance(res, Profile)
    return res


def endpoint(
    container: str,
    ip: str,
    profiles: list[str],
    *,
    node: str = "calico-01",
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> WorkloadEndpoint:
    """A WorkloadEndpoint named and labelled as the CNI plugin writes it."""
    meta_labels = {
        "projectcalico.org/namespace": namespace,
        "projectcalico.org/orchestrator": "cni",
        **(labels or {}),
    }
    spec: dict[str, Any] = {
        "orchestrator": "cni",
        "node": node,
        "containerID": container,
        "endpoint": "eth0",
        "interfaceName": host_ifname(container, "eth0"),
        "mac": "ee:ee:ee:ee:ee:ee",
        "ipNetworks": [ip if "/" in ip else f"{ip}/32"],
        "profiles": profiles,
    }
    if ports:
        spec["ports"] = ports
    res = load(
        {
            "apiVersion": API,
            "kind": "WorkloadEndpoint",
            "metadata": {
                "name": f"{node}-cni-{container}-eth0",
                "namespace": namespace,
                "labels": meta_labels,
            },
            "spec": spec,
        }
    )
    assert isinstance(res, WorkloadEndpoint)
    return res


def gnp(name: str, **spec: Any) -> GlobalNetworkPolicy:
    res = load(
        {"apiVersion": API, "kind": "GlobalNetworkPolicy", "metadata": {"name": name}, "spec": spec}
    )
    assert isinstance(res, GlobalNetworkPolicy)
    return res


def netpol(name: str, namespace: str = "default", **spec: Any) -> NetworkPolicy:
    res = load(
        {
            "apiVersion": API,
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )
    assert isinstance(res, NetworkPolicy)
    return res


# The tutorial: httpd on calico-01 in network1; probes from calico-02 in each network.
SERVER = endpoint("aaaa1111", "192.168.0.0", ["network1"])
NET1_CLIENT = endpoint("bbbb2222", "192.168.0.64", ["network1"], node="calico-02")
NET2_CLIENT = endpoint("cccc3333", "192.168.0.65", ["network2"], node="calico-02")
PROFILES = [network_profile("network1"), network_profile("network2")]


def seed(
    *policies: GlobalNetworkPolicy | NetworkPolicy, extra: list[WorkloadEndpoint] | None = None
) -> PolicySet:
    return PolicySet(
        profiles=PROFILES,
        policies=policies,
        endpoints=[SERVER, NET1_CLIENT, NET2_CLIENT, *(extra or [])],
    )


def http(src: WorkloadEndpoint | str, dst: WorkloadEndpoint | str, port: int = 80) -> Flow:
    return Flow(src, dst, "TCP", dst_port=port)


# ---------------------------------------------------------------- the seed tutorial


def test_seed_same_network_allowed_by_profile() -> None:
    verdict = evaluate(seed(), http(NET1_CLIENT, SERVER))
    assert verdict.allowed
    assert [d.direction for d in verdict.directions] == [EGRESS, INGRESS]
    ingress = verdict.directions[1]
    assert (ingress.decision.kind, ingress.decision.name, ingress.decision.rule_index) == (
        "Profile",
        "network1",
        0,
    )
    assert ingress.decision.action == "Allow"
    assert ingress.policies == [] and ingress.profiles == ["network1"]


def test_seed_other_network_denied_by_default_deny_naming_the_profile() -> None:
    verdict = evaluate(seed(), http(NET2_CLIENT, SERVER))
    assert not verdict.allowed
    egress, ingress = verdict.directions
    assert egress.allowed  # network2's profile lets its pods send anywhere
    assert egress.decision.name == "network2"
    decision = verdict.decision
    assert decision is ingress.decision
    assert decision.direction == INGRESS and decision.is_default
    assert decision.reason == DEFAULT_DENY
    assert decision.considered == ("profile network1",)
    step = ingress.steps[0]
    assert (step.kind, step.name, step.rule_index, step.matched) == (
        "Profile",
        "network1",
        0,
        False,
    )
    assert "has(network1)" in step.reason and "network2: ''" in step.reason
    # The hint says which rule would let it through and what the source lacks.
    hint = verdict.would_allow
    assert hint is not None
    assert hint.startswith("profile network1 ingress rule 0 allows from sources with has(network1)")
    assert "source has labels {network2: ''}" in hint
    text = "\n".join(verdict.explain())
    assert text.startswith("DENIED: default/calico-02-cni-cccc3333-eth0 (192.168.0.65)")
    assert "default deny (after profile network1)" in text
    assert "hint: profile network1 ingress rule 0" in text


def test_seed_reverse_direction_is_denied_too() -> None:
    # network1 pods cannot open connections to network2 pods either: network2's profile.
    verdict = evaluate(seed(), http(SERVER, NET2_CLIENT))
    assert not verdict.allowed
    assert verdict.decision is not None and verdict.decision.considered == ("profile network2",)


def test_bare_address_never_matches_a_selector_and_has_no_policy() -> None:
    verdict = evaluate(seed(), http("10.9.9.9", SERVER))
    assert not verdict.allowed
    assert [d.direction for d in verdict.directions] == [INGRESS]  # no egress side to evaluate
    assert "not a workload endpoint" in verdict.directions[0].steps[0].reason
    assert any(
        "egress: source 10.9.9.9 is not a workload endpoint" in line for line in verdict.explain()
    )
    # To the outside world: only the source's egress is Calico's business.
    out = evaluate(seed(), Flow(SERVER, "8.8.8.8", "UDP", dst_port=53))
    assert out.allowed and [d.direction for d in out.directions] == [EGRESS]
    # Neither end a workload: nothing of Calico's applies.
    assert evaluate(seed(), http("10.0.0.1", "10.0.0.2")).allowed


# ---------------------------------------------------------------- labels


def test_effective_labels_precedence() -> None:
    a = network_profile("network1")
    a.spec.labels_to_apply = {"network1": "", "role": "from-network1", "zone": "a"}
    b = network_profile("network2")
    b.spec.labels_to_apply = {"network2": "", "role": "from-network2", "colour": "blue"}
    ep = endpoint(
        "dddd4444", "192.168.0.66", ["network1", "network2", "missing"], labels={"zone": "own"}
    )
    labels = effective_labels(ep, {"network1": a, "network2": b})
    assert labels["zone"] == "own"  # the endpoint's own label wins
    assert labels["role"] == "from-network1"  # an earlier profile wins over a later one
    assert labels["colour"] == "blue" and "network1" in labels and "network2" in labels
    assert labels["projectcalico.org/namespace"] == "default"
    assert labels["projectcalico.org/orchestrator"] == "cni"


def test_implicit_labels_filled_from_metadata() -> None:
    ep = endpoint("eeee5555", "192.168.0.67", [], namespace="prod")
    ep.metadata.labels = {}
    labels = effective_labels(ep, {})
    assert labels == {
        "projectcalico.org/namespace": "prod",
        "projectcalico.org/orchestrator": "cni",
    }


def test_second_network_profile_adds_its_labels() -> None:
    # A pod on network1 and network2 gets both labels, so both networks reach it.
    both = endpoint("ffff6666", "192.168.0.68", ["network1", "network2"])
    ps = seed(extra=[both])
    assert evaluate(ps, http(NET2_CLIENT, both)).allowed  # network2 profile, second in the list
    assert evaluate(ps, http(both, SERVER)).allowed  # it has network1's label as a source


# ---------------------------------------------------------------- policy ordering


def allow_net2_http() -> GlobalNetworkPolicy:
    return gnp(
        "allow-network2-http",
        selector="has(network1)",
        ingress=[
            {
                "action": "Allow",
                "protocol": "TCP",
                "source": {"selector": "has(network2)"},
                "destination": {"ports": [80]},
            }
        ],
    )


def test_global_policy_allows_network2_on_tcp_80_only() -> None:
    ps = seed(allow_net2_http())
    ok = evaluate(ps, http(NET2_CLIENT, SERVER, 80))
    assert ok.allowed
    assert ok.decision is not None
    assert (ok.decision.kind, ok.decision.name, ok.decision.rule_index) == (
        "GlobalNetworkPolicy",
        "allow-network2-http",
        0,
    )
    assert "allowed by global policy allow-network2-http ingress rule 0 (Allow)" in "\n".join(
        ok.explain()
    )

    denied = evaluate(ps, http(NET2_CLIENT, SERVER, 81))
    assert not denied.allowed
    assert denied.decision is not None and denied.decision.reason == END_OF_TIER_DENY
    ingress = denied.directions[1]
    assert ingress.steps[0].reason == "destination port 81 not in ports [80]"
    assert (
        ingress.would_allow is not None
        and "destination port 81 not in ports [80]" in ingress.would_allow
    )


def test_applied_policy_ends_the_tier_before_profiles() -> None:
    # Calico: once a policy applies, nothing it says lets network1 in, so the profile is
    # never reached: network1 -> network1 is now denied at the end of the tier.
    ps = seed(allow_net2_http())
    verdict = evaluate(ps, http(NET1_CLIENT, SERVER))
    assert not verdict.allowed
    assert verdict.decision is not None and verdict.decision.reason == END_OF_TIER_DENY
    assert verdict.decision.considered == ("global policy allow-network2-http",)
    assert not any(s.kind == "Profile" for s in verdict.directions[1].steps)
    hint = verdict.would_allow or ""
    assert "profile network1 ingress rule 0 would allow this flow" in hint
    assert "end-of-tier deny" in hint


def test_pass_goes_to_profiles() -> None:
    # The usual fix for the end-of-tier deny above: a trailing Pass hands everything the
    # policy does not allow back to the network profiles.
    policy = allow_net2_http()
    policy.spec.order = 100
    policy.spec.ingress.append(load_rule({"action": "Pass"}))
    later = gnp("later-allow-all", order=500, selector="all()", ingress=[{"action": "Allow"}])
    ps = seed(policy, later)
    assert evaluate(ps, http(NET2_CLIENT, SERVER, 80)).allowed  # still the policy's Allow
    verdict = evaluate(ps, http(NET1_CLIENT, SERVER))
    assert verdict.allowed
    ingress = verdict.directions[1]
    assert ingress.policies == ["allow-network2-http", "later-allow-all"]
    assert ingress.decision.kind == "Profile" and ingress.decision.name == "network1"
    # The Pass skipped later-allow-all, although it applies and would allow.
    assert [(s.name, s.rule_index, s.action) for s in ingress.steps] == [
        ("allow-network2-http", 0, "Allow"),
        ("allow-network2-http", 1, "Pass"),
        ("network1", 0, "Allow"),
    ]
    assert not evaluate(ps, http(NET2_CLIENT, SERVER, 81)).allowed  # passed, then default deny


def load_rule(data: dict[str, Any]) -> Any:
    prof = load(
        {
            "apiVersion": API,
            "kind": "Profile",
            "metadata": {"name": "tmp"},
            "spec": {"ingress": [data]},
        }
    )
    assert isinstance(prof, Profile)
    return prof.spec.ingress[0]


def test_pass_skips_remaining_policies() -> None:
    first = gnp("a-pass", order=10, selector="all()", ingress=[{"action": "Pass"}])
    second = gnp("b-allow", order=20, selector="all()", ingress=[{"action": "Allow"}])
    ps = seed(first, second)
    verdict = evaluate(ps, http(NET2_CLIENT, SERVER))
    assert not verdict.allowed  # b-allow never ran; the profile denies network2
    ingress = verdict.directions[1]
    assert [s.name for s in ingress.steps] == ["a-pass", "network1"]
    assert ingress.decision.reason == DEFAULT_DENY


def test_order_then_name() -> None:
    deny = gnp("deny-all", order=100, selector="all()", ingress=[{"action": "Deny"}])
    allow = gnp("allow-all", order=50, selector="all()", ingress=[{"action": "Allow"}])
    unordered = gnp("aaa-unordered", selector="all()", ingress=[{"action": "Deny"}])
    tie_b = gnp("tie-b", order=50, selector="all()", ingress=[{"action": "Deny"}])
    ps = seed(deny, unordered, tie_b, allow)
    assert [p.name for p in applicable_policies(ps, SERVER, INGRESS)] == [
        "allow-all",
        "tie-b",
        "deny-all",
        "aaa-unordered",  # no order sorts after every ordered policy
    ]
    verdict = evaluate(ps, http(NET2_CLIENT, SERVER))
    assert verdict.allowed
    assert verdict.decision is not None and verdict.decision.name == "allow-all"

    allow.spec.order = 200  # now the deny at 50 (tie-b) comes first
    verdict = evaluate(seed(deny, unordered, tie_b, allow), http(NET1_CLIENT, SERVER))
    assert not verdict.allowed
    assert verdict.decision is not None and verdict.decision.name == "tie-b"
    assert verdict.decision.action == "Deny" and not verdict.decision.is_default


def test_deny_before_allow_in_one_policy() -> None:
    policy = gnp(
        "deny-then-allow",
        selector="has(network1)",
        ingress=[
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": [22]}},
            {"action": "Allow"},
        ],
    )
    ps = seed(policy)
    ssh = evaluate(ps, http(NET2_CLIENT, SERVER, 22))
    assert not ssh.allowed
    assert ssh.decision is not None and (ssh.decision.rule_index, ssh.decision.action) == (
        0,
        "Deny",
    )
    assert "ingress rule 0 (Deny)" in "\n".join(ssh.explain())
    web = evaluate(ps, http(NET2_CLIENT, SERVER, 80))
    assert web.allowed and web.decision is not None and web.decision.rule_index == 1


def test_log_records_and_continues() -> None:
    policy = gnp(
        "log-then-allow", selector="all()", ingress=[{"action": "Log"}, {"action": "Allow"}]
    )
    verdict = evaluate(seed(policy), http(NET2_CLIENT, SERVER))
    assert verdict.allowed
    steps = verdict.directions[1].steps
    assert [(s.rule_index, s.action, s.matched) for s in steps] == [
        (0, "Log", True),
        (1, "Allow", True),
    ]


def test_profiles_in_order_first_decision_wins() -> None:
    deny_all = load(
        {
            "apiVersion": API,
            "kind": "Profile",
            "metadata": {"name": "lockdown"},
            "spec": {"ingress": [{"action": "Deny"}], "egress": [{"action": "Allow"}]},
        }
    )
    assert isinstance(deny_all, Profile)
    first_lock = endpoint("abab0001", "192.168.0.70", ["lockdown", "network1"])
    first_net = endpoint("abab0002", "192.168.0.71", ["network1", "lockdown"])
    ps = PolicySet(profiles=[*PROFILES, deny_all], endpoints=[first_lock, first_net, NET1_CLIENT])
    assert not evaluate(ps, http(NET1_CLIENT, first_lock)).allowed
    assert evaluate(ps, http(NET1_CLIENT, first_net)).allowed


def test_missing_profile_is_reported_and_denies() -> None:
    ghost = endpoint("abab0003", "192.168.0.72", ["nowhere"])
    verdict = evaluate(seed(extra=[ghost]), http(NET1_CLIENT, ghost))
    assert not verdict.allowed
    assert verdict.directions[1].steps[0].reason == "profile does not exist"
    assert (
        verdict.directions[1].would_allow is not None
        and "no Allow rule" in verdict.directions[1].would_allow
    )


# ---------------------------------------------------------------- directions


def test_egress_policy_is_evaluated_on_the_source() -> None:
    no_egress = gnp(
        "network2-no-web",
        selector="has(network2)",
        types=["Egress"],
        egress=[
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": [80]}},
            {"action": "Allow"},
        ],
    )
    ps = seed(no_egress)
    verdict = evaluate(ps, http(NET2_CLIENT, NET2_CLIENT, 80))
    assert not verdict.allowed
    assert verdict.decision is not None and verdict.decision.direction == EGRESS
    assert verdict.directions[1].allowed  # ingress alone would have allowed it
    assert evaluate(ps, http(NET2_CLIENT, NET2_CLIENT, 8080)).allowed
    # The policy does not apply on ingress (types says Egress only).
    assert applicable_policies(ps, NET2_CLIENT, INGRESS) == []


def test_default_types_and_empty_direction() -> None:
    ingress_only = gnp("only-ingress", selector="has(network1)", ingress=[{"action": "Allow"}])
    assert ingress_only.spec.types == []
    ps = seed(ingress_only)
    # Defaulted types: Ingress only (no egress rules), so egress still goes to profiles.
    assert applicable_policies(ps, SERVER, EGRESS) == []
    both = gnp(
        "both-no-egress-rules",
        selector="has(network1)",
        types=["Ingress", "Egress"],
        ingress=[{"action": "Allow"}],
    )
    verdict = evaluate(seed(both), Flow(SERVER, "8.8.8.8", "UDP", dst_port=53))
    assert not verdict.allowed
    assert verdict.decision is not None and verdict.decision.reason == END_OF_TIER_DENY
    assert verdict.directions[0].steps[0].reason == "no egress rules"


# ---------------------------------------------------------------- rule matching


def test_nets_and_not_nets() -> None:
    policy = gnp(
        "lan-only",
        selector="has(network1)",
        ingress=[
            {"action": "Deny", "source": {"nets": ["10.0.0.0/8"], "notNets": ["10.1.0.0/16"]}},
            {"action": "Allow", "source": {"nets": ["10.0.0.0/8", "192.168.0.0/16"]}},
        ],
    )
    ps = seed(policy)
    assert not evaluate(ps, http("10.2.3.4", SERVER)).allowed  # rule 0 denies
    allowed = evaluate(ps, http("10.1.3.4", SERVER))  # notNets exempts it from rule 0
    assert allowed.allowed and allowed.decision is not None and allowed.decision.rule_index == 1
    assert "is in notNets 10.1.0.0/16" in allowed.directions[0].steps[0].reason
    assert evaluate(ps, http(NET2_CLIENT, SERVER)).allowed  # 192.168.0.65 is in the LAN
    outside = evaluate(ps, http("172.16.0.1", SERVER))
    assert not outside.allowed
    assert (
        "172.16.0.1 not in nets [10.0.0.0/8, 192.168.0.0/16]"
        in outside.directions[0].steps[1].reason
    )


def test_destination_nets_on_egress() -> None:
    policy = gnp(
        "no-metadata",
        selector="all()",
        types=["Egress"],
        egress=[{"action": "Allow", "destination": {"notNets": ["169.254.0.0/16"]}}],
    )
    ps = seed(policy)
    assert evaluate(ps, Flow(SERVER, "1.1.1.1", "TCP", dst_port=443)).allowed
    assert not evaluate(ps, Flow(SERVER, "169.254.169.254", "TCP", dst_port=80)).allowed


@pytest.mark.parametrize(
    ("port", "allowed"),
    [
        (79, False),
        (80, True),
        (8080, True),
        (8085, True),
        (8090, True),
        (8091, False),
        (8086, False),
    ],
)
def test_port_ranges_and_not_ports(port: int, allowed: bool) -> None:
    policy = gnp(
        "web-ports",
        selector="has(network1)",
        ingress=[
            {
                "action": "Allow",
                "protocol": "TCP",
                "destination": {"ports": [80, "8080:8090"], "notPorts": ["8086:8089"]},
            }
        ],
    )
    assert evaluate(seed(policy), http(NET2_CLIENT, SERVER, port)).allowed is allowed


def test_source_ports() -> None:
    policy = gnp(
        "from-dns",
        selector="has(network1)",
        ingress=[{"action": "Allow", "protocol": "UDP", "source": {"ports": [53]}}],
    )
    ps = seed(policy)
    assert evaluate(ps, Flow("10.0.0.53", SERVER, "UDP", dst_port=4000, src_port=53)).allowed
    reply = evaluate(ps, Flow("10.0.0.53", SERVER, "UDP", dst_port=4000))
    assert not reply.allowed
    assert "flow has no source port" in reply.directions[0].steps[0].reason


def test_named_ports_resolve_on_the_endpoint() -> None:
    web = endpoint(
        "abab0004",
        "192.168.0.73",
        ["network1"],
        ports=[{"name": "http", "protocol": "TCP", "port": 8000}],
    )
    policy = gnp(
        "named",
        selector="has(network1)",
        ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}],
    )
    ps = seed(policy, extra=[web])
    assert evaluate(ps, http(NET2_CLIENT, web, 8000)).allowed
    assert not evaluate(ps, http(NET2_CLIENT, web, 80)).allowed
    assert not evaluate(ps, http(NET2_CLIENT, SERVER, 8000)).allowed  # SERVER has no named ports


def test_protocol_and_not_protocol() -> None:
    policy = gnp(
        "no-udp",
        selector="has(network1)",
        ingress=[{"action": "Allow", "notProtocol": "UDP"}],
    )
    ps = seed(policy)
    assert evaluate(ps, http(NET2_CLIENT, SERVER)).allowed
    assert evaluate(ps, Flow(NET2_CLIENT, SERVER, "ICMP", icmp_type=8)).allowed
    udp = evaluate(ps, Flow(NET2_CLIENT, SERVER, 17, dst_port=53))
    assert not udp.allowed
    assert "protocol is UDP, which the rule excludes" in udp.directions[1].steps[0].reason
    tcp_only = gnp("tcp", selector="has(network1)", ingress=[{"action": "Allow", "protocol": 6}])
    wrong = evaluate(seed(tcp_only), Flow(NET2_CLIENT, SERVER, "udp", dst_port=53))
    assert wrong.directions[1].steps[0].reason == "protocol is UDP, rule wants TCP"


def test_icmp_type_and_ip_version() -> None:
    policy = gnp(
        "ping",
        selector="has(network1)",
        ingress=[
            {"action": "Allow", "ipVersion": 6},
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}},
        ],
    )
    ps = seed(policy)
    ping = evaluate(ps, Flow(NET2_CLIENT, SERVER, "ICMP", icmp_type=8))
    assert ping.allowed and ping.decision is not None and ping.decision.rule_index == 1
    assert ping.directions[1].steps[0].reason == "rule is for IPv6, flow is IPv4"
    assert not evaluate(ps, Flow(NET2_CLIENT, SERVER, "ICMP", icmp_type=0)).allowed


def test_not_selector_matches_bare_addresses() -> None:
    policy = gnp(
        "not-network2",
        selector="has(network1)",
        ingress=[{"action": "Allow", "source": {"notSelector": "has(network2)"}}],
    )
    ps = seed(policy)
    assert evaluate(ps, http("10.9.9.9", SERVER)).allowed  # no labels, so not network2
    assert evaluate(ps, http(NET1_CLIENT, SERVER)).allowed
    denied = evaluate(ps, http(NET2_CLIENT, SERVER))
    assert not denied.allowed
    assert "source matches notSelector has(network2)" in denied.directions[1].steps[0].reason


# ---------------------------------------------------------------- namespaces


def test_namespaced_policy_applies_only_in_its_namespace() -> None:
    prod_server = endpoint("abab0005", "192.168.1.10", ["network1"], namespace="prod")
    deny_prod = netpol("deny-in", namespace="prod", selector="all()", ingress=[{"action": "Deny"}])
    ps = seed(deny_prod, extra=[prod_server])
    assert applicable_policies(ps, prod_server, INGRESS) == [deny_prod]
    assert applicable_policies(ps, SERVER, INGRESS) == []
    assert not evaluate(ps, http(NET1_CLIENT, prod_server)).allowed
    assert evaluate(ps, http(NET1_CLIENT, SERVER)).allowed
    denied = evaluate(ps, http(NET1_CLIENT, prod_server))
    assert denied.decision is not None and denied.decision.name == "prod/deny-in"
    assert "policy prod/deny-in ingress rule 0 (Deny)" in "\n".join(denied.explain())


def test_namespaced_rule_selectors_see_only_their_namespace() -> None:
    prod_server = endpoint("abab0006", "192.168.1.11", ["network1"], namespace="prod")
    prod_client = endpoint("abab0007", "192.168.1.12", ["network1"], namespace="prod")
    from_net1 = netpol(
        "from-network1",
        namespace="prod",
        selector="all()",
        ingress=[{"action": "Allow", "source": {"selector": "has(network1)"}}],
    )
    ps = seed(from_net1, extra=[prod_server, prod_client])
    assert evaluate(ps, http(prod_client, prod_server)).allowed
    cross = evaluate(ps, http(NET1_CLIENT, prod_server))  # network1, but namespace default
    assert not cross.allowed
    assert "only match namespace prod" in cross.directions[1].steps[0].reason

    # A namespaceSelector widens it explicitly.
    from_net1.spec.ingress[0].source.namespace_selector = "all()"
    assert evaluate(
        seed(from_net1, extra=[prod_server, prod_client]), http(NET1_CLIENT, prod_server)
    ).allowed
    from_net1.spec.ingress[0].source.namespace_selector = 'projectcalico.org/name == "prod"'
    assert not evaluate(
        seed(from_net1, extra=[prod_server, prod_client]), http(NET1_CLIENT, prod_server)
    ).allowed


def test_global_rule_selectors_see_every_namespace() -> None:
    prod_server = endpoint("abab0008", "192.168.1.13", ["network1"], namespace="prod")
    policy = gnp(
        "from-network2",
        selector="has(network1)",
        ingress=[{"action": "Allow", "source": {"selector": "has(network2)"}}],
    )
    ps = seed(policy, extra=[prod_server])
    assert evaluate(ps, http(NET2_CLIENT, prod_server)).allowed  # default -> prod
    assert applicable_policies(ps, prod_server, INGRESS) == [policy]
    # A global policy's namespaceSelector narrows the endpoints it applies to.
    policy.spec.namespace_selector = 'projectcalico.org/name == "default"'
    ps = PolicySet(profiles=PROFILES, policies=[policy], endpoints=[prod_server, NET2_CLIENT])
    assert applicable_policies(ps, prod_server, INGRESS) == []
    custom = PolicySet(
        profiles=PROFILES,
        policies=[
            gnp(
                "labelled-ns",
                selector="all()",
                namespaceSelector='env == "prod"',
                ingress=[{"action": "Deny"}],
            )
        ],
        namespace_labels={"prod": {"env": "prod"}},
    )
    assert len(applicable_policies(custom, prod_server, INGRESS)) == 1
    assert applicable_policies(custom, SERVER, INGRESS) == []


def test_host_endpoint_only_policies_do_not_apply_to_workloads() -> None:
    untracked = gnp(
        "untracked",
        selector="all()",
        doNotTrack=True,
        applyOnForward=True,
        ingress=[{"action": "Deny"}],
    )
    assert applicable_policies(seed(untracked), SERVER, INGRESS) == []


# ---------------------------------------------------------------- plumbing


def test_from_resources_and_lookup_by_ip() -> None:
    ps = PolicySet.from_resources([*PROFILES, SERVER, NET2_CLIENT, allow_net2_http()])
    assert ps.endpoint_for_ip("192.168.0.0") is SERVER
    assert ps.endpoint_for_ip("10.10.10.10") is None
    assert ps.endpoint_for_ip("not an ip") is None
    assert [p.name for p in ps.policies] == ["allow-network2-http"]
    assert evaluate(ps, http(NET2_CLIENT, SERVER)).allowed


def test_applicable_policies_rejects_bad_direction() -> None:
    with pytest.raises(ValueError, match="Ingress or Egress"):
        applicable_policies(seed(), SERVER, "inbound")


def test_evaluate_speed_is_printed_not_asserted() -> None:
    ps = seed(allow_net2_http())
    flows = [
        http(NET2_CLIENT, SERVER, 80),
        http(NET2_CLIENT, SERVER, 81),
        http(NET1_CLIENT, NET1_CLIENT),
    ]
    n = 500
    for flow in flows:
        per = timeit.timeit(lambda flow=flow: evaluate(ps, flow), number=n) / n
        print(f"\npolicy evaluate {flow.describe()}: {per * 1e6:.1f} us")
    assert evaluate(ps, flows[0]).allowed
