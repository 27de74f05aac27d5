"""What the node API answers: pods, networks, endpoints, dataplane, probes, flows, metrics.

The routes read the running agent (its synced cache, desired dataplane, health) and the
node's rkt state; actions that create processes (run/stop/rm a pod) go through the `rkt`
CLI, so a pod started through the API is exactly a pod `rkt run` would start and shows in
`rkt list`. Probes run in the pod's own network namespace from a thread of this process
(setns is per thread), so a hundred of them cost threads, not processes.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.api.counters import read_chain_counters
from agent.api.dataplane import UnknownEndpoint, dataplane_view
from agent.api.logs import pod_log_stream
from agent.api.metrics import metrics_text
from agent.api.podlist import PodListEncoder
from agent.api.probes import MAX_PROBE_TIMEOUT, ProbePods, probe_in_netns, probe_source_ip
from agent.api.server import APIError, APIServer, Request, Router, Stream, Text
from agent.api.view import AgentView
from agent.flows.collector import FlowCollector
from agent.flows.enrich import agent_allow_resolver, agent_lookup
from calico.flowfilter import FlowFilter, QueryError
from calico.resources import WorkloadEndpoint
from calico.tools import program
from rkt.index import PodIndex
from rkt.netconf import load_net_dir
from rkt.pods import Runtime
from rkt.state import StateError


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


def text_field(body: dict[str, Any], key: str, what: str, default: str | None = None) -> str | None:
    """An optional string from a request body: APIError 400 for another type, a NUL byte
    (it cannot reach an argv) or a leading `-` (an option is never a value here)."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise APIError(400, f"{what} must be a string")
    if "\x00" in value:
        raise APIError(400, f"{what} must not contain a NUL byte")
    if value.startswith("-"):
        raise APIError(400, f"{what} must not start with '-': {value[:60]!r}")
    return value


