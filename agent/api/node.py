"""What the node API answers: pods, networks, endpoints, dataplane, probes, flows, metrics.

The routes read the running agent (its synced cache, desired dataplane, health) and the
node's rkt state; actions that create processes (run/stop/rm a pod) go through the `rkt`
CLI, so a pod started through the API is exactly a pod `rkt run` would start and shows in
`rkt list`. Probes run in the pod's own network namespace from a thread of this process
(setns is per thread), so a hundred of them cost threads, not processes.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agent.api.server import APIError, Request, Router, Stream, Text
from calico.tools import program
from kernel.ns import NamespaceError, entered, open_netns

MAX_PROBE_TIMEOUT = 30.0
PROBE_POD_IDLE = 120.0  # seconds a reusable "fresh pod on network X" lives unused


def number(value: Any, default: float, what: str) -> float:
    """A finite JSON number (or numeric string) from a request body; APIError 400 if not.

    json.loads accepts NaN and Infinity, and float() accepts "nan": neither may reach a
    socket timeout or subprocess (a 500 with a ValueError is not an answer)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise APIError(400, f"{what} must be a number")
    try:
        out = float(value)
    except ValueError:
        raise APIError(400, f"{what} must be a number") from None
    if not math.isfinite(out):
        raise APIError(400, f"{what} must be a finite number")
    return out


NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NOT_PROBE_NETWORKS = ("host", "none", "all")  # no pod network of their own to probe from


# ---------------------------------------------------------------- probes


def classify_connect_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if exc.errno == errno.ECONNREFUSED:
        return "refused"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return "error"


