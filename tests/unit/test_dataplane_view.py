"""GET /v1/dataplane as data: each kernel rule joined to the policy/profile rule it came
from (by its cali:<hash>), chains in walk order, and ?endpoint= narrowing to one endpoint's
chains, sets and routes. Pure: a save text made from the calculation, counters invented."""

from __future__ import annotations

import pytest

from agent.api.counters import chain_counters
from agent.api.dataplane import UnknownEndpoint, dataplane_view
from agent.calc.calculator import calculate
from agent.calc.model import Dataplane
from agent.calc.origin import RuleOrigin
from agent.flows.prefix import parse_prefix
from tests.unit.test_agent_calc import gnp, seed_inputs


def save_with_counters(dp: Dataplane, hand_rule: str = "") -> str:
    """What `iptables-legacy-save -c` prints after the agent programmed `dp`; the n-th rule
    counted n packets of 60 bytes, so every counter is distinct."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":{name} - [0:0]" for name in dp.chains]
    n = 0
    for chain in [*dp.hooks.values(), *dp.chains.values()]:
        for line in chain.lines():
            n += 1
            lines.append(f"[{n}:{n * 60}] {line}")
    if hand_rule:
        lines.append(f"[7:420] {hand_rule}")
    return "\n".join([*lines, "COMMIT", ""])


def with_policy():
    inputs = seed_inputs()
    inputs.policies = [
        gnp("deny-81", {"selector": "has(network1)", "types": ["Ingress"],
                        "ingress": [{"action": "Allow", "protocol": "TCP",
                                     "destination": {"ports": [80]}},
                                    {"action": "Deny", "protocol": "TCP",
                                     "destination": {"ports": [81]}}]}),
    ]  # fmt: skip
    return inputs


def test_every_rule_from_a_policy_or_profile_names_it_and_the_plumbing_names_nothing():
    dp = calculate(with_policy())
    doc = dataplane_view(dp, chain_counters(save_with_counters(dp)))
    pol = doc["chains"]["cali-pi-deny-81"]
    assert [r["origin"]["rule_index"] for r in pol] == [0, 0, 1, 1]
    assert {r["origin"]["kind"] for r in pol} == {"policy"}
    assert pol[0]["origin"] == {"kind": "policy", "name": "deny-81", "direction": "ingress",
                                "rule_index": 0}  # fmt: skip
    prof = doc["chains"]["cali-pri-network1"]
    assert prof[0]["origin"] == {"kind": "profile", "name": "network1",
                                 "direction": "ingress", "rule_index": 0}  # fmt: skip
    assert all("origin" not in r for r in doc["chains"]["cali-FORWARD"])
    assert all("origin" not in r for r in doc["chains"]["cali-from-wl-dispatch"])
    # counters are the kernel's, untouched
    assert all(r["packets"] * 60 == r["bytes"] > 0 for rules in doc["chains"].values()
               for r in rules)  # fmt: skip


def test_a_deny_rules_origin_is_what_the_flow_log_reads_from_its_nflog_prefix():
    """The flow log's `rule` (parse_prefix of the NFLOG prefix) equals the origin of both the
    NFLOG rule and the DROP after it: that is how :flows finds the rule that dropped a flow."""
    dp = calculate(with_policy())
    doc = dataplane_view(dp, chain_counters(save_with_counters(dp)))
    for rules in doc["chains"].values():
        for r in rules:
            if "--nflog-prefix" not in r["rule"]:
                continue
            prefix = r["rule"].split("--nflog-prefix ")[1].split(" --")[0].strip('"')
            parsed = parse_prefix(prefix)
            flow_rule = {k: parsed[k] for k in ("kind", "name", "direction", "rule_index")}
            assert r["origin"] == flow_rule, r
    # the program's end-of-chain drops: profiles' default deny, one per direction
    default = [r for rules in doc["chains"].values() for r in rules
               if (r.get("origin") or {}).get("kind") == "default" and r["rule"].endswith("DROP")]  # fmt: skip
    assert default and all(r["origin"]["rule_index"] is None for r in default)


def test_a_rule_edited_by_hand_shows_with_no_origin():
    dp = calculate(with_policy())
    hand = '-A cali-pi-deny-81 -p tcp -m comment --comment "cali:handmade0000000" -j ACCEPT'
    doc = dataplane_view(dp, chain_counters(save_with_counters(dp, hand)))
    last = doc["chains"]["cali-pi-deny-81"][-1]
    assert last["packets"] == 7 and "origin" not in last


def test_chains_come_in_walk_order_from_the_hooks():
    dp = calculate(with_policy())
    names = list(dataplane_view(dp, chain_counters(save_with_counters(dp)))["chains"])
    assert names[0] == "cali-FORWARD"
    assert names.index("cali-from-wl-dispatch") < names.index("cali-to-wl-dispatch")
    tw = next(n for n in names if n.startswith("cali-tw-"))
    assert names.index("cali-to-wl-dispatch") < names.index(tw)
    assert set(names) == set(dp.chains)  # nothing the kernel holds is left out


def test_one_endpoint_narrows_to_its_chains_sets_and_routes():
    dp = calculate(with_policy())
    kernel = chain_counters(save_with_counters(dp))
    ep = next(e for e in dp.endpoints if "network1" in e.profiles)
    doc = dataplane_view(dp, kernel, ep.name)
    names = list(doc["chains"])
    assert names[:2] == [f"cali-tw-{ep.iface}", names[1]] and names[1].startswith("cali-tp-")
    assert f"cali-fw-{ep.iface}" in names
    assert {"cali-pi-deny-81", "cali-pri-network1", "cali-pro-network1"} <= set(names)
    assert not any(n.startswith(("cali-tw-", "cali-fw-")) and ep.iface not in n for n in names)
    assert "cali-pri-network2" not in names and "cali-FORWARD" not in names
    # the profile's has(network1) set, with its members
    (sel,) = doc["ipsets"]
    assert ep.nets[0].removesuffix("/32") in doc["ipsets"][sel]["members"]
    assert doc["routes"] == [{"dst": ep.nets[0], "kind": "unicast", "dev": ep.iface,
                              "via": None}]  # fmt: skip
    assert doc["endpoint"]["interface"] == ep.iface
    assert doc["endpoint"]["ingressPolicies"] == ["deny-81"]
    # the interface names it too
    assert list(dataplane_view(dp, kernel, ep.iface)["chains"]) == names


def test_an_unknown_endpoint_is_an_error():
    dp = calculate(seed_inputs())
    with pytest.raises(UnknownEndpoint, match="no endpoint 'nope'"):
        dataplane_view(dp, {}, "nope")


def test_an_origin_is_checked_and_spelled_as_the_flow_log_spells_it():
    assert RuleOrigin("pro", "network1", "Ingress", 0).to_dict()["direction"] == "ingress"
    assert RuleOrigin("pol", "a", "egress").nflog_prefix() == "D|E|pol|a|-"
    with pytest.raises(ValueError):
        RuleOrigin("policy", "a", "ingress")
