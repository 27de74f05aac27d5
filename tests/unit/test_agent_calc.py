"""The agent's pure calculation: chains, ipsets, routes, names, and a cross-check of the
rendered rules against calico.policy.evaluate through a tiny iptables simulator."""

from __future__ import annotations

import ipaddress
import random

import pytest

from agent.calc import names
from agent.calc.calculator import calculate
from agent.calc.dispatch import DISPATCH_FANOUT
from agent.calc.model import Dataplane, Inputs, IptRule, Route
from calico import policy
from calico.resources import Resource
from plugin.veth import host_ifname

# ---------------------------------------------------------------- builders

API = "projectcalico.org/v3"


def seed_profile(name: str) -> Resource:
    return Resource.from_dict(
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


def wep(node, cid, ips, profiles, labels=None, namespace="default", ports=None):
    spec = {
        "node": node,
        "orchestrator": "cni",
        "containerID": cid,
        "endpoint": "eth0",
        "interfaceName": host_ifname(cid, "eth0"),
        "ipNetworks": [f"{ip}/32" for ip in ips],
        "profiles": list(profiles),
    }
    if ports:
        spec["ports"] = ports
    return Resource.from_dict(
        {
            "apiVersion": API,
            "kind": "WorkloadEndpoint",
            "metadata": {
                "name": f"{node}-cni-{cid}-eth0",
                "namespace": namespace,
                "labels": labels or {},
            },
            "spec": spec,
        }
    )


def node(name, addr):
    return Resource.from_dict(
        {
            "apiVersion": API,
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {"bgp": {"ipv4Address": f"{addr}/24"}},
        }
    )


def gnp(name, spec, kind="GlobalNetworkPolicy", namespace=None):
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return Resource.from_dict({"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec})


def cid(i: int) -> str:
    return f"ab{i:09x}" + "0123"


def seed_inputs(n_per_net: int = 2, node_name: str = "n1") -> Inputs:
    profiles = {n: seed_profile(n) for n in ("network1", "network2")}
    eps = []
    k = 0
    for n in ("n1", "n2"):
        for net in ("network1", "network2"):
            for _ in range(n_per_net):
                k += 1
                base = 0 if n == "n1" else 64
                ip = str(ipaddress.ip_address("10.65.0.0") + base + (k % 60) + 2)
                eps.append(wep(n, cid(k), [ip], [net]))
    return Inputs(
        node=node_name,
        profiles=profiles,
        policies=[],
        endpoints=eps,
        nodes={"n1": node("n1", "192.168.200.11"), "n2": node("n2", "192.168.200.12")},
        blocks={"10.65.0.0/26": "n1", "10.65.0.64/26": "n2"},
    )


def flat_rules(dp, chain_name):
    """An endpoint chain's rules with its final goto into the shared program inlined."""
    rules = list(dp.chains[chain_name].rules)
    last = rules.pop()
    assert last.match == () and last.target[0] == "-g"
    return rules + list(dp.chains[last.target[1]].rules)


# ---------------------------------------------------------------- seed tutorial


def test_seed_tutorial_chains():
    inputs = seed_inputs()
    dp = calculate(inputs)
    for name in (
        "cali-FORWARD",
        "cali-INPUT",
        "cali-OUTPUT",
        "cali-wl-to-host",
        "cali-from-wl-dispatch",
        "cali-to-wl-dispatch",
        "cali-pri-network1",
        "cali-pro-network1",
        "cali-pri-network2",
        "cali-pro-network2",
    ):
        assert name in dp.chains, name
    assert {h: c.rules[0].target for h, c in dp.hooks.items()} == {
        "INPUT": ("-j", "cali-INPUT"),
        "FORWARD": ("-j", "cali-FORWARD"),
        "OUTPUT": ("-j", "cali-OUTPUT"),
    }
    # Ingress of network1: ONE rule matching the has(network1) set, then the accept return.
    pri = dp.chains["cali-pri-network1"]
    assert len(pri.rules) == 2
    (set_name,) = [t for t in pri.rules[0].match if t.startswith("cali40s:")]
    assert pri.rules[0].match == ("-m", "set", "--match-set", set_name, "src")
    assert pri.rules[0].target == ("-j", "MARK", "--set-xmark", "0x10000/0x10000")
    assert len(set_name) <= 31
    # The set holds every network1 endpoint of the cluster, remote ones included.
    net1_ips = {
        e.spec.ip_networks[0].removesuffix("/32")
        for e in inputs.endpoints
        if e.spec.profiles == ["network1"]
    }
    assert dp.ipsets[set_name].members == net1_ips
    assert dp.ipsets[set_name].type == "hash:net"
    # Egress allow-all.
    assert dp.chains["cali-pro-network1"].rules[0].match == ()
    # Per-endpoint chains only for local endpoints, with anti-spoofing first in fw.
    local = [e for e in inputs.endpoints if e.spec.node == "n1"]
    assert len(dp.endpoints) == len(local)
    for ep in local:
        iface = ep.spec.interface_name
        fw = flat_rules(dp, f"cali-fw-{iface}")
        assert fw[0] == IptRule(("!", "-s", ep.spec.ip_networks[0]), ("-j", "DROP"))
        assert fw[1].target == ("-j", "MARK", "--set-xmark", "0x0/0x30000")
        assert fw[-1].target == ("-j", "DROP")
        tw = flat_rules(dp, f"cali-tw-{iface}")
        assert ("-j", f"cali-pri-{ep.spec.profiles[0]}") in [r.target for r in tw]
        assert tw[-1] == IptRule((), ("-j", "DROP"))
        # The endpoint's own chain is tiny; endpoints of one network share the rest.
        assert len(dp.chains[f"cali-tw-{iface}"].rules) == 1
        assert len(dp.chains[f"cali-fw-{iface}"].rules) == 2
    programs = [n for n in dp.chains if n.startswith(("cali-tp-", "cali-fp-"))]
    assert len(programs) == 4 and all(len(n) == 28 for n in programs)  # 2 networks x 2
    for remote in (e for e in inputs.endpoints if e.spec.node != "n1"):
        assert f"cali-fw-{remote.spec.interface_name}" not in dp.chains
    # Established flows of workloads are accepted before any dispatch; INVALID dropped.
    fwd = dp.chains["cali-FORWARD"].rules
    assert [(r.match[:2], r.match[-1], r.target) for r in fwd[1:5]] == [
        (("-i", "cali+"), "RELATED,ESTABLISHED", ("-j", "ACCEPT")),
        (("-o", "cali+"), "RELATED,ESTABLISHED", ("-j", "ACCEPT")),
        (("-i", "cali+"), "INVALID", ("-j", "DROP")),
        (("-o", "cali+"), "INVALID", ("-j", "DROP")),
    ]
    assert fwd[5].target == ("-j", "cali-from-wl-dispatch")
    # Host protection: workloads reach nothing on the node but replies.
    assert dp.chains["cali-wl-to-host"].rules[-1].target == ("-j", "DROP")


def test_seed_routes():
    dp = calculate(seed_inputs())
    assert dp.routes["10.65.0.0/26"] == Route("10.65.0.0/26", kind="blackhole")
    assert dp.routes["10.65.0.64/26"] == Route("10.65.0.64/26", via="192.168.200.12")
    for ep in dp.endpoints:
        assert dp.endpoint_routes[ep.nets[0]] == Route(ep.nets[0], dev=ep.iface)
    assert len(dp.endpoint_routes) == len(dp.endpoints)


def test_borrowed_address_gets_a_host_route():
    inputs = seed_inputs()
    # n2 runs a pod whose address comes from n1's block.
    inputs.endpoints = [*inputs.endpoints, wep("n2", cid(99), ["10.65.0.50"], ["network1"])]
    dp = calculate(inputs)
    assert dp.routes["10.65.0.50/32"] == Route("10.65.0.50/32", via="192.168.200.12")


def test_no_local_endpoints_still_guards_cali_interfaces():
    inputs = seed_inputs()
    dp = calculate(Inputs(node="n3", profiles=inputs.profiles, endpoints=inputs.endpoints))
    assert dp.chains["cali-from-wl-dispatch"].rules == (IptRule((), ("-j", "DROP")),)
    assert not any(n.startswith("cali-pri-") for n in dp.chains)


# ---------------------------------------------------------------- scale


def _scaled(n_endpoints: int) -> Inputs:
    profiles = {n: seed_profile(n) for n in ("network1", "network2")}
    eps = []
    for i in range(n_endpoints):
        net = ("network1", "network2")[i % 2]
        ip = str(ipaddress.ip_address("10.70.0.0") + i + 2)
        eps.append(wep("n1", f"{random.Random(i).getrandbits(56):014x}", [ip], [net]))
    pol = gnp(
        "web",
        {
            "order": 10,
            "selector": "has(network1)",
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "has(network2)"},
                    "destination": {"ports": [80, "8000:8080"]},
                },
                {"action": "Pass"},
            ],
        },
    )
    return Inputs(node="n1", profiles=profiles, policies=[pol], endpoints=eps)


