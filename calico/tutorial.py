"""Guided walkthroughs, as data: steps that run against a live cluster and check what they
promise.

    Tutorial()                              # the basic isolation walkthrough
    Tutorial.named("default-deny", nodes)   # any of TUTORIALS, by name

A walkthrough (`TUTORIALS`: name -> `TutorialSpec`) is a title, a summary and a list of
`StepSpec`s: a key, a kind, its parameters and the words (title and why, with `{a}` and
`{b}` for the two nodes). A kind (`KINDS`) turns the parameters into the exact commands
the user would type and the function that runs them through a `Shell` (the lab's `exec`,
or anything with the same shape) and judges the outcome. The console's `:tutorial` and
the headless `calico-lab tutorial NAME` run the same steps; adding a walkthrough is adding
data here, not code elsewhere.

Kinds: `node-service` (every node runs the pod `node`), `networks` (CNI files on every
node), `server` (a busybox httpd pod, on one or more networks, ports 80 and more), `reach`
(wget from a new pod on a network to a server's address on a network: answered, or
timed out), `apply` / `delete` (calicoctl, resources as JSON), `profiles` (calicoctl get
profiles lists the networks), `endpoints` (a server has one endpoint per interface),
`cleanup` (every pod stopped and removed, what the walkthrough applied deleted).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

NODES = ("calico-01", "calico-02")
HTTPD_IP = "192.168.0.100"  # the seed text lost its address; any free one in the pool works
V3 = "projectcalico.org/v3"


class Shell(Protocol):
    def __call__(
        self, node: str | None, argv: list[str], input: str | None = None, timeout: float = 30.0
    ) -> tuple[int, str]:
        """Run argv on a node (None: the operator's own shell); return (exit code, output)."""
        ...


@dataclass
class StepResult:
    ok: bool
    seen: str  # what was observed, shown to the user whatever the outcome
    seconds: float = 0.0


@dataclass
class Step:
    key: str
    title: str
    why: str
    commands: list[str]  # exactly what the user would type
    run: Callable[[Shell, Tutorial], StepResult]
    result: StepResult | None = None


@dataclass(frozen=True)
class StepSpec:
    key: str
    kind: str  # a key of KINDS
    title: str
    why: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TutorialSpec:
    name: str
    title: str
    summary: str
    steps: tuple[StepSpec, ...]


def network_conf(name: str) -> str:
    return json.dumps(
        {"name": name, "cniVersion": "0.1.0", "type": "calico", "ipam": {"type": "calico-ipam"}},
        indent=4,
    )


def wait_until(
    check: Callable[[], tuple[bool, str]], timeout: float, interval: float = 0.2
) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    ok, seen = check()
    while not ok and time.monotonic() < deadline:
        time.sleep(interval)
        ok, seen = check()
    return ok, seen


# ---------------------------------------------------------------- the kinds of step

Built = tuple[list[str], Callable[[Shell, "Tutorial"], StepResult]]


def _node(tut: Tutorial, which: str) -> str:
    """ "a" / "b": the walkthrough's first and second node."""
    return tut.nodes[0] if which == "a" else tut.nodes[1]


def _node_service(tut: Tutorial, p: Mapping[str, Any]) -> Built:
    def run(shell: Shell, tut: Tutorial) -> StepResult:
        seen, ok = [], True
        for node in tut.nodes:
            rc, out = shell(node, ["rkt", "list"])
            running = any(re.search(r"\bnode\b.*\brunning\b", line) for line in out.splitlines())
            ok &= rc == 0 and running
            seen.append(f"[{node}] $ rkt list\n{out.strip()}")
        return StepResult(ok, "\n".join(seen))

    return [f"calico-lab exec {n} -- rkt list" for n in tut.nodes], run


def _networks(tut: Tutorial, p: Mapping[str, Any]) -> Built:
    names = list(p["names"])

    def run(shell: Shell, tut: Tutorial) -> StepResult:
        seen, ok = [], True
        for node in tut.nodes:
            for net in names:
                path = f"/etc/rkt/net.d/10-calico-{net}.conf"
                rc, out = shell(
                    node,
                    ["sh", "-c", f"mkdir -p /etc/rkt/net.d && cat > {path}"],
                    input=network_conf(net),
                )
                ok &= rc == 0
                if rc:
                    seen.append(f"[{node}] writing {path} failed: {out.strip()}")
            rc, out = shell(node, ["ls", "/etc/rkt/net.d"])
            ok &= rc == 0 and all(f"10-calico-{net}.conf" in out for net in names)
            seen.append(f"[{node}] $ ls /etc/rkt/net.d\n{out.strip()}")
        return StepResult(ok, "\n".join(seen))

    cmds = [
        f"calico-lab exec {n} -- sh -c 'cat > /etc/rkt/net.d/10-calico-{net}.conf'"
        for n in tut.nodes
        for net in names
    ]
    return cmds, run


def _pods(shell: Shell, node: str) -> list[dict[str, Any]]:
    rc, out = shell(node, ["rkt", "list", "--format=json"])
    try:
        pods = json.loads(out) if rc == 0 else []
    except ValueError:
        return []
    return pods if isinstance(pods, list) else []


def _server(tut: Tutorial, p: Mapping[str, Any]) -> Built:
    """A busybox httpd pod serving / on `ports` (80 first), on `networks` (`ip`: the first
    network's address, asked for with IP=); its addresses are remembered as `name`."""
    node = _node(tut, p.get("node", "a"))
    nets: list[str] = list(p["networks"])
    ports: list[int] = list(p.get("ports", [80]))
    ip = p.get("ip")
    flags = [f"--net={nets[0]}" + (f":IP={ip}" if ip else ""), *(f"--net={n}" for n in nets[1:])]
    if ports == [80]:
        app = "--exec httpd -- -f -h /"
    else:  # one pod, several ports: the extra servers in the background, port 80 in front
        extra = " && ".join(f"httpd -p {port} -h /" for port in ports[1:])
        app = f"--exec /bin/sh -- -c '{extra} && exec httpd -f -p 80 -h /'"
    # The walkthrough backgrounds a foreground `rkt run` with `&`; so do we.
    command = f"rkt run {' '.join(flags)} docker://busybox {app}"

    def run(shell: Shell, tut: Tutorial) -> StepResult:
        before = {pod.get("name") for pod in _pods(shell, node)}
        rc, out = shell(node, ["sh", "-c", f"{command} >/dev/null 2>&1 &"])
        if rc:
            return StepResult(False, f"[{node}] rkt run failed: {out.strip()}")

        def started() -> tuple[bool, str]:
            for pod in _pods(shell, node):
                if pod.get("name") in before or pod.get("state") != "running":
                    continue
                addrs = {n.get("netName"): n.get("ip") for n in pod.get("networks") or []}
                if all(addrs.get(net) for net in nets):
                    tut.servers[p["name"]] = {net: str(addrs[net]) for net in nets}
                    return True, ""
            return False, ""

        ok, _ = wait_until(started, timeout=20)
        _, listing = shell(node, ["rkt", "list"])
        seen = f"[{node}] $ rkt list\n{listing.strip()}"
        if ok and not ip:
            where = ", ".join(f"{net} {tut.servers[p['name']][net]}" for net in nets)
            seen += f"\n(the server's addresses: {where})"
        return StepResult(ok, seen)

    return [f"calico-lab exec {node} -- {command} &", f"calico-lab exec {node} -- rkt list"], run


@dataclass(frozen=True)
class Probe:
    node: str  # "a" or "b"
    network: str  # the client pod's network
    server: str  # a server step's name
    on: str  # which of the server's networks (its address there)
    port: int = 80
    answered: bool = True  # the walkthrough's promise

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Probe:
        return cls(**raw)


def _wget_argv(network: str, address: str, port: int) -> list[str]:
    url = f"http://{address}{'' if port == 80 else f':{port}'}/etc/passwd"
    return ["rkt", "run", f"--net={network}", "docker://busybox", "--exec=/bin/wget", "--",
            "-T", "3", url]  # fmt: skip


def _reach(tut: Tutorial, p: Mapping[str, Any]) -> Built:
    probes = [Probe.of(raw) for raw in p["probes"]]

    def address(probe: Probe) -> str:
        known = tut.servers.get(probe.server, {})
        return known.get(probe.on) or f"<{probe.server}'s {probe.on} address>"

    def run(shell: Shell, tut: Tutorial) -> StepResult:
        seen, ok = [], True
        for probe in probes:
            if probe.on not in tut.servers.get(probe.server, {}):
                ok = False
                seen.append(f"{probe.server} has no {probe.on} address: run its step first")
                continue
            node = _node(tut, probe.node)
            argv = _wget_argv(probe.network, address(probe), probe.port)
            rc, out = shell(node, argv, timeout=30)
            answered = rc == 0 and "passwd" in out and "timed out" not in out
            timed_out = rc != 0 and "download timed out" in out
            good = answered if probe.answered else timed_out
            ok &= good
            promise = "answers" if probe.answered else "times out"
            seen.append(
                f"[{node}] $ {' '.join(argv)}\n{out.strip()}\n"
                f"-> {'as promised' if good else 'NOT as promised'}: {promise}"
            )
        return StepResult(ok, "\n".join(seen))

    cmds = [
        f"calico-lab exec {_node(tut, pr.node)} -- "
        + " ".join(_wget_argv(pr.network, address(pr), pr.port))
        for pr in probes
    ]
    return cmds, run


def _resource_id(doc: Mapping[str, Any]) -> tuple[str, str, str | None]:
    meta = doc["metadata"]
    return doc["kind"], meta["name"], meta.get("namespace")


def _apply(tut: Tutorial, p: Mapping[str, Any]) -> Built:
    docs: list[dict[str, Any]] = [dict(d) for d in p["resources"]]
    text = json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}, indent=2)

    def run(shell: Shell, tut: Tutorial) -> StepResult:
        rc, out = shell(None, ["calicoctl", "apply", "-f", "-"], input=text)
        if rc == 0:
            for doc in docs:
                if _resource_id(doc) not in tut.applied:
                    tut.applied.append(_resource_id(doc))
        return StepResult(rc == 0, f"$ calicoctl apply -f -\n{text}\n{out.strip()}")

    return [f"calicoctl apply -f - <<'EOF'\n{text}\nEOF"], run