def probe_in_netns(
    netns: str | None, address: str, port: int, timeout: float, http: bool = False
) -> dict[str, Any]:
    """TCP connect (and optionally an HTTP GET) from inside `netns` (None: this namespace).

    Only the socket is made inside (this thread enters and comes straight back): the
    connect then runs from the pod's namespace with no process or thread of its own."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if netns:
        try:
            target = open_netns(netns)
        except NamespaceError as exc:
            return {
                "result": "error",
                "error": f"pod network namespace gone: {exc.strerror}",
                "seconds": 0.0,
            }
        try:
            with entered(target):
                sock = socket.socket(family, socket.SOCK_STREAM)
        finally:
            os.close(target)
    else:
        sock = socket.socket(family, socket.SOCK_STREAM)
    start = time.monotonic()
    out: dict[str, Any]
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
        out = {"result": "connected"}
        if http:
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            line = sock.recv(256).split(b"\r\n", 1)[0].decode(errors="replace")
            out["http_status"] = (
                int(line.split()[1]) if line.startswith("HTTP/") and len(line.split()) > 1 else None
            )
    except OSError as exc:
        out = {"result": classify_connect_error(exc)}
        if out["result"] in ("error", "unreachable"):
            out["error"] = exc.strerror or str(exc)
    finally:
        sock.close()
    out["seconds"] = round(time.monotonic() - start, 4)
    return out


@dataclass
class ProbePod:
    uuid: str
    netns: str
    last_used: float = field(default_factory=time.monotonic)


# ---------------------------------------------------------------- metrics


@dataclass
class Histogram:
    buckets: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.n += 1
        self.total += value
        for i, upper in enumerate(self.buckets):
            if value <= upper:
                self.counts[i] += 1

    def lines(self, name: str, help_text: str) -> list[str]:
        out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for upper, count in zip(self.buckets, self.counts, strict=True):
            out.append(f'{name}_bucket{{le="{upper}"}} {count}')
        out += [
            f'{name}_bucket{{le="+Inf"}} {self.n}',
            f"{name}_sum {self.total:.6f}",
            f"{name}_count {self.n}",
        ]
        return out


# ---------------------------------------------------------------- the service


class NodeService:
    """The node API's behaviour over one agent (duck-typed: see agent.main.Agent)."""

    def __init__(
        self,
        agent: Any,
        rkt_dir: str | None = None,
        local_config: str = "/etc/rkt",
        flows: Any = None,
    ):
        from rkt.pods import Runtime

        self.agent = agent
        self.rkt_dir = rkt_dir or os.environ.get("RKT_DIR", "/var/lib/rkt")
        self.local_config = local_config
        self.runtime = Runtime(self.rkt_dir, local_config, warn=lambda msg: None)
        self.flows = flows
        self.probe_pods: dict[str, ProbePod] = {}
        self.probe_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=128, thread_name_prefix="probe")
        self.started = time.time()
        self.requests = 0
        self.closing = threading.Event()
        threading.Thread(target=self._reap_probe_pods, name="probe-reaper", daemon=True).start()

    # -- helpers
    def rkt(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
        env = {**os.environ, "RKT_DIR": self.rkt_dir}
        try:
            return subprocess.run(
                [program("rkt"), f"--dir={self.rkt_dir}", f"--local-config={self.local_config}",
                 *args],
                capture_output=True, text=True, timeout=timeout, env=env,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise APIError(504, f"rkt {args[0]} did not finish within {timeout:g} s") from None

    def _pod_or_404(self, uuid: str) -> str:
        from rkt.state import StateError

        try:
            return self.runtime.resolve(uuid)
        except StateError as exc:
            raise APIError(404, str(exc)) from None

    def endpoint_by_container(self) -> dict[str, list[dict[str, Any]]]:
        status = self.agent.endpoint_status() if hasattr(self.agent, "endpoint_status") else {}
        by_name = {v.get("name"): v for v in status.values()}
        out: dict[str, list[dict[str, Any]]] = {}
        for wep in self.local_endpoints():
            st = by_name.get(wep.metadata.name, {})
            out.setdefault(wep.spec.container_id, []).append(
                {
                    "name": wep.metadata.name,
                    "interface": wep.spec.interface_name,
                    "ipNetworks": wep.spec.ip_networks,
                    "profiles": wep.spec.profiles,
                    "status": st.get("status", "pending"),
                }
            )
        return out

    def local_endpoints(self) -> list[Any]:
        from calico.resources import WorkloadEndpoint

        cache = getattr(self.agent, "cache", None)
        if cache is None:
            return []
        node = getattr(self.agent, "nodename", None)
        return [
            r for r in list(cache.resources.values())
            if isinstance(r, WorkloadEndpoint) and r.spec.node == node
        ]  # fmt: skip

    # -- reads
    def health(self, req: Request) -> dict[str, Any]:
        h = self.agent.health.to_dict() if hasattr(self.agent, "health") else {}
        cache = getattr(self.agent, "cache", None)
        h.update(
            {
                "node": getattr(self.agent, "nodename", ""),
                "in_sync": bool(cache and cache.in_sync),
                "ready": bool(h.get("ready")),
                "api_uptime_seconds": round(time.time() - self.started, 1),
            }
        )
        return h

    def pods(self, req: Request) -> list[dict[str, Any]]:
        from rkt.format import humanize_since, pod_json

        now = time.time()
        endpoints = self.endpoint_by_container()
        out = []
        for pod, state in self.runtime.pods():
            item = pod_json(pod, state)
            item.update(
                {
                    "uuid": pod.uuid,
                    "app": pod.app.name,
                    "image": pod.app.image_name,
                    "created": humanize_since(pod.created, now),
                    "networks": [
                        {"name": n["netName"], "ip": n.get("ip") or "", "ifName": n.get("ifName")}
                        for n in item["networks"]
                    ],
                    "endpoints": endpoints.get(pod.uuid, []),
                }
            )
            out.append(item)
        return out

    def networks(self, req: Request) -> list[dict[str, Any]]:
        from rkt.netconf import load_net_dir

        try:
            nets = load_net_dir(os.path.join(self.local_config, "net.d"))
        except Exception as exc:  # a broken file must not break the whole list
            raise APIError(500, f"cannot read net.d: {exc}") from None
        out = []
        for net in nets:
            conf = getattr(net, "conf", {}) or {}
            out.append(
                {
                    "name": net.name,
                    "file": getattr(net, "path", ""),
                    "type": conf.get("type") or (conf.get("plugins") or [{}])[0].get("type", ""),
                    "ipam": (conf.get("ipam") or {}).get("type", ""),
                    "cniVersion": conf.get("cniVersion", ""),
                }
            )
        return out

    def endpoints(self, req: Request) -> list[dict[str, Any]]:
        status = self.agent.endpoint_status() if hasattr(self.agent, "endpoint_status") else {}
        by_name = {v.get("name"): v for v in status.values()}
        out = []
        for wep in self.local_endpoints():
            st = by_name.get(wep.metadata.name, {})
            out.append(
                {
                    "name": wep.metadata.name,
                    "namespace": wep.metadata.namespace,
                    "containerID": wep.spec.container_id,
                    "interface": wep.spec.interface_name,
                    "ipNetworks": wep.spec.ip_networks,
                    "profiles": wep.spec.profiles,
                    "status": st.get("status", "pending"),
                    "since": st.get("since"),
                }
            )
        return out

    def dataplane(self, req: Request) -> dict[str, Any]:
        desired = getattr(self.agent, "desired", None)
        chains = read_counters()
        ipsets = {}
        routes = []
        if desired is not None:
            ipsets = {
                name: {"type": s.type, "members": sorted(s.members)}
                for name, s in desired.ipsets.items()
            }
            routes = [
                {"dst": r.dst, "kind": r.kind, "dev": r.dev, "via": r.via}
                for r in [*desired.routes.values(), *desired.endpoint_routes.values()]
            ]
        return {
            "chains": chains,
            "ipsets": ipsets,
            "routes": routes,
            "summary": desired.summary() if desired else {},
        }

    def metrics(self, req: Request) -> Text:
        h = self.agent.health.to_dict() if hasattr(self.agent, "health") else {}
        desired = getattr(self.agent, "desired", None)
        counts = desired.summary() if desired is not None else {}
        lines = []
        hist = getattr(self.agent, "apply_histogram", None)
        if hist is not None:
            lines += hist.lines(
                "calico_agent_apply_seconds", "Time from a change to the dataplane applied."
            )
        gauges = {
            "calico_agent_rules": counts.get("rules", 0),
            "calico_agent_chains": counts.get("chains", 0),
            "calico_agent_ipsets": counts.get("ipsets", 0),
            "calico_agent_ipset_members": counts.get("ipset_members", 0),
            "calico_agent_endpoints": counts.get("endpoints", 0),
            "calico_agent_in_sync": int(bool(h.get("in_sync"))),
            "calico_agent_resyncs_total": getattr(self.agent, "resyncs", 0),
        }
        for name, value in gauges.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
        if self.flows is not None:
            stats = self.flows.stats()
            lines += [
                "# TYPE calico_agent_denied_packets_total counter",
                f"calico_agent_denied_packets_total {stats.get('denied', 0)}",
            ]
            lines += [
                "# TYPE calico_agent_allowed_flows_total counter",
                f"calico_agent_allowed_flows_total {stats.get('allowed', 0)}",
            ]
        return Text("\n".join(lines) + "\n")

    # -- actions
    def run_pod(self, req: Request) -> dict[str, Any]:
        body = req.body or {}
        if not isinstance(body, dict):
            raise APIError(400, "body must be a JSON object")
        image = body.get("image") or "docker://busybox"
        nets = body.get("networks") or []
        if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
            raise APIError(400, "networks must be a list of strings like 'network1:IP=192.168.0.5'")
        args = ["run"]
        args += [f"--net={n}" for n in nets]
        if not body.get("wait"):
            args.append("--detach")
        args.append(str(image))
        if body.get("exec"):
            args.append(f"--exec={body['exec']}")
        if body.get("name"):  # an app flag: after the image, as rkt parses it
            args.append(f"--name={body['name']}")
        extra = body.get("args") or []
        if not isinstance(extra, list):
            raise APIError(400, "args must be a list of strings")
        if extra:
            args += ["--", *map(str, extra)]
        timeout = number(body.get("timeout"), 120.0, "timeout")
        if timeout <= 0:
            raise APIError(400, "timeout must be more than 0 seconds")
        proc = self.rkt(args, timeout=timeout)
        if body.get("wait"):
            return {"exit_code": proc.returncode, "output": proc.stdout, "log": proc.stderr}
        if proc.returncode != 0:
            raise APIError(400, (proc.stderr.strip().splitlines() or ["rkt run failed"])[-1])
        uuid = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        return {"uuid": uuid}

    def stop_pod(self, req: Request) -> dict[str, Any]:
        uuid = self._pod_or_404(req.params["uuid"])
        force = (
            bool((req.body or {}).get("force", True))
            if isinstance(req.body, dict | type(None))
            else True
        )
        proc = self.rkt(["stop", *(["--force"] if force else []), uuid])
        if proc.returncode != 0:
            raise APIError(409, proc.stderr.strip() or "stop failed")
        return {"uuid": uuid, "stopped": True}

    def remove_pod(self, req: Request) -> dict[str, Any]:
        uuid = self._pod_or_404(req.params["uuid"])
        proc = self.rkt(["rm", uuid])
        if proc.returncode != 0:
            raise APIError(409, proc.stderr.strip() or "rm failed")
        return {"uuid": uuid, "removed": True}

    def _probe_pod_for(self, network: str) -> ProbePod:
        """A reusable pod on `network` to probe from (started on first use)."""
        if not NETWORK_NAME.match(network) or network in NOT_PROBE_NETWORKS:
            # not `host`, and not `--net` syntax (`a:IP=..`, `a,b`) smuggled into rkt run
            raise APIError(400, f"network must be the name of a pod network, not {network!r}")
        with self.probe_lock:
            pod = self.probe_pods.get(network)
            if pod and os.path.exists(pod.netns) and self.runtime.is_managed(pod.uuid):
                pod.last_used = time.monotonic()
                return pod
            proc = self.rkt(["run", f"--net={network}", "--detach", "docker://busybox",
                             "--exec=/bin/sleep", "--name=probe", "--", "86400"])  # fmt: skip
            if proc.returncode != 0:
                raise APIError(
                    400, (proc.stderr.strip().splitlines() or ["cannot start a probe pod"])[-1]
                )
            uuid = proc.stdout.strip().splitlines()[-1]
            pod = ProbePod(uuid, os.path.join(self.runtime.pod_dir(uuid), "netns"))
            self.probe_pods[network] = pod
            return pod

    def _reap_probe_pods(self) -> None:
        """Probe pods live while they are used: one idle for PROBE_POD_IDLE is removed."""
        while not self.closing.wait(min(30.0, PROBE_POD_IDLE / 2)):
            now = time.monotonic()
            with self.probe_lock:
                idle = [n for n, p in self.probe_pods.items() if now - p.last_used > PROBE_POD_IDLE]
                pods = [self.probe_pods.pop(n) for n in idle]
            for pod in pods:
                self.rkt(["stop", "--force", pod.uuid], timeout=20)
                self.rkt(["rm", pod.uuid], timeout=20)

    def _probe_one(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise APIError(400, "a probe is a JSON object")
        address = body.get("address")
        port = body.get("port")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise APIError(400, "a probe needs an address and a port in 1-65535")
        try:
            ipaddress.ip_address(address if isinstance(address, str) else "")
        except ValueError:
            raise APIError(400, f"address must be an IP address, not {address!r}") from None
        timeout = min(max(number(body.get("timeout"), 3.0, "timeout"), 0.05), MAX_PROBE_TIMEOUT)
        if body.get("pod"):
            uuid = self._pod_or_404(str(body["pod"]))
            netns = os.path.join(self.runtime.pod_dir(uuid), "netns")
            source = {"pod": uuid}
        elif body.get("network"):
            pod = self._probe_pod_for(str(body["network"]))
            netns, source = pod.netns, {"network": body["network"], "pod": pod.uuid}
        else:
            raise APIError(400, "say where to probe from: pod (uuid) or network")
        out = probe_in_netns(netns, str(address), port, timeout, bool(body.get("http")))
        return {**out, "address": address, "port": port, "from": source, "timeout": timeout}

    def probe(self, req: Request) -> dict[str, Any]:
        return self._probe_one(req.body)

    def probes(self, req: Request) -> list[dict[str, Any]]:
        items = (req.body or {}).get("probes") if isinstance(req.body, dict) else None
        if not isinstance(items, list):
            raise APIError(400, 'body must be {"probes": [...]}')
        # probe pods first (serially: one per network), then every probe at once
        for net in {
            p.get("network")
            for p in items
            if isinstance(p, dict) and not p.get("pod") and p.get("network")
        }:
            self._probe_pod_for(str(net))

        def safe(p: Any) -> dict[str, Any]:
            try:
                return self._probe_one(p)
            except APIError as exc:
                return {"result": "error", "error": exc.message}

        return list(self.pool.map(safe, items))

    def flows_route(self, req: Request) -> Stream:
        if self.flows is None:
            raise APIError(503, "flow collection is not running on this node")
        from agent.flows.records import FlowFilter

        query = {k: v for k, v in req.query.items() if k not in ("follow", "last")}
        try:
            flt = FlowFilter.from_query(query)
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        last = req.q("last")
        sub = self.flows.subscribe(flt, follow=req.q("follow") in ("1", "true", "yes"),
                                   last=int(last) if last and last.isdigit() else None)  # fmt: skip
        return Stream(sub)

    def close(self) -> None:
        self.closing.set()
        for pod in list(self.probe_pods.values()):
            self.rkt(["stop", "--force", pod.uuid], timeout=20)
            self.rkt(["rm", pod.uuid], timeout=20)
        self.probe_pods.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- the routes
    def router(self) -> Router:
        r = Router()
        r.add("GET", "/v1/health", self.health, "agent health: etcd reachable, in sync, last apply")
        r.add(
            "GET",
            "/v1/pods",
            self.pods,
            "pods on this node (rkt list --format=json plus endpoints)",
        )
        r.add("POST", "/v1/pods", self.run_pod, "run a pod, as rkt run")
        r.add("POST", "/v1/pods/{uuid}/stop", self.stop_pod, "stop a pod (force by default)")
        r.add("DELETE", "/v1/pods/{uuid}", self.remove_pod, "remove a stopped pod")
        r.add("GET", "/v1/networks", self.networks, "CNI network files in this node's net.d")
        r.add(
            "GET",
            "/v1/endpoints",
            self.endpoints,
            "this node's workload endpoints with programming status",
        )
        r.add("GET", "/v1/dataplane", self.dataplane, "chains with counters, ipsets, routes")
        r.add("POST", "/v1/probes", self.probe, "one connectivity probe from a pod or a network")
        r.add("POST", "/v1/probes/batch", self.probes, "many probes, run concurrently")
        r.add(
            "GET",
            "/v1/flows",
            self.flows_route,
            "flow records (follow=1 streams); hubble-like filters",
        )
        r.add("GET", "/metrics", self.metrics, "Prometheus metrics")
        r.add("GET", "/v1/openapi.json", lambda req: r.openapi(), "this document")
        return r


def read_counters() -> dict[str, list[dict[str, Any]]]:
    """The agent's chains as the kernel has them, with per-rule packet/byte counters."""
    try:
        out = subprocess.run(
            ["iptables-legacy-save", "-c", "-t", "filter"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_counters(out)


def parse_counters(text: str) -> dict[str, list[dict[str, Any]]]:
    """`[pkts:bytes] -A cali-x ...` lines -> {chain: [{packets, bytes, rule}]} (cali* only)."""
    chains: dict[str, list[dict[str, Any]]] = {}
    for line in text.splitlines():
        if line.startswith(":cali"):
            chains.setdefault(line[1:].split()[0], [])
        if not line.startswith("[") or " -A cali" not in line:
            continue
        counters, rule = line.split("] ", 1)
        packets, nbytes = counters[1:].split(":")
        chain = rule.split()[1]
        chains.setdefault(chain, []).append(
            {"packets": int(packets), "bytes": int(nbytes), "rule": rule}
        )
    return chains


def serve(
    agent: Any, socket_path: str, tcp: tuple[str, int] | None = None, token: str | None = None
) -> Any:
    """Start the node API for `agent` (threads); returns the server (stop() to end)."""
    from agent.api.server import APIServer

    flows = None
    try:
        from agent.flows.collector import FlowCollector

        flows = FlowCollector(
            lookup=agent_lookup(agent), allow_resolver=agent_allow_resolver(agent)
        )
        flows.start()
    except Exception as exc:  # flows are a feature, not a reason to fail the node API
        print(f"calico-agent: flow collection off: {exc}", file=sys.stderr)
        flows = None
    service = NodeService(agent, flows=flows)
    server = APIServer(service.router(), socket_path, tcp=tcp, token=token)
    server.start()
    server.service = service  # type: ignore[attr-defined]
    return server


def agent_lookup(agent: Any):
    """ip -> endpoint info for flow records, from the agent's synced cache."""
    cache_state: dict[str, Any] = {"rev": -1, "map": {}}

    def lookup(ip: str) -> dict[str, Any] | None:
        cache = getattr(agent, "cache", None)
        if cache is None:
            return None
        if cache_state["rev"] != cache.revision:
            from calico.resources import WorkloadEndpoint

            table = {}
            for res in list(cache.resources.values()):
                if isinstance(res, WorkloadEndpoint):
                    info = {
                        "name": res.metadata.name,
                        "namespace": res.metadata.namespace,
                        "networks": tuple(res.spec.profiles),
                        "profiles": tuple(res.spec.profiles),
                        "pod": res.spec.container_id,
                    }
                    for net in res.spec.ip_networks:
                        table[net.split("/")[0]] = info
            cache_state.update(rev=cache.revision, map=table)
        return cache_state["map"].get(ip)

    return lookup


def _local(end: Any, node: str | None) -> bool:
    spec = getattr(end, "spec", None)
    return spec is not None and getattr(spec, "node", None) == node


def agent_allow_resolver(agent: Any):
    """Names the policy/profile rule that allowed a flow (the same evaluation the agent renders)."""
    memo: dict[str, Any] = {"rev": -1, "set": None}

    def resolve(record: Any) -> str | None:
        cache = getattr(agent, "cache", None)
        if cache is None:
            return None
        from calico.policy import Flow, PolicySet, evaluate

        if memo["rev"] != cache.revision:
            memo.update(
                rev=cache.revision, set=PolicySet.from_resources(list(cache.resources.values()))
            )
        ps = memo["set"]
        src = ps.endpoint_for_ip(record.src) or record.src
        dst = ps.endpoint_for_ip(record.dst) or record.dst
        proto = str(record.protocol).upper()
        if proto not in ("TCP", "UDP", "ICMP", "SCTP"):
            return None
        port = record.dport if proto in ("TCP", "UDP", "SCTP") else None
        verdict = evaluate(ps, Flow(src, dst, proto, dst_port=port))
        # A node enforces egress for its own sources and ingress for its own destinations:
        # name the rule this node applied (a flow allowed out of here may still be denied
        # on the destination's node, which reports that deny itself).
        node = getattr(agent, "nodename", None)
        enforced = [
            d for d in verdict.directions
            if (d.direction == "Egress" and _local(src, node))
            or (d.direction == "Ingress" and _local(dst, node))
        ]  # fmt: skip
        if not enforced:
            return None
        here = next((d for d in enforced if d.direction == "Ingress"), enforced[0])
        return str(here.decision)

    return resolve


if __name__ == "__main__":  # pragma: no cover - manual poking
    print(json.dumps(parse_counters(sys.stdin.read()), indent=2))