def test_rule_count_grows_with_endpoints_only_in_endpoint_and_dispatch_chains():
    small, big = calculate(_scaled(10)), calculate(_scaled(1000))

    def policy_rules(dp):
        return sum(
            len(c.rules)
            for n, c in dp.chains.items()
            if n.startswith(("cali-pi-", "cali-po-", "cali-pri-", "cali-pro-"))
        )

    assert policy_rules(small) == policy_rules(big)
    assert set(small.ipsets) == set(big.ipsets)  # same selectors: same sets
    assert big.ipset_members() == 100 * small.ipset_members()
    # Endpoint chains: a constant number of rules per endpoint.
    for dp, n in ((small, 10), (big, 1000)):
        per = [len(c.rules) for name, c in dp.chains.items() if name.startswith("cali-tw-")]
        assert len(per) == n and max(per) == 1
        per = [len(c.rules) for name, c in dp.chains.items() if name.startswith("cali-fw-")]
        assert len(per) == n and max(per) == 2
        assert sum(n.startswith(("cali-tp-", "cali-fp-")) for n in dp.chains) == 4
    # Dispatch: O(endpoints) rules, and no dispatch chain is long.
    dispatch = [c for n, c in big.chains.items() if n.startswith("cali-from-wl-dispatch")]
    assert sum(len(c.rules) for c in dispatch) < 1000 * 1.5
    assert max(len(c.rules) for c in dispatch) <= DISPATCH_FANOUT + 2
    assert all(len(n) <= names.MAX_CHAIN_NAME for n in big.chains)
    per_endpoint = (big.rule_count() - small.rule_count()) / 990
    assert per_endpoint < 6  # fw + tw chains and dispatch entries: a small constant