def _delete_argv(kind: str, name: str, namespace: str | None) -> list[str]:
    argv = ["calicoctl", "delete", kind.lower(), name]
    return [*argv, "-n", namespace] if namespace else argv


def _delete(tut: Tutorial, p: Mapping[str, Any]) -> Built:
    target = (p["kind"], p["name"], p.get("namespace"))
    argv = _delete_argv(*target)

    def run(shell: Shell, tut: Tutorial) -> StepResult:
        rc, out = shell(None, argv)
        if rc == 0 and target in tut.applied:
            tut.applied.remove(target)
        return StepResult(rc == 0, f"$ {' '.join(argv)}\n{out.strip()}")

    return [" ".join(argv)], run


def _profiles(tut: Tutorial, p: Mapping[str, Any]) -> Built:
    wanted = set(p["names"])

    def run(shell: Shell, tut: Tutorial) -> StepResult:
        rc, out = shell(None, ["calicoctl", "get", "profiles"])
        names = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
        return StepResult(rc == 0 and wanted <= names, f"$ calicoctl get profiles\n{out.strip()}")

    return ["calicoctl get profiles"], run


def _endpoints(tut: Tutorial, p: Mapping[str, Any]) -> Built:
    """The server has one WorkloadEndpoint per network, each with that network's address."""
    server = p["server"]

    def run(shell: Shell, tut: Tutorial) -> StepResult:
        rc, out = shell(None, ["calicoctl", "get", "workloadendpoints", "-o", "wide"])
        addrs = tut.servers.get(server, {})
        lines = out.splitlines()
        ok = rc == 0 and bool(addrs)
        for net, ip in addrs.items():
            ok &= any(f"{ip}/32" in line and net in line for line in lines)
        return StepResult(ok, f"$ calicoctl get workloadendpoints -o wide\n{out.strip()}")

    return ["calicoctl get workloadendpoints -o wide"], run


