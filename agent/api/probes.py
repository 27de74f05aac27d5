"""Connectivity probes: a TCP connect (and optionally an HTTP GET) from a pod's own network
namespace, and the reusable probe pods that stand for "a fresh pod on network X".

A probe opens its socket inside the pod's namespace from a thread of this process and comes
straight back (setns is per thread), so a hundred concurrent probes cost threads, not
processes. A probe pod is an ordinary pod started through the `rkt` CLI (it shows in `rkt
list`), kept while it is used and removed after PROBE_POD_IDLE seconds without a probe.

Probe pods are found by what they are, not remembered: app name `probe` running
`/bin/sleep 86400` (PROBE_APP, PROBE_EXEC). An agent that starts (after a crash, say)
removes every such pod in the node's runtime that it did not start itself: a previous
incarnation's pods would otherwise never be reaped.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.api.server import APIError
from kernel.ns import NamespaceError, entered, open_netns
from rkt.pods import Runtime

log = logging.getLogger("calico-agent")

MAX_PROBE_TIMEOUT = 30.0
PROBE_POD_IDLE = 120.0  # seconds a reusable "fresh pod on network X" lives unused
NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NOT_PROBE_NETWORKS = ("host", "none", "all")  # no pod network of their own to probe from

PROBE_APP = "probe"  # the app name of a probe pod (the console's matrix skips it too)
PROBE_EXEC = ["/bin/sleep", "86400"]

RunRkt = Callable[..., subprocess.CompletedProcess]  # (args, timeout=...) -> the finished CLI


def classify_connect_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if exc.errno == errno.ECONNREFUSED:
        return "refused"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return "error"


def probe_source_ip(body: dict[str, Any]) -> str | None:
    """A probe's optional `source_ip`: which of the pod's addresses it connects from (a pod
    on two networks has one per interface; without it the kernel picks, by the default
    route, the first interface's)."""
    value = body.get("source_ip")
    if value in (None, ""):
        return None
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
    except ValueError:
        raise APIError(400, f"source_ip must be an IP address, not {value!r}") from None


def probe_in_netns(
    netns: str | None,
    address: str,
    port: int,
    timeout: float,
    http: bool = False,
    source_ip: str | None = None,
) -> dict[str, Any]:
    """TCP connect (and optionally an HTTP GET) from inside `netns` (None: this namespace),
    from `source_ip` if given (bound first, so the pod's source routing picks the
    interface that owns it).

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
        if source_ip:
            sock.bind((source_ip, 0))
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


class ProbePods:
    """One reusable probe pod per network, started on first use through `rkt`, reaped by a
    thread once idle for PROBE_POD_IDLE."""

    def __init__(self, rkt: RunRkt, runtime: Runtime) -> None:
        self.rkt = rkt
        self.runtime = runtime
        self.pods: dict[str, ProbePod] = {}
        self.lock = threading.Lock()
        self.closing = threading.Event()
        # Listed now, before this agent can start one of its own: everything found is a
        # previous incarnation's.
        self.leftovers = self.find_probe_pods()
        threading.Thread(target=self._reap, name="probe-reaper", daemon=True).start()

    def find_probe_pods(self) -> list[str]:
        """UUIDs of every probe pod in this node's runtime, running or not."""
        found = []
        for pod, _state in self.runtime.pods():
            if pod.app.name == PROBE_APP and list(pod.app.exec) == PROBE_EXEC:
                found.append(pod.uuid)
        return found

    def reap_leftovers(self) -> list[str]:
        """Remove the probe pods a previous agent left; returns their UUIDs."""
        leftovers, self.leftovers = self.leftovers, []
        for uuid in leftovers:
            self._remove(ProbePod(uuid, ""))
        return leftovers

    def for_network(self, network: str) -> ProbePod:
        """A reusable pod on `network` to probe from (started on first use)."""
        if not NETWORK_NAME.match(network) or network in NOT_PROBE_NETWORKS:
            # not `host`, and not `--net` syntax (`a:IP=..`, `a,b`) smuggled into rkt run
            raise APIError(400, f"network must be the name of a pod network, not {network!r}")
        with self.lock:
            pod = self.pods.get(network)
            if pod and os.path.exists(pod.netns) and self.runtime.is_managed(pod.uuid):
                pod.last_used = time.monotonic()
                return pod
            proc = self.rkt(["run", f"--net={network}", "--detach", "docker://busybox",
                             f"--exec={PROBE_EXEC[0]}", f"--name={PROBE_APP}", "--",
                             *PROBE_EXEC[1:]])  # fmt: skip
            if proc.returncode != 0:
                raise APIError(
                    400, (proc.stderr.strip().splitlines() or ["cannot start a probe pod"])[-1]
                )
            uuid = proc.stdout.strip().splitlines()[-1]
            pod = ProbePod(uuid, os.path.join(self.runtime.pod_dir(uuid), "netns"))
            self.pods[network] = pod
            return pod

    def _remove(self, pod: ProbePod) -> None:
        self.rkt(["stop", "--force", pod.uuid], timeout=20)
        self.rkt(["rm", pod.uuid], timeout=20)

    def _reap(self) -> None:
        """Probe pods live while they are used: one idle for PROBE_POD_IDLE is removed.
        First, the ones a previous agent left."""
        if self.leftovers:
            removed = self.reap_leftovers()
            log.info("removed %d probe pod(s) left by a previous agent: %s", len(removed),
                     " ".join(u[:8] for u in removed))  # fmt: skip
        while not self.closing.wait(min(30.0, PROBE_POD_IDLE / 2)):
            now = time.monotonic()
            with self.lock:
                idle = [n for n, p in self.pods.items() if now - p.last_used > PROBE_POD_IDLE]
                pods = [self.pods.pop(n) for n in idle]
            for pod in pods:
                self._remove(pod)

    def close(self) -> None:
        """Stop reaping and remove every probe pod."""
        self.closing.set()
        for pod in list(self.pods.values()):
            self._remove(pod)
        self.pods.clear()