def test_two_level_dispatch_reaches_every_endpoint():
    dp = calculate(_scaled(300))
    chains = {n: c for n, c in dp.chains.items()}
    for ep in dp.endpoints:
        # Follow -g from the root by interface name, as the kernel would.
        chain, seen = "cali-from-wl-dispatch", 0
        while not chain.startswith("cali-fw-"):
            seen += 1
            for rule in chains[chain].rules:
                pattern = rule.match[1] if rule.match else None
                if pattern and (
                    pattern == ep.iface
                    or (pattern.endswith("+") and ep.iface.startswith(pattern[:-1]))
                ):
                    chain = rule.target[1]
                    break
            else:
                pytest.fail(f"{ep.iface} falls through {chain}")
        assert chain == f"cali-fw-{ep.iface}" and seen <= 3


# ---------------------------------------------------------------- names


def test_chain_names_hash_when_too_long():
    assert names.chain_name("cali-pi-", "short") == "cali-pi-short"
    long = "a-very-long-policy-name-that-goes-on-and-on"
    name = names.chain_name("cali-pi-", long)
    assert len(name) == 28 and name.startswith("cali-pi-_")
    assert name == names.chain_name("cali-pi-", long)
    assert name != names.chain_name("cali-pi-", long + "x")
    exact = "x" * (28 - len("cali-pri-"))
    assert names.chain_name("cali-pri-", exact) == "cali-pri-" + exact