def _cleanup(tut: Tutorial, p: Mapping[str, Any]) -> Built:
    """The resources the walkthrough declares (`deletes`) and any it applied in this run
    are deleted (one already gone is fine: a re-run, or a console opened afresh), then every
    pod but the node service is stopped and removed."""
    declared = [(d["kind"], d["name"], d.get("namespace")) for d in p.get("deletes", [])]

    def run(shell: Shell, tut: Tutorial) -> StepResult:
        seen, ok = [], True
        for target in dict.fromkeys([*declared, *tut.applied]):
            argv = _delete_argv(*target)
            rc, out = shell(None, argv)
            ok &= rc == 0 or "does not exist" in out
            seen.append(f"$ {' '.join(argv)}\n{out.strip()}")
        tut.applied.clear()
        for node in tut.nodes:
            rc, out = shell(node, ["rkt", "list", "--no-legend"])
            for line in out.splitlines():
                fields = [f for f in line.split("\t") if f]  # rkt pads columns with extra tabs
                if len(fields) > 3 and fields[1] != "node" and fields[3] == "running":
                    shell(node, ["rkt", "stop", "--force", fields[0]])
            # rm refuses running pods (the node service), exactly as in the walkthrough's pipe
            shell(node, ["sh", "-c", "rkt list --no-legend | cut -f1 | xargs rkt rm"])
            rc, out = shell(node, ["rkt", "list", "--no-legend"])
            left = [ln for ln in out.splitlines() if ln.strip() and "\tnode\t" not in ln]
            ok &= rc == 0 and not left
            seen.append(f"[{node}] $ rkt list --no-legend\n{out.strip()}")
        rc, out = shell(None, ["calicoctl", "get", "workloadendpoints"])
        ok &= rc == 0 and len([ln for ln in out.splitlines()[1:] if ln.strip()]) == 0
        seen.append(f"$ calicoctl get workloadendpoints\n{out.strip()}")
        tut.servers = known_addresses(tut.spec, tut.httpd_ip)
        return StepResult(ok, "\n".join(seen))

    cmds = [" ".join(_delete_argv(*target)) for target in declared]
    cmds += [
        f"calico-lab exec {n} -- sh -c 'rkt list --no-legend | cut -f1 | xargs rkt rm'"
        for n in tut.nodes
    ]
    return cmds, run