def flag_field(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise APIError(400, f"{key} must be true or false")
    return value


UUID_CHARS = frozenset("0123456789abcdef-")


# ---------------------------------------------------------------- the service


class NodeService:
    """The node API's behaviour over one agent (what it reads of it: AgentView)."""

    def __init__(
        self,
        agent: AgentView,
        rkt_dir: str | None = None,
        local_config: str = "/etc/rkt",
        flows: FlowCollector | None = None,
    ):
        self.agent = agent
        self.rkt_dir = rkt_dir or os.environ.get("RKT_DIR", "/var/lib/rkt")
        self.local_config = local_config
        self.runtime = Runtime(self.rkt_dir, local_config, warn=lambda msg: None)
        self.pod_index = PodIndex(self.runtime)  # GET /v1/pods re-reads only what changed
        self.pod_encoder = PodListEncoder()
        self.pods_lock = threading.Lock()
        self.flows = flows
        self.probe_pods = ProbePods(self.rkt, self.runtime)
        self.pool = ThreadPoolExecutor(max_workers=128, thread_name_prefix="probe")
        self.started = time.time()
        self.requests = 0

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
        try:
            return self.runtime.resolve(uuid)
        except StateError as exc:
            raise APIError(404, str(exc)) from None

    def endpoint_by_container(self) -> dict[str, list[dict[str, Any]]]:
        status = self.agent.endpoint_status()
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

    def local_endpoints(self) -> list[WorkloadEndpoint]:
        node = self.agent.nodename
        return [
            r for r in list(self.agent.cache.resources.values())
            if isinstance(r, WorkloadEndpoint) and r.spec.node == node
        ]  # fmt: skip

    # -- reads
    def health(self, req: Request) -> dict[str, Any]:
        h = self.agent.health.to_dict()
        h.update(
            {
                "node": self.agent.nodename,
                "in_sync": bool(self.agent.cache.in_sync),
                "ready": bool(h.get("ready")),
                "api_uptime_seconds": round(time.time() - self.started, 1),
            }
        )
        return h

    def pods_json(self, req: Request) -> Text:
        """GET /v1/pods as JSON text: what `rkt list --format=json` lists, plus endpoints,
        from records and encodings kept while unchanged (rkt/index.py, podlist.py)."""
        with self.pods_lock:
            endpoints = self.endpoint_by_container()
            body = self.pod_encoder.encode(self.pod_index.pods(), time.time(), endpoints)
        return Text(body, "application/json")

    def pods(self, req: Request) -> list[dict[str, Any]]:
        return json.loads(self.pods_json(req).body)

    def networks(self, req: Request) -> list[dict[str, Any]]:
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
        status = self.agent.endpoint_status()
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

    def bgp(self, req: Request) -> dict[str, Any]:
        """What `calicoctl node status` shows, as data: BIRD asked over its control socket
        (two birdc calls, about 10 ms); backend direct answers running false, no peers."""
        return self.agent.bgp_status()

    def dataplane(self, req: Request) -> dict[str, Any]:
        """Chains with counters and each rule's origin, ipsets, routes (agent/api/dataplane.py);
        `?endpoint=<name or interface>` narrows to that endpoint's chains, sets and routes."""
        try:
            doc = dataplane_view(self.agent.desired, read_chain_counters(), req.q("endpoint"))
        except UnknownEndpoint as exc:
            raise APIError(404, str(exc)) from None
        return {"node": self.agent.nodename, **doc}

    def metrics(self, req: Request) -> Text:
        return Text(metrics_text(self.agent, self.flows))

    # -- actions
    def run_pod(self, req: Request) -> dict[str, Any]:
        """`rkt run` with `--` before the image: no field can become one of rkt's options
        (image, exec and name may not start with `-`; networks are `--net=` values; args
        follow the second `--`). Strings only, no NUL bytes; wrong types are 400s."""
        body = req.body or {}
        if not isinstance(body, dict):
            raise APIError(400, "body must be a JSON object")
        image = text_field(body, "image", "image") or "docker://busybox"
        nets = body.get("networks") or []
        if not isinstance(nets, list) or not all(
            isinstance(n, str) and n and "\x00" not in n for n in nets
        ):
            raise APIError(400, "networks must be a list of strings like 'network1:IP=192.168.0.5'")
        exec_ = text_field(body, "exec", "exec")
        name = text_field(body, "name", "name")
        extra = body.get("args") or []
        if not isinstance(extra, list) or not all(
            isinstance(a, str) and "\x00" not in a for a in extra
        ):
            raise APIError(400, "args must be a list of strings")
        wait = flag_field(body, "wait", False)
        timeout = number(body.get("timeout"), 120.0, "timeout")
        if timeout <= 0:
            raise APIError(400, "timeout must be more than 0 seconds")
        args = ["run"]
        args += [f"--net={n}" for n in nets]
        if not wait:
            args.append("--detach")
        args += ["--", image]
        if exec_:
            args.append(f"--exec={exec_}")
        if name:  # an app flag: after the image, as rkt parses it
            args.append(f"--name={name}")
        if extra:
            args += ["--", *extra]
        proc = self.rkt(args, timeout=timeout)
        if wait:
            return {"exit_code": proc.returncode, "output": proc.stdout, "log": proc.stderr}
        if proc.returncode != 0:
            raise APIError(400, (proc.stderr.strip().splitlines() or ["rkt run failed"])[-1])
        lines = proc.stdout.strip().splitlines()
        uuid = lines[-1].strip() if lines else ""
        if len(uuid) != 36 or not set(uuid) <= UUID_CHARS:
            raise APIError(502, f"rkt run printed no pod UUID: {proc.stdout.strip()[:200]!r}")
        return {"uuid": uuid}

    def pod_logs(self, req: Request) -> Stream:
        uuid = self._pod_or_404(req.params["uuid"])
        return Stream(pod_log_stream(self.runtime, uuid, req.query))

    def stop_pod(self, req: Request) -> dict[str, Any]:
        uuid = self._pod_or_404(req.params["uuid"])
        body = req.body if req.body is not None else {}
        if not isinstance(body, dict):
            raise APIError(400, "body must be a JSON object")
        force = flag_field(body, "force", True)
        proc = self.rkt(["stop", *(["--force"] if force else []), "--", uuid])
        if proc.returncode != 0:
            raise APIError(409, proc.stderr.strip() or "stop failed")
        return {"uuid": uuid, "stopped": True}

    def remove_pod(self, req: Request) -> dict[str, Any]:
        uuid = self._pod_or_404(req.params["uuid"])
        proc = self.rkt(["rm", "--", uuid])
        if proc.returncode != 0:
            raise APIError(409, proc.stderr.strip() or "rm failed")
        return {"uuid": uuid, "removed": True}

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
            pod = self.probe_pods.for_network(str(body["network"]))
            netns, source = pod.netns, {"network": body["network"], "pod": pod.uuid}
        else:
            raise APIError(400, "say where to probe from: pod (uuid) or network")
        source_ip = probe_source_ip(body)
        if source_ip:
            source["source_ip"] = source_ip
        out = probe_in_netns(netns, str(address), port, timeout, bool(body.get("http")), source_ip)
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
            self.probe_pods.for_network(str(net))

        def safe(p: Any) -> dict[str, Any]:
            try:
                return self._probe_one(p)
            except APIError as exc:
                return {"result": "error", "error": exc.message}

        return list(self.pool.map(safe, items))

    def flows_route(self, req: Request) -> Stream:
        if self.flows is None:
            raise APIError(503, "flow collection is not running on this node")
        query = {k: v for k, v in req.query.items() if k not in ("follow", "last")}
        try:
            flt = FlowFilter.from_query(query)
        except QueryError as exc:
            raise APIError(400, str(exc)) from None
        last = req.q("last")
        sub = self.flows.subscribe(flt, follow=req.q("follow") in ("1", "true", "yes"),
                                   last=int(last) if last and last.isdigit() else None)  # fmt: skip
        return Stream(sub)

    def close(self) -> None:
        self.probe_pods.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- the routes
    def router(self) -> Router:
        r = Router()
        r.add("GET", "/v1/health", self.health, "agent health: etcd reachable, in sync, last apply")
        r.add(
            "GET",
            "/v1/pods",
            self.pods_json,
            "pods on this node (rkt list --format=json plus endpoints)",
        )
        r.add("POST", "/v1/pods", self.run_pod, "run a pod, as rkt run")
        r.add("GET", "/v1/pods/{uuid}/logs", self.pod_logs,
              "a pod's output as JSON lines (tail=N, follow=1 streams until it ends)")  # fmt: skip
        r.add("POST", "/v1/pods/{uuid}/stop", self.stop_pod, "stop a pod (force by default)")
        r.add("DELETE", "/v1/pods/{uuid}", self.remove_pod, "remove a stopped pod")
        r.add("GET", "/v1/networks", self.networks, "CNI network files in this node's net.d")
        r.add(
            "GET",
            "/v1/endpoints",
            self.endpoints,
            "this node's workload endpoints with programming status",
        )
        r.add("GET", "/v1/bgp", self.bgp, "the BGP daemon (BIRD) and its peers, as node status")
        r.add(
            "GET",
            "/v1/dataplane",
            self.dataplane,
            "chains with counters and rule origins, ipsets, routes (endpoint= narrows)",
        )
        r.add("POST", "/v1/probes", self.probe, "one connectivity probe from a pod or a network")
        r.add("POST", "/v1/probes/batch", self.probes, "many probes, run concurrently")
        r.add(
            "GET",
            "/v1/flows",
            self.flows_route,
            "flow records (follow=1 streams, last=N); hubble-like filters, since/until, not-<field>",
        )
        r.add("GET", "/metrics", self.metrics, "Prometheus metrics")
        r.add("GET", "/v1/openapi.json", lambda req: r.openapi(), "this document")
        return r


def serve(
    agent: AgentView,
    socket_path: str,
    tcp: tuple[str, int] | None = None,
    token: str | None = None,
) -> APIServer:
    """Start the node API for `agent` (threads); returns the server (stop() to end)."""
    flows: FlowCollector | None = None
    try:
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