def test_ipset_names():
    a = names.ipset_name("s", "sel=has(a)")
    assert a.startswith("cali40s:") and len(a) == 31
    assert names.temp_ipset_name(a).startswith("cali4ts:") and len(names.temp_ipset_name(a)) == 31
    # Canonical selectors: two spellings, one set.
    p1 = seed_profile("x")
    p1.spec.ingress[0].source.selector = "has(a) && b == 'c'"
    p2 = seed_profile("y")
    p2.spec.ingress[0].source.selector = "b=='c'&&has(a)"
    e = wep("n1", cid(1), ["10.0.0.2"], ["x", "y"])
    dp = calculate(Inputs(node="n1", profiles={"x": p1, "y": p2}, endpoints=[e]))
    assert dp.chains["cali-pri-x"].rules[0].match == dp.chains["cali-pri-y"].rules[0].match


def test_namespaced_policy_chain_names():
    np_ = gnp("allow", {"selector": "all()"}, kind="NetworkPolicy", namespace="team")
    assert names.policy_chain(np_, "Ingress") == "cali-pi-team/allow"
    assert names.policy_chain(gnp("allow", {}), "Egress") == "cali-po-allow"


# ---------------------------------------------------------------- policy rendering


def _endpoint_targets(dp, iface, direction="Ingress"):
    return [r.target for r in flat_rules(dp, names.endpoint_chain(iface, direction))]


def test_policy_order_pass_deny_log():
    e = wep("n1", cid(1), ["10.0.0.2"], ["network1"], labels={"app": "web"})
    pols = [
        gnp("b-second", {"order": 20, "selector": "app == 'web'", "ingress": [{"action": "Deny"}]}),
        gnp("a-no-order", {"selector": "all()", "ingress": [{"action": "Allow"}]}),
        gnp(
            "z-first",
            {
                "order": 10,
                "selector": "has(app)",
                "ingress": [
                    {"action": "Log", "protocol": "TCP"},
                    {"action": "Pass", "source": {"nets": ["10.9.0.0/16"]}},
                    {"action": "Deny", "protocol": "UDP", "destination": {"ports": [53]}},
                ],
            },
        ),
        gnp("a-same-order", {"order": 20, "selector": "all()", "ingress": [{"action": "Allow"}]}),
    ]
    inputs = Inputs(
        node="n1", profiles={"network1": seed_profile("network1")}, policies=pols, endpoints=[e]
    )
    dp = calculate(inputs)
    iface = e.spec.interface_name
    jumps = [t[1] for t in _endpoint_targets(dp, iface) if t[1].startswith("cali-p")]
    # Calico's order: order ascending (no order last), then name; profiles after policies.
    assert jumps == [
        "cali-pi-z-first",
        "cali-pi-a-same-order",
        "cali-pi-b-second",
        "cali-pi-a-no-order",
        "cali-pri-network1",
    ]
    tw = flat_rules(dp, names.endpoint_chain(iface, "Ingress"))
    # Policy jumps are skipped once the pass bit is set; end-of-tier drop before profiles.
    pol_rules = [r for r in tw if r.target[-1].startswith("cali-pi-")]
    assert all(r.match == ("-m", "mark", "--mark", "0x0/0x20000") for r in pol_rules)
    drops = [i for i, r in enumerate(tw) if r.target == ("-j", "DROP")]
    prof_at = [r.target for r in tw].index(("-j", "cali-pri-network1"))
    assert tw[drops[0]].match == ("-m", "mark", "--mark", "0x0/0x20000")
    assert drops[0] < prof_at < drops[1] == len(tw) - 1

    z = dp.chains["cali-pi-z-first"].rules
    assert z[0].match == ("-p", "tcp") and z[0].target[:2] == ("-j", "LOG")
    assert z[1].match == ("-s", "10.9.0.0/16")
    assert z[1].target == ("-j", "MARK", "--set-xmark", "0x20000/0x20000")
    assert z[2] == IptRule(("-m", "mark", "--mark", "0x20000/0x20000"), ("-j", "RETURN"))
    # A Deny reports the NEW packet to the flow log (NFLOG group 1), then drops it.
    udp53 = ("-p", "udp", "-m", "multiport", "--dports", "53")
    assert z[3].match == (*udp53, "-m", "conntrack", "--ctstate", "NEW")
    assert z[3].target[:4] == ("-j", "NFLOG", "--nflog-group", "1")
    assert z[3].target[5].startswith("D|I|pol|z-first|")
    assert z[4] == IptRule(udp53, ("-j", "DROP"))
    # Egress: no policy has egress types here, so no end-of-tier drop, profiles only.
    fw_targets = _endpoint_targets(dp, iface, "Egress")
    assert ("-j", "cali-pro-network1") in fw_targets
    assert not any(t[1].startswith("cali-po-") for t in fw_targets)