KINDS: dict[str, Callable[[Tutorial, Mapping[str, Any]], Built]] = {
    "node-service": _node_service,
    "networks": _networks,
    "server": _server,
    "reach": _reach,
    "apply": _apply,
    "delete": _delete,
    "profiles": _profiles,
    "endpoints": _endpoints,
    "cleanup": _cleanup,
}


# ---------------------------------------------------------------- the walkthroughs

NODE_SERVICE = StepSpec(
    "node-service", "node-service", "Check the Calico service runs on every node",
    "Each node runs calico-node as a pod named `node` on the host network: the agent watches "
    "etcd and turns profiles, policies and endpoints into iptables chains, ipsets and routes "
    "on its node, and BIRD tells the other nodes where this node's pod addresses are. No "
    "agent, no isolation.",
)  # fmt: skip


def _networks_step(names: list[str]) -> StepSpec:
    return StepSpec(
        "networks", "networks", f"Create the network{'s' if len(names) > 1 else ''} "
        f"{' and '.join(names)} on both nodes",
        "A rkt network is a CNI file in /etc/rkt/net.d. `type: calico` makes the calico plugin "
        "wire each pod (a veth pair, a /32 route, a WorkloadEndpoint in etcd), and "
        "`ipam: calico-ipam` hands out addresses from the IP pools in per-node /26 blocks. The "
        "first pod of a network creates a profile of the same name: allow ingress from pods "
        "labelled with the network, allow all egress.",
        {"names": names},
    )  # fmt: skip


def _cleanup_step(deletes: list[dict[str, str]] = ()) -> StepSpec:  # type: ignore[assignment]
    why = (
        "`rkt stop --force` kills a pod; `rkt rm` runs the CNI DEL for each of its networks in "
        "reverse order, which releases the address and removes the endpoint and veth. The node "
        "service keeps running: rm refuses running pods."
    )
    if deletes:
        why = "The policies this walkthrough applied are deleted first. " + why
    return StepSpec(
        "cleanup", "cleanup", "Clean up: stop and remove the pods on both nodes", why,
        {"deletes": list(deletes)},
    )  # fmt: skip


def _web(ip: str = HTTPD_IP, ports: list[int] = [80]) -> dict[str, Any]:  # noqa: B006
    return {"name": "web", "node": "a", "networks": ["network1"], "ip": ip, "ports": ports}


