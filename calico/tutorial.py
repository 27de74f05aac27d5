"""The basic network isolation walkthrough, as steps that run against a live cluster.

Each step says what it does and why (in this project's words), shows the exact commands,
runs them through a `Shell` (the lab's `exec`, or anything with the same shape), and checks
the outcome the walkthrough promises. The console's `:tutorial` view and the headless
`calico-lab tutorial` both run these same steps.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

NODES = ("calico-01", "calico-02")
HTTPD_IP = "192.168.0.100"  # the seed text lost its address; any free one in the pool works


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


# ---------------------------------------------------------------- the steps


def _check_node_service(shell: Shell, tut: Tutorial) -> StepResult:
    seen, ok = [], True
    for node in tut.nodes:
        rc, out = shell(node, ["rkt", "list"])
        running = any(re.search(r"\bnode\b.*\brunning\b", line) for line in out.splitlines())
        ok &= rc == 0 and running
        seen.append(f"[{node}] $ rkt list\n{out.strip()}")
    return StepResult(ok, "\n".join(seen))


def _create_networks(shell: Shell, tut: Tutorial) -> StepResult:
    seen, ok = [], True
    for node in tut.nodes:
        for net in ("network1", "network2"):
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
        ok &= rc == 0 and "10-calico-network1.conf" in out and "10-calico-network2.conf" in out
        seen.append(f"[{node}] $ ls /etc/rkt/net.d\n{out.strip()}")
    return StepResult(ok, "\n".join(seen))


def _start_httpd(shell: Shell, tut: Tutorial) -> StepResult:
    node = tut.nodes[0]
    # The walkthrough backgrounds a foreground `rkt run` with `&`; so do we.
    cmd = f"rkt run --net=network1:IP={tut.httpd_ip} docker://busybox --exec httpd -- -f -h / >/dev/null 2>&1 &"
    rc, out = shell(node, ["sh", "-c", cmd])
    if rc:
        return StepResult(False, f"[{node}] rkt run failed: {out.strip()}")
    want = f"network1:ip4={tut.httpd_ip}"

    def listed() -> tuple[bool, str]:
        code, text = shell(node, ["rkt", "list"])
        ok = code == 0 and any(want in line and "running" in line for line in text.splitlines())
        return ok, text

    ok, text = wait_until(listed, timeout=20)
    return StepResult(ok, f"[{node}] $ rkt list\n{text.strip()}")


def _wget(network: str, node_index: int) -> Callable[[Shell, Tutorial], StepResult]:
    def run(shell: Shell, tut: Tutorial) -> StepResult:
        node = tut.nodes[node_index]
        argv = ["rkt", "run", f"--net={network}", "docker://busybox", "--exec=/bin/wget", "--",
                "-T", "3", f"http://{tut.httpd_ip}/etc/passwd"]  # fmt: skip
        rc, out = shell(node, argv, timeout=30)
        if network == "network1":
            ok = rc == 0 and "passwd" in out and "timed out" not in out
        else:
            ok = rc != 0 and "download timed out" in out
        return StepResult(ok, f"[{node}] $ {' '.join(argv)}\n{out.strip()}")

    return run


def _profiles(shell: Shell, tut: Tutorial) -> StepResult:
    rc, out = shell(None, ["calicoctl", "get", "profiles"])
    names = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    return StepResult(
        rc == 0 and {"network1", "network2"} <= names, f"$ calicoctl get profiles\n{out.strip()}"
    )


def _cleanup(shell: Shell, tut: Tutorial) -> StepResult:
    seen, ok = [], True
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
    no_endpoints = rc == 0 and len([ln for ln in out.splitlines()[1:] if ln.strip()]) == 0
    ok &= no_endpoints
    seen.append(f"$ calicoctl get workloadendpoints\n{out.strip()}")
    return StepResult(ok, "\n".join(seen))


def steps(nodes: tuple[str, ...] = NODES, httpd_ip: str = HTTPD_IP) -> list[Step]:
    a, b = nodes[0], nodes[1]
    return [
        Step("node-service", "Check the Calico service runs on every node",
             "Each node runs calico-agent as a pod named `node` on the host network. The agent "
             "watches etcd and turns profiles, policies and endpoints into iptables chains, ipsets "
             "and routes on its node. No agent, no isolation.",
             [f"calico-lab exec {n} -- rkt list" for n in nodes], _check_node_service),
        Step("networks", "Create the networks network1 and network2 on both nodes",
             "A rkt network is a CNI file in /etc/rkt/net.d. `type: calico` makes the calico plugin "
             "wire each pod (a veth pair, a /32 route, a WorkloadEndpoint in etcd), and "
             "`ipam: calico-ipam` hands out addresses from the IP pools in per-node /26 blocks. The "
             "first pod of a network creates a profile of the same name: allow ingress from pods "
             "labelled with the network, allow all egress.",
             [f"calico-lab exec {n} -- sh -c 'cat > /etc/rkt/net.d/10-calico-{net}.conf'"
              for n in nodes for net in ("network1", "network2")], _create_networks),
        Step("httpd", f"Start a web server on {a} in network1 at {httpd_ip}",
             "`:IP=` reaches the IPAM plugin as CNI_ARGS and asks for that exact address. The pod's "
             "eth0 gets it as a /32 with 169.254.1.1 as gateway (answered by proxy ARP on the host "
             "side cali interface). rkt also adds default-restricted, its host-only network. The "
             "agent adds the pod's address to the ipset behind `has(network1)`.",
             [f"calico-lab exec {a} -- rkt run --net=network1:IP={httpd_ip} docker://busybox "
              "--exec httpd -- -f -h / &", f"calico-lab exec {a} -- rkt list"], _start_httpd),
        Step("wget-same-remote", f"From {b}, network1 reaches the server",
             f"A new pod on {b} in network1 carries the label network1 (the profile applies it), "
             f"so the server's ingress rule `source selector has(network1)` matches. The packet "
             f"crosses nodes by the route {b} has for {a}'s address block.",
             [f"calico-lab exec {b} -- rkt run --net=network1 docker://busybox --exec=/bin/wget -- "
              f"-T 3 http://{httpd_ip}/etc/passwd"], _wget("network1", 1)),
        Step("wget-same-local", f"From {a} too, network1 reaches the server",
             "Same network, same node: the packet goes pod → cali veth → host routing → the "
             "server's cali veth, and the same profile rule allows it.",
             [f"calico-lab exec {a} -- rkt run --net=network1 docker://busybox --exec=/bin/wget -- "
              f"-T 3 http://{httpd_ip}/etc/passwd"], _wget("network1", 0)),
        Step("wget-other-network", "From network2 the server is unreachable",
             "A pod in network2 has the label network2, not network1. No policy applies and the "
             "server's profile has no rule that matches it, so the default deny drops the SYN. "
             "wget waits its 3 seconds and gives up.",
             [f"calico-lab exec {b} -- rkt run --net=network2 docker://busybox --exec=/bin/wget -- "
              f"-T 3 http://{httpd_ip}/etc/passwd"], _wget("network2", 1)),
        Step("profiles", "The plugin created one profile per network",
             "Profiles live in etcd under /calico/resources/v3/projectcalico.org/profiles/. "
             "They are never overwritten by the plugin, so an operator may edit them.",
             ["calicoctl get profiles"], _profiles),
        Step("cleanup", "Clean up: stop and remove the pods on both nodes",
             "`rkt stop --force` kills a pod; `rkt rm` runs the CNI DEL for each of its networks in "
             "reverse order, which releases the address and removes the endpoint and veth. The node "
             "service keeps running: rm refuses running pods.",
             [f"calico-lab exec {n} -- sh -c 'rkt list --no-legend | cut -f1 | xargs rkt rm'" for n in nodes],
             _cleanup),
    ]  # fmt: skip


@dataclass
class Tutorial:
    nodes: tuple[str, ...] = NODES
    httpd_ip: str = HTTPD_IP
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.steps:
            self.steps = steps(self.nodes, self.httpd_ip)

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