def test_profile_pass_just_returns():
    p = seed_profile("p")
    p.spec.ingress = [Resource.from_dict(
        {"apiVersion": API, "kind": "Profile", "metadata": {"name": "t"},
         "spec": {"ingress": [{"action": "Pass"}]}}
    ).spec.ingress[0]]  # fmt: skip
    e = wep("n1", cid(1), ["10.0.0.2"], ["p"])
    dp = calculate(Inputs(node="n1", profiles={"p": p}, endpoints=[e]))
    assert dp.chains["cali-pri-p"].rules == (IptRule((), ("-j", "RETURN")),)


def test_ports_nets_protocols():
    rule = {
        "action": "Allow",
        "protocol": "TCP",
        "source": {"nets": ["10.1.0.0/16", "10.2.0.0/16"], "notNets": ["10.1.5.0/24"]},
        "destination": {
            "ports": list(range(1, 15)) + ["100:200", "http"],
            "notPorts": [22],
            "nets": ["10.0.0.0/8"],
        },
    }
    pol = gnp("p", {"selector": "all()", "ingress": [rule]})
    e = wep(
        "n1", cid(1), ["10.0.0.2"], [], ports=[{"name": "http", "protocol": "TCP", "port": 8080}]
    )
    dp = calculate(Inputs(node="n1", policies=[pol], endpoints=[e]))
    rules = dp.chains["cali-pi-p"].rules
    # 14 single ports + one range = 16 slots: two multiport chunks, plus the named port.
    assert len(rules) == 4 and rules[3].target == ("-j", "RETURN")
    first = rules[0].match
    assert first[:2] == ("-p", "tcp")
    assert "-d" in first and first[first.index("-d") + 1] == "10.0.0.0/8"
    assert first.count("--match-set") == 2  # source nets (2) and notNets, as sets
    assert first[first.index("--dports") - 1 : first.index("--dports") + 2] == (
        "!",
        "--dports",
        "22",
    )
    named = [s for s in dp.ipsets.values() if s.type == "hash:ip,port"]
    assert named and named[0].members == {"10.0.0.2,tcp:8080"}
    assert rules[2].match[-2:] == (named[0].name, "dst,dst")


def test_ipv6_only_rules_are_skipped():
    pol = gnp(
        "p",
        {
            "selector": "all()",
            "ingress": [
                {"action": "Deny", "ipVersion": 6},
                {"action": "Deny", "source": {"nets": ["fd00::/64"]}},
                {"action": "Allow"},
            ],
        },
    )
    e = wep("n1", cid(1), ["10.0.0.2"], [])
    dp = calculate(Inputs(node="n1", policies=[pol], endpoints=[e]))
    assert [r.target[1] for r in dp.chains["cali-pi-p"].rules] == ["MARK", "RETURN"]


def test_multiple_addresses_anti_spoofing():
    e = wep("n1", cid(1), ["10.0.0.2", "10.0.0.3"], [])
    dp = calculate(Inputs(node="n1", endpoints=[e]))
    fw = dp.chains[names.endpoint_chain(e.spec.interface_name, "Egress")].rules
    assert fw[1].match == ("-s", "10.0.0.2/32") and fw[2].match == ("-s", "10.0.0.3/32")
    assert fw[3] == IptRule(("-m", "mark", "--mark", "0x0/0x40000"), ("-j", "DROP"))


# ---------------------------------------------------------------- simulator cross-check

_PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "udplite": 136}


class Sim:
    """Just enough iptables to run what calc renders: matches, marks, -j/-g, RETURN."""

    def __init__(self, dp: Dataplane):
        self.chains = {n: c.rules for n, c in dp.chains.items()}
        self.chains.update({n: c.rules for n, c in dp.hooks.items()})
        self.sets = {n: s for n, s in dp.ipsets.items()}

    def forward(self, pkt: dict) -> bool:
        pkt = dict(pkt, mark=0)
        verdict = self.run("FORWARD", pkt, 0)
        return verdict != "DROP"  # policy ACCEPT when nothing decides

    def run(self, chain: str, pkt: dict, depth: int) -> str | None:
        assert depth < 20, "loop"
        for rule in self.chains[chain]:
            if not self.matches(rule.match, pkt):
                continue
            kind, target = rule.target[0], rule.target[1]
            if kind == "-g":
                return self.run(target, pkt, depth + 1)
            if target in ("ACCEPT", "DROP"):
                return target
            if target == "RETURN":
                return None
            if target == "MARK":
                value, mask = (int(x, 16) for x in rule.target[3].split("/"))
                pkt["mark"] = (pkt["mark"] & ~mask) ^ value
                continue
            if target in ("LOG", "NFLOG"):  # report and carry on
                continue
            verdict = self.run(target, pkt, depth + 1)
            if verdict:
                return verdict
        return None

    def in_set(self, name: str, flags: str, pkt: dict) -> bool:
        s = self.sets[name]
        side = "src" if flags.startswith("src") else "dst"
        ip = ipaddress.ip_address(pkt[side])
        if s.type == "hash:net":
            return any(ip in ipaddress.ip_network(m) for m in s.members)
        proto = {v: k for k, v in _PROTO.items()}.get(pkt["proto"])
        port = pkt["sport" if side == "src" else "dport"]
        return f"{ip},{proto}:{port}" in s.members

    def matches(self, tokens: tuple[str, ...], pkt: dict) -> bool:
        i, neg = 0, False
        while i < len(tokens):
            t = tokens[i]
            if t == "!":
                neg, i = True, i + 1
                continue
            if t == "-m":
                i += 2
                continue
            arg = tokens[i + 1]
            if t in ("-i", "-o"):
                have = pkt["iif" if t == "-i" else "oif"]
                ok = have.startswith(arg[:-1]) if arg.endswith("+") else have == arg
            elif t in ("-s", "-d"):
                ip = ipaddress.ip_address(pkt["src" if t == "-s" else "dst"])
                ok = ip in ipaddress.ip_network(arg)
            elif t == "-p":
                ok = pkt["proto"] == (_PROTO.get(arg) or int(arg))
            elif t == "--match-set":
                ok = self.in_set(arg, tokens[i + 2], pkt)
                i += 1
            elif t in ("--dports", "--sports"):
                port = pkt["dport" if t == "--dports" else "sport"]
                ok = False
                for part in arg.split(","):
                    lo, _, hi = part.partition(":")
                    ok = ok or int(lo) <= port <= int(hi or lo)
            elif t == "--icmp-type":
                typ, _, code = arg.partition("/")
                ok = pkt["proto"] == 1 and pkt["itype"] == int(typ)
                ok = ok and (not code or pkt["icode"] == int(code))
            elif t == "--ctstate":
                ok = pkt["ct"] in arg.split(",")
            elif t == "--mark":
                value, mask = (int(x, 16) for x in arg.split("/"))
                ok = pkt["mark"] & mask == value
            elif t == "--comment":
                ok = True
            else:
                raise AssertionError(f"simulator does not know {t}")
            if ok == neg:
                return False
            neg, i = False, i + 2
        return True