def _probe(node: str, net: str, port: int = 80, answered: bool = True, **kw: Any) -> dict:
    return {"node": node, "network": net, "server": kw.get("server", "web"),
            "on": kw.get("on", "network1"), "port": port, "answered": answered}  # fmt: skip


ISOLATION = TutorialSpec(
    "isolation", "Basic network isolation",
    "Two networks, a web server in one: its own network reaches it from either node, the "
    "other network times out; a profile per network says why.",
    (
        NODE_SERVICE,
        _networks_step(["network1", "network2"]),
        StepSpec("httpd", "server", "Start a web server on {a} in network1 at {ip}",
                 "`:IP=` reaches the IPAM plugin as CNI_ARGS and asks for that exact address. "
                 "The pod's eth0 gets it as a /32 with 169.254.1.1 as gateway (answered by proxy "
                 "ARP on the host side cali interface). rkt also adds default-restricted, its "
                 "host-only network. The agent adds the pod's address to the ipset behind "
                 "`has(network1)`.", _web()),
        StepSpec("wget-same-remote", "reach", "From {b}, network1 reaches the server",
                 "A new pod on {b} in network1 carries the label network1 (the profile applies "
                 "it), so the server's ingress rule `source selector has(network1)` matches. The "
                 "packet crosses nodes by the route {b} learned (BGP) for {a}'s address block.",
                 {"probes": [_probe("b", "network1")]}),
        StepSpec("wget-same-local", "reach", "From {a} too, network1 reaches the server",
                 "Same network, same node: the packet goes pod → cali veth → host routing → the "
                 "server's cali veth, and the same profile rule allows it.",
                 {"probes": [_probe("a", "network1")]}),
        StepSpec("wget-other-network", "reach", "From network2 the server is unreachable",
                 "A pod in network2 has the label network2, not network1. No policy applies and "
                 "the server's profile has no rule that matches it, so the default deny drops "
                 "the SYN. wget waits its 3 seconds and gives up.",
                 {"probes": [_probe("b", "network2", answered=False)]}),
        StepSpec("profiles", "profiles", "The plugin created one profile per network",
                 "Profiles live in etcd under /calico/resources/v3/projectcalico.org/profiles/. "
                 "They are never overwritten by the plugin, so an operator may edit them.",
                 {"names": ["network1", "network2"]}),
        _cleanup_step(),
    ),
)  # fmt: skip

DEFAULT_DENY_POLICY = {
    "apiVersion": V3, "kind": "NetworkPolicy",
    "metadata": {"name": "default-deny", "namespace": "default"},
    "spec": {"selector": "all()", "types": ["Ingress"]},
}  # fmt: skip
ALLOW_8080_POLICY = {
    "apiVersion": V3, "kind": "NetworkPolicy",
    "metadata": {"name": "allow-8080", "namespace": "default"},
    "spec": {"order": 100, "selector": "has(network1)", "types": ["Ingress"],
             "ingress": [{"action": "Allow", "protocol": "TCP",
                          "source": {"selector": "has(network1)"},
                          "destination": {"ports": [8080]}}]},
}  # fmt: skip

DEFAULT_DENY = TutorialSpec(
    "default-deny", "Default deny, then allow one port by label",
    "A NetworkPolicy that selects every endpoint and allows nothing takes over from the "
    "profile: everything inbound stops. A second policy, ordered before it, lets one port "
    "back in for pods with the network's label.",
    (
        NODE_SERVICE,
        _networks_step(["network1"]),
        StepSpec("web", "server", "Start a web server on {a} in network1, ports 80 and 8080",
                 "One pod, two busybox httpd processes: 8080 in the background, 80 in front.",
                 _web(ports=[80, 8080])),
        StepSpec("both-open", "reach", "From {b}, network1 reaches both ports",
                 "No policy selects the server yet: its profile allows ingress from network1 "
                 "on every port.",
                 {"probes": [_probe("b", "network1", 80), _probe("b", "network1", 8080)]}),
        StepSpec("deny-all", "apply", "Apply default-deny: a NetworkPolicy with no rules",
                 "`selector: all()` with `types: [Ingress]` and no ingress rules. A policy that "
                 "selects an endpoint is evaluated before its profile; when none of the "
                 "endpoint's policies has a rule that matches, the packet is dropped at the end "
                 "of them, and the profile is never asked.",
                 {"resources": [DEFAULT_DENY_POLICY]}),
        StepSpec("both-closed", "reach", "Now neither port answers",
                 "The profile still says allow, but it is no longer reached.",
                 {"probes": [_probe("b", "network1", 80, False),
                             _probe("b", "network1", 8080, False)]}),
        StepSpec("allow-8080", "apply", "Apply allow-8080, ordered before default-deny",
                 "`order: 100` puts it first (a policy without an order comes last). It selects "
                 "`has(network1)` and allows TCP to port 8080 from `has(network1)`: matched, "
                 "the packet is allowed and nothing after it is asked.",
                 {"resources": [ALLOW_8080_POLICY]}),
        StepSpec("one-open", "reach", "8080 answers, 80 still times out",
                 "Port 80 matches no rule of allow-8080, then no rule of default-deny: dropped.",
                 {"probes": [_probe("b", "network1", 8080), _probe("b", "network1", 80, False)]}),
        _cleanup_step([{"kind": "NetworkPolicy", "name": "allow-8080", "namespace": "default"},
                       {"kind": "NetworkPolicy", "name": "default-deny", "namespace": "default"}]),
    ),
)  # fmt: skip

DENY_WEB_GNP = {
    "apiVersion": V3, "kind": "GlobalNetworkPolicy", "metadata": {"name": "deny-web"},
    "spec": {"order": 200, "selector": "has(network1)", "types": ["Ingress"],
             "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [80]}}]},
}  # fmt: skip
PASS_NETWORK1_GNP = {
    "apiVersion": V3, "kind": "GlobalNetworkPolicy", "metadata": {"name": "pass-network1"},
    "spec": {"order": 100, "selector": "has(network1)", "types": ["Ingress"],
             "ingress": [{"action": "Pass", "source": {"selector": "has(network1)"}}]},
}  # fmt: skip

POLICY_ORDER = TutorialSpec(
    "policy-order", "GlobalNetworkPolicy order: Deny before a profile's allow, then Pass",
    "Policies are asked in order before profiles: a Deny stops a packet the profile would "
    "allow; a Pass earlier in the order skips the rest of the policies and leaves the "
    "decision to the profile.",
    (
        NODE_SERVICE,
        _networks_step(["network1", "network2"]),
        StepSpec("web", "server", "Start a web server on {a} in network1 at {ip}",
                 "The same server as in the basic walkthrough.", _web()),
        StepSpec("allowed", "reach", "network1 reaches it: its profile allows",
                 "No policy selects it yet; the profile network1 allows ingress from network1.",
                 {"probes": [_probe("b", "network1")]}),
        StepSpec("deny", "apply", "Apply the GlobalNetworkPolicy deny-web (order 200)",
                 "It selects every endpoint with the label network1 and denies TCP to port 80, "
                 "whoever sends it. Policies come before profiles, so the profile's allow is "
                 "never reached.",
                 {"resources": [DENY_WEB_GNP]}),
        StepSpec("denied", "reach", "network1 no longer reaches it",
                 "deny-web's rule matches first: the SYN is dropped.",
                 {"probes": [_probe("b", "network1", answered=False)]}),
        StepSpec("pass", "apply", "Apply pass-network1 (order 100): Pass from network1",
                 "Lower order is asked first. Its rule matches packets from network1 pods with "
                 "the action Pass: stop asking policies, go straight to the profiles. Packets "
                 "from anyone else do not match it and meet deny-web as before.",
                 {"resources": [PASS_NETWORK1_GNP]}),
        StepSpec("passed", "reach", "network1 reaches it again; network2 still does not",
                 "From network1: pass-network1 passes, the profile allows. From network2: "
                 "pass-network1 does not match, deny-web denies.",
                 {"probes": [_probe("b", "network1"), _probe("b", "network2", answered=False)]}),
        _cleanup_step([{"kind": "GlobalNetworkPolicy", "name": "pass-network1"},
                       {"kind": "GlobalNetworkPolicy", "name": "deny-web"}]),
    ),
)  # fmt: skip

TWO_NETWORKS = TutorialSpec(
    "two-networks", "A pod on two networks",
    "One pod, an interface in each network, an endpoint (and a profile) per interface: each "
    "of its addresses is open to its own network only.",
    (
        NODE_SERVICE,
        _networks_step(["network1", "network2"]),
        StepSpec("dual", "server", "Start a web server on {a} in network1 and network2",
                 "`--net=network1 --net=network2`: rkt runs the CNI ADD once per network, so "
                 "the pod gets eth0 in network1 and eth1 in network2, each with an address from "
                 "IPAM and a route on the host; the second network's replies leave through its "
                 "own interface (source routing in the pod).",
                 {"name": "dual", "node": "a", "networks": ["network1", "network2"]}),
        StepSpec("endpoints", "endpoints", "Two WorkloadEndpoints, one per interface",
                 "Each interface is an endpoint of its own, labelled with its network by that "
                 "network's profile, so policy sees them apart.",
                 {"server": "dual"}),
        StepSpec("each-own", "reach", "Each network reaches the address on its own network",
                 "network1 → the network1 address, network2 → the network2 address: each "
                 "endpoint's profile allows its own network.",
                 {"probes": [_probe("b", "network1", server="dual", on="network1"),
                             _probe("b", "network2", server="dual", on="network2")]}),
        StepSpec("not-across", "reach", "network2 does not reach the network1 address",
                 "The packet arrives on the network1 interface, whose endpoint has the network1 "
                 "profile: the source has the label network2, nothing allows it.",
                 {"probes": [_probe("b", "network2", server="dual", on="network1",
                                    answered=False)]}),
        _cleanup_step(),
    ),
)  # fmt: skip

TUTORIALS: dict[str, TutorialSpec] = {
    t.name: t for t in (ISOLATION, DEFAULT_DENY, POLICY_ORDER, TWO_NETWORKS)
}
DEFAULT_TUTORIAL = ISOLATION.name


class UnknownTutorial(KeyError):
    def __str__(self) -> str:
        return f"unknown tutorial {self.args[0]!r} (tutorials: {', '.join(TUTORIALS)})"


def known_addresses(spec: TutorialSpec, httpd_ip: str = HTTPD_IP) -> dict[str, dict[str, str]]:
    """The servers' addresses known before anything runs: those asked for with IP=."""
    out = {}
    for s in spec.steps:
        if s.kind == "server" and s.params.get("ip"):
            ip = httpd_ip if s.params["ip"] == HTTPD_IP else s.params["ip"]
            out[s.params["name"]] = {s.params["networks"][0]: ip}
    return out


def build_steps(spec: TutorialSpec, tut: Tutorial) -> list[Step]:
    words = {"a": tut.nodes[0], "b": tut.nodes[1], "ip": tut.httpd_ip}
    tut.servers = known_addresses(spec, tut.httpd_ip)
    out = []
    for s in spec.steps:
        params = dict(s.params)
        if params.get("ip") == HTTPD_IP:
            params["ip"] = tut.httpd_ip
        commands, run = KINDS[s.kind](tut, params)
        out.append(Step(s.key, s.title.format(**words), s.why.format(**words), commands, run))
    return out


@dataclass
class Tutorial:
    nodes: tuple[str, ...] = NODES
    httpd_ip: str = HTTPD_IP
    steps: list[Step] = field(default_factory=list)
    name: str = DEFAULT_TUTORIAL
    servers: dict[str, dict[str, str]] = field(default_factory=dict)  # server -> net -> ip
    applied: list[tuple[str, str, str | None]] = field(default_factory=list)  # for cleanup

    def __post_init__(self) -> None:
        if self.name not in TUTORIALS:
            raise UnknownTutorial(self.name)
        if not self.steps:
            self.steps = build_steps(TUTORIALS[self.name], self)

    @classmethod
    def named(cls, name: str, nodes: tuple[str, ...] = NODES) -> Tutorial:
        return cls(nodes=nodes, name=name)

    @property
    def spec(self) -> TutorialSpec:
        return TUTORIALS[self.name]

    def run_step(self, index: int, shell: Shell) -> StepResult:
        step = self.steps[index]
        start = time.monotonic()
        try:
            result = step.run(shell, self)
        except Exception as exc:  # a step that crashes is a failed step with the reason shown
            result = StepResult(False, f"step crashed: {type(exc).__name__}: {exc}")
        result.seconds = time.monotonic() - start
        step.result = result
        return result

    def reset(self) -> None:
        for step in self.steps:
            step.result = None