class ClusterSim:
    def __init__(self, inputs_by_node: dict[str, Inputs]):
        self.sims = {n: Sim(calculate(i)) for n, i in inputs_by_node.items()}

    def allowed(self, src, dst, proto, sport=None, dport=None, itype=None, icode=None) -> bool:
        def ip_of(end):
            if isinstance(end, str):
                return end
            return str(ipaddress.ip_interface(end.spec.ip_networks[0]).ip)

        pkt = {
            "src": ip_of(src),
            "dst": ip_of(dst),
            "proto": proto,
            "sport": sport,
            "dport": dport,
            "itype": itype,
            "icode": icode,
            "ct": "NEW",
        }
        ok = True
        src_node = None if isinstance(src, str) else src.spec.node
        dst_node = None if isinstance(dst, str) else dst.spec.node
        if src_node:
            oif = dst.spec.interface_name if dst_node == src_node else "eth0"
            ok &= self.sims[src_node].forward(dict(pkt, iif=src.spec.interface_name, oif=oif))
        if dst_node and dst_node != src_node:
            ok &= self.sims[dst_node].forward(dict(pkt, iif="eth0", oif=dst.spec.interface_name))
        return ok


def _random_world(rng: random.Random):
    keys = ["network1", "network2", "app", "tier"]
    values = ["web", "db"]
    nets_pool = ["10.65.0.0/26", "10.65.0.2/32", "10.65.0.64/26", "192.168.9.0/24", "10.0.0.0/8"]
    ports_pool = [80, 443, "1000:2000", "http", 22]

    def selector() -> str:
        k = rng.choice(keys)
        return rng.choice(
            [
                f"has({k})",
                f"{k} == '{rng.choice(values)}'",
                f"!has({k})",
                f"{k} in {{'web', 'db'}}",
                "all()",
                f"has({k}) && {rng.choice(keys)} != 'web'",
            ]
        )

    def entity(proto):
        ent = {}
        if rng.random() < 0.3:
            ent["selector"] = selector()
        if rng.random() < 0.15:
            ent["notSelector"] = selector()
        if rng.random() < 0.25:
            ent["nets"] = rng.sample(nets_pool, rng.randint(1, 2))
        if rng.random() < 0.15:
            ent["notNets"] = rng.sample(nets_pool, rng.randint(1, 2))
        if proto in ("TCP", "UDP") and rng.random() < 0.4:
            ent["ports"] = rng.sample(ports_pool, rng.randint(1, 3))
        if proto in ("TCP", "UDP") and rng.random() < 0.15:
            ent["notPorts"] = rng.sample(ports_pool, 1)
        return ent

    def rule():
        proto = rng.choice([None, None, "TCP", "UDP", "ICMP"])
        r = {"action": rng.choice(["Allow", "Allow", "Deny", "Pass", "Log"])}
        if proto:
            r["protocol"] = proto
        elif rng.random() < 0.15:
            r["notProtocol"] = rng.choice(["TCP", "UDP"])
        if proto == "ICMP" and rng.random() < 0.5:
            r["icmp"] = {"type": 8} if rng.random() < 0.5 else {"type": 8, "code": 0}
        if proto in (None, "ICMP") and rng.random() < 0.1 and "notProtocol" not in r:
            r["notICMP"] = {"type": 0}
        src, dst = entity(proto), entity(proto)
        if src:
            r["source"] = src
        if dst:
            r["destination"] = dst
        return r

    profiles = {}
    for name in ("network1", "network2", "p3"):
        p = seed_profile(name)
        if name == "p3" or rng.random() < 0.3:
            p = Resource.from_dict(
                {
                    "apiVersion": API,
                    "kind": "Profile",
                    "metadata": {"name": name},
                    "spec": {
                        "ingress": [rule() for _ in range(rng.randint(0, 3))],
                        "egress": [rule() for _ in range(rng.randint(0, 3))],
                        "labelsToApply": {name: ""},
                    },
                }
            )
        profiles[name] = p
    policies = []
    for i in range(rng.randint(0, 4)):
        spec = {"selector": selector()}
        if rng.random() < 0.7:
            spec["order"] = rng.choice([1, 10, 10, 100])
        types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"], None])
        if types:
            spec["types"] = types
        if types is None or "Ingress" in types:
            spec["ingress"] = [rule() for _ in range(rng.randint(0, 3))]
        if (types is None and rng.random() < 0.5) or (types and "Egress" in types):
            spec["egress"] = [rule() for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.4:
            policies.append(gnp(f"np{i}", spec, kind="NetworkPolicy", namespace="default"))
        else:
            policies.append(gnp(f"gnp{i}", spec))
    endpoints = []
    addr = iter(range(2, 60))
    for i in range(8):
        n = ("n1", "n2")[i % 2]
        base = 0 if n == "n1" else 64
        ips = [f"10.65.0.{base + next(addr)}"]
        if i == 3:
            ips.append(f"10.65.0.{base + next(addr)}")
        labels = {k: rng.choice(values) for k in rng.sample(["app", "tier"], rng.randint(0, 2))}
        profs = rng.sample(["network1", "network2", "p3", "missing"], rng.randint(0, 2))
        ports = [{"name": "http", "protocol": "TCP", "port": 80}] if rng.random() < 0.5 else None
        ns = "default" if i < 6 else "other"
        endpoints.append(wep(n, cid(100 + i), ips, profs, labels, ns, ports))
    if rng.random() < 0.2:
        policies.append(
            gnp(
                "nsg",
                {
                    "selector": "all()",
                    "namespaceSelector": "projectcalico.org/name == 'other'",
                    "ingress": [rule()],
                },
            )
        )
    return profiles, policies, endpoints


@pytest.mark.parametrize("seed", range(60))
def test_rendered_rules_agree_with_policy_evaluate(seed):
    rng = random.Random(seed)
    profiles, policies, endpoints = _random_world(rng)
    nodes = {"n1": node("n1", "192.168.200.11"), "n2": node("n2", "192.168.200.12")}
    cluster = ClusterSim(
        {
            n: Inputs(
                node=n, profiles=profiles, policies=policies, endpoints=endpoints, nodes=nodes
            )
            for n in nodes
        }
    )
    pset = policy.PolicySet(profiles.values(), policies, endpoints)
    ends = [*endpoints, "192.168.9.7", "172.16.1.1"]
    checked = 0
    for _ in range(150):
        src, dst = rng.choice(ends), rng.choice(ends)
        if isinstance(src, str) and isinstance(dst, str):
            continue
        proto = rng.choice(["TCP", "UDP", "ICMP"])
        if proto == "ICMP":
            itype, icode = rng.choice([(8, 0), (0, 0), (3, 1)])
            flow = policy.Flow(src, dst, proto, icmp_type=itype, icmp_code=icode)
            pnum, ports = 1, (None, None)
        else:
            ports = (rng.choice([12345, 80, 1500]), rng.choice([80, 443, 1500, 22]))
            flow = policy.Flow(src, dst, proto, src_port=ports[0], dst_port=ports[1])
            pnum, itype, icode = (6 if proto == "TCP" else 17), None, None
        want = policy.evaluate(pset, flow).allowed
        got = cluster.allowed(src, dst, pnum, ports[0], ports[1], itype, icode)
        assert got == want, "\n".join(policy.evaluate(pset, flow).explain())
        checked += 1
    assert checked > 50


def test_simulator_sees_seed_isolation():
    inputs = seed_inputs()
    cluster = ClusterSim({n: Inputs(**{**inputs.__dict__, "node": n}) for n in ("n1", "n2")})
    eps = inputs.endpoints
    net1 = [e for e in eps if e.spec.profiles == ["network1"]]
    net2 = [e for e in eps if e.spec.profiles == ["network2"]]
    n1_a, n1_b = (e for e in net1 if e.spec.node == "n1")
    remote1 = next(e for e in net1 if e.spec.node == "n2")
    assert cluster.allowed(n1_a, remote1, 6, 40000, 80)  # same network across nodes
    assert cluster.allowed(n1_a, n1_b, 6, 40000, 80)  # same network, same node
    assert not cluster.allowed(net2[0], n1_a, 6, 40000, 80)  # other network
    assert not cluster.allowed(n1_a, net2[-1], 6, 40000, 80)
    assert cluster.allowed(n1_a, "8.8.8.8", 17, 40000, 53)  # egress out
    assert not cluster.allowed("8.8.8.8", n1_a, 6, 40000, 80)  # not from outside
