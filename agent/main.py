"""calico-agent: the per-node dataplane agent (Felix's job, plus the route part of BIRD).

    calico-agent --nodename N [--etcd-endpoints URLS] [--once] [--refresh-interval S]
                 [--api-socket PATH] [--health-file PATH] [--backend bird|direct]
                 [--run-dir DIR]

It programs only the network namespace it runs in: run it in a node's namespace
(`ip netns exec NODE calico-agent ...`) or in a real host's root namespace.

Loop: sync etcd (agent.sync) -> calculate the desired dataplane (agent.calc, pure) ->
apply the difference (agent.dataplane) -> report status (agent.status). Nothing is written
to the dataplane before the first complete snapshot. Every `--refresh-interval` seconds the
kernel state is read back in full and any drift repaired. On SIGTERM/SIGINT the agent exits
0 and leaves the dataplane as it is, so isolation stays in force while it is down.

Backends (`--backend`, `$CALICO_NETWORKING_BACKEND`, default bird): `bird` renders this
node's BIRD configuration (agent.bgp) into `<run dir>/bird.conf` and reloads BIRD with
`birdc configure` whenever it changes; BIRD (started beside the agent by calico-node)
advertises the node's blocks and programs the routes to remote blocks. `direct` writes a
route to each remote block via its node itself: only for one flat L2 segment without BGP,
and only when asked for (`--backend direct`), never as a fallback.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent.api.metrics import Histogram
from agent.api.node import serve
from agent.bgp.render import RenderError, bird_inputs, render_bird_config
from agent.bgp.writer import BirdWriter, run_birdc
from agent.calc.calculator import Calculator
from agent.calc.routes import ipip_pools
from agent.cni_server import CNIServer
from agent.coldstart import Timeline
from agent.dataplane.apply import Applier
from agent.status import HEALTH_FILE_INTERVAL, Health, StatusReporter, _now
from agent.sync import ClusterCache, Syncer, connect
from agent.tunnel.address import TunnelAddressKeeper
from calico.bgp import parse_birdc_protocols
from calico.config import ConfigError, EtcdSettings, resolve_settings
from calico.datastore import Datastore, SyncStatus
from calico.errors import Conflict, DatastoreError, NotFound
from calico.heap import settle as settle_heap
from calico.keys import endpoint_status_key
from calico.resources import IPPool, Metadata, Node

log = logging.getLogger("calico-agent")
IMPORTED = time.monotonic()  # the end of the cold start's first phase

RETRY_AFTER_ERROR = 1.0  # seconds before a failed apply is retried with a full read
MISSING_IFACE_POLL = 0.5  # seconds between looks for a veth that is not there yet
BACKENDS = ("bird", "direct")
DEFAULT_RUN_DIR = "/var/run/calico"


def default_backend() -> str:
    return os.environ.get("CALICO_NETWORKING_BACKEND") or "bird"


def default_run_dir() -> str:
    return os.environ.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR


class Agent:
    """One agent. The node API reads `health`, `cache`, `desired` and `last_result`; see
    `start_api`."""

    def __init__(
        self,
        nodename: str,
        endpoints: str | EtcdSettings | None = None,
        refresh_interval: float = 10.0,
        once: bool = False,
        health_file: Path | None = None,
        status_interval: float = 5.0,
        backend: str = "direct",
        run_dir: str | os.PathLike | None = None,
    ):

        self.nodename = nodename
        self.endpoints = endpoints
        self.refresh_interval = refresh_interval
        self.once = once
        self.health_file = health_file
        self.status_interval = status_interval
        self.stop_event = threading.Event()
        self.health = Health(nodename, refresh_interval=refresh_interval)
        self.cache = ClusterCache()
        self.applier = Applier()
        # One calculator for the agent's lifetime: its memo tables are what make an
        # incremental apply cheap (an unchanged endpoint costs a lookup).
        self.calculator = Calculator()
        self.desired: Any = None
        self.last_result: Any = None
        self._route_errors: list[str] = []
        self._since: dict[str, tuple[str, str]] = {}
        self._health_written: tuple | None = None
        self._health_written_at = 0.0

        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r} (bird or direct)")
        self.backend = backend
        self.run_dir = Path(run_dir or default_run_dir())
        self.bird = BirdWriter(self.run_dir) if backend == "bird" else None
        self.apply_ok = True  # the dataplane and (bird backend) BIRD took the last apply
        self.apply_histogram = Histogram()
        self.protected_hosts = datastore_hosts(endpoints)
        self.resyncs = 0
        self.tunnel_keeper: TunnelAddressKeeper | None = None
        self.timeline = Timeline()
        self.timeline.mark("imports", IMPORTED)

    # -- lifecycle
    def stop(self, *_: Any) -> None:
        self.stop_event.set()

    def run(self, once_timeout: float = 30.0) -> int:
        settle_heap()  # the imports
        self.datastore = connect(self.endpoints)
        self.timeline.mark("connect")
        syncer = Syncer(self.datastore)
        reporter = StatusReporter(self.datastore, self.health, interval=self.status_interval)
        self.reporter = reporter
        syncer.start()
        if not self.once:
            reporter.start()
            self.tunnel_keeper = TunnelAddressKeeper(self.datastore, self.nodename, self.stop_event)
            self.tunnel_keeper.start()
        log.info(
            "calico-agent for node %s, etcd %s, refresh every %ss, backend %s (pid %d)",
            self.nodename,
            self.datastore.endpoints,
            self.refresh_interval,
            self.backend,
            os.getpid(),
        )
        try:
            return self._loop(syncer, reporter, once_timeout)
        finally:
            syncer.close()
            reporter.stop()
            # The last word in the file: this agent is gone (a reader also sees the pid die).
            self.health.in_sync = False
            self.health.error = "agent stopped"
            self._write_health(force=True)
            try:
                self.datastore.close()
            except Exception:  # closing a dead channel may raise; we are leaving anyway
                pass

    def _loop(self, syncer: Any, reporter: Any, once_timeout: float) -> int:
        dirty = False
        next_full = 0.0
        next_missing = 0.0
        deadline = time.monotonic() + once_timeout
        while not self.stop_event.is_set():
            now = time.monotonic()
            if self.once and not self.cache.ready and now > deadline:
                log.error("no complete snapshot from etcd within %ss", once_timeout)
                return 1
            wait = 0.5
            if self.cache.ready:
                wait = max(0.0, min(wait, next_full - now))
            try:
                prefix, item = syncer.queue.get(timeout=wait)
                dirty |= self._fold(prefix, item)
                while True:  # take everything already queued: one apply for a burst
                    prefix, item = syncer.queue.get_nowait()
                    dirty |= self._fold(prefix, item)
            except queue.Empty:
                pass
            self.health.beat()
            self.health.in_sync = self.cache.in_sync
            self.health.datastore_ok = self.cache.in_sync and reporter_ok(reporter)
            now = time.monotonic()
            full = now >= next_full
            missing = bool(self.applier.missing_ifaces) and now >= next_missing
            if self.cache.ready and missing and not (dirty or full) and self.desired is not None:
                next_missing = now + MISSING_IFACE_POLL
                if self.applier.retry_interfaces(self.desired).interfaces_configured:
                    log.info("configured new endpoint interfaces")
                    self._publish(reporter)
            elif self.cache.ready and (dirty or full):
                dirty = False
                first = self.desired is None
                if first:
                    self.timeline.mark("snapshot")
                self._apply(full)
                if first:
                    # Programmed: say so before the first apply's housekeeping (the
                    # collection below, handing the statuses over: ~185 ms at 10,000
                    # endpoints), which changes nothing a packet meets.
                    self._write_health(force=True)
                    log.info("%s", self.timeline.line())
                    settle_heap()  # the snapshot and its dataplane live as long
                if full:
                    next_full = now + self.refresh_interval
                if not self.apply_ok:
                    next_full = min(next_full, now + RETRY_AFTER_ERROR)
                next_missing = now + MISSING_IFACE_POLL
                self._publish(reporter)
                if self.once:
                    ok = reporter.report(use_lease=False)
                    if not ok:
                        log.warning("could not write status to etcd")
                    return 0 if self.apply_ok else 1
            self._write_health()
        return 0

    def _fold(self, prefix: str, item: Any) -> bool:

        if isinstance(item, SyncStatus):
            before = self.cache.status.get(prefix)
            if before != item.state:
                level = logging.WARNING if item.state != "in-sync" else logging.INFO
                log.log(level, "etcd %s: %s %s", prefix, item.state, item.error)
        return self.cache.update(prefix, item)

    def _apply(self, full: bool) -> Any:
        t0 = time.perf_counter()
        inputs = self.cache.inputs(self.nodename)
        inputs.protected_hosts = self.protected_hosts
        # IPIP (agent.tunnel.address): the pools say whether this node needs a tunnel address.
        inputs.pools = [r for r in self.cache.resources.values() if isinstance(r, IPPool)]
        inputs.backend = self.backend  # bird: remote blocks are BIRD's routes, not ours
        # The kernel is read first on a full apply; the calculation then streams its
        # chains into the restore (agent.dataplane.apply.ApplySession), so calc_ms holds
        # the writes that waited for the restore and result.ms the rest of the kernel's time.
        with self.applier.begin(full) as session:
            desired = self.calculator.calculate(inputs, emit=session.chain)
            if self.tunnel_keeper is not None:
                me = inputs.nodes.get(self.nodename)
                recorded = me.spec.bgp.ipv4_ipip_tunnel_addr if me and me.spec.bgp else None
                names = tuple(p.metadata.name for p in ipip_pools(inputs.pools))
                self.tunnel_keeper.want(names, recorded)
            calc_ms = (time.perf_counter() - t0 - session.kernel_s) * 1000
            self.timeline.mark("calc")
            result = session.finish(desired)
        self.timeline.mark("kernel")
        bird_error = self._update_bird(inputs.blocks, full)
        errors = [*result.errors, *([bird_error] if bird_error else [])]
        self.apply_ok = result.ok and not bird_error
        self.desired, self.last_result = desired, result
        self.apply_histogram.observe((calc_ms + result.ms) / 1000)
        if full:
            self.resyncs += 1
        counts = desired.summary()
        self.health.counts = counts
        self.health.rejected = self.rejected_here()
        self.health.ready = True
        self.health.last_apply_ms = calc_ms + result.ms
        self.health.last_apply = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.health.last_apply_ok = self.apply_ok
        keeper_error = self.tunnel_keeper.error if self.tunnel_keeper else ""
        errors = [*errors, *([f"tunnel address: {keeper_error}"] if keeper_error else [])]
        self.health.error = "; ".join(errors)[:500]
        for warning in desired.warnings:
            log.debug("calc: %s", warning)
        if result.route_errors != self._route_errors:
            self._route_errors = result.route_errors
            if result.route_errors:
                log.warning("routes: %s", "; ".join(result.route_errors))
        level = logging.INFO if (result.changed or not result.ok) else logging.DEBUG
        log.log(
            level,
            "apply%s rev %d: calc %.1f ms + kernel %.1f ms; chains %d rewritten %d deleted, "
            "ipsets %d rewritten %d deleted, routes %d, ifaces %d; now %d endpoints, %d rules, "
            "%d ipsets / %d members%s",
            " (full)" if result.full else "",
            self.cache.revision,
            calc_ms,
            result.ms,
            result.chains_rewritten,
            result.chains_deleted,
            result.ipsets_rewritten,
            result.ipsets_deleted,
            result.routes_changed,
            result.interfaces_configured,
            counts["endpoints"],
            counts["rules"],
            counts["ipsets"],
            counts["ipset_members"],
            f"; ERRORS: {self.health.error}" if errors else "",
        )
        return result

    # -- BIRD
    def bird_config(self, blocks: Any) -> str:
        """This node's bird.conf from the synced state (RenderError: no address yet)."""
        return render_bird_config(bird_inputs(self.nodename, self.cache.resources.values(), blocks))

    def _update_bird(self, blocks: Any, full: bool) -> str | None:
        """Render and load BIRD's configuration; the error, or None when BIRD runs it."""
        if self.bird is None:
            return None
        try:
            text = self.bird_config(blocks)
        except (RenderError, ValueError) as exc:
            return f"BIRD: {exc}"
        if full:
            self.bird.check()  # a BIRD that stopped answering is an error until it answers
        self.bird.update(text)  # (again, while the last one failed)
        return self.bird.error

    def bgp_status(self) -> dict[str, Any]:
        """What `GET /v1/bgp` answers: BIRD's peers as data (calico.bgp.PeerStatus)."""
        out: dict[str, Any] = {
            "backend": self.backend,
            "running": False,
            "router_id": None,
            "peers": [],
            "error": None,
        }
        if self.bird is None:
            return out
        ok, status = run_birdc(self.bird.control, "show", "status", timeout=5.0)
        if not ok:
            out["error"] = f"BIRD unreachable: {status}"
            return out
        out["running"] = True
        for line in status.splitlines():
            if line.startswith("Router ID is "):
                out["router_id"] = line.removeprefix("Router ID is ").strip()
        ok, text = run_birdc(self.bird.control, "show", "protocols", timeout=5.0)
        if not ok:
            out["error"] = f"birdc show protocols: {text}"
            return out
        out["peers"] = [p.to_dict() for p in parse_birdc_protocols(text)]
        out["error"] = self.bird.error
        return out

    def rejected_here(self) -> dict[str, str]:
        """Resources this agent cannot program that concern it: endpoints on this node, and
        anything whose node cannot be told (a profile or policy applies everywhere)."""
        return {
            key: r.reason
            for key, r in self.cache.rejected.items()
            if r.node is None or r.node == self.nodename
        }

    def endpoint_status(self) -> dict[str, dict[str, Any]]:
        """Status key -> value for every local endpoint (what the console shows), and an
        "error" key for each endpoint of this node that cannot be programmed."""

        out: dict[str, dict[str, Any]] = {}
        if self.desired is None:
            return out
        now = _now()
        for r in self.cache.rejected.values():
            if r.kind != "workloadendpoints" or r.node != self.nodename or not r.name:
                continue
            key = endpoint_status_key(self.nodename, r.orchestrator, r.name, r.endpoint)
            previous = self._since.get(key)
            if previous is None or previous[0] != "error":
                previous = self._since[key] = ("error", now)
            out[key] = {
                "status": "error",
                "namespace": r.namespace,
                "name": r.name,
                "interface": r.interface,
                "since": previous[1],
                "reason": r.reason[:300],
            }
        ok = self.last_result is None or self.last_result.ok
        for ep in self.desired.endpoints:
            state = "up" if ep.iface in self.applier.ifindex else "down"
            if not ok:
                state = "error"
            key = endpoint_status_key(self.nodename, ep.orchestrator, ep.name, ep.endpoint)
            # "since" moves only when the state does, so an apply rewrites no unchanged key.
            previous = self._since.get(key)
            if previous is None or previous[0] != state:
                previous = self._since[key] = (state, now)
            out[key] = {
                "status": state,
                "namespace": ep.namespace,
                "name": ep.name,
                "interface": ep.iface,
                "since": previous[1],
            }
        for key in [k for k in self._since if k not in out]:
            del self._since[key]
        return out

    def _publish(self, reporter: Any) -> None:
        reporter.publish(self.endpoint_status())

    def _write_health(self, force: bool = False) -> None:
        if not self.health_file:
            return

        h = self.health
        state = (h.healthy, h.in_sync, h.ready, h.error, len(h.rejected))
        now = time.monotonic()
        fresh_enough = now - self._health_written_at < HEALTH_FILE_INTERVAL
        if not force and state == self._health_written and fresh_enough:
            return
        try:
            self.health.write_file(self.health_file)
            self._health_written, self._health_written_at = state, now
        except OSError as exc:
            log.debug("cannot write %s: %s", self.health_file, exc)


def datastore_hosts(endpoints: str | EtcdSettings | None) -> tuple[str, ...]:
    """The IPv4 addresses of every etcd member this agent may use (names resolved once):
    workloads may reach none of them."""

    out = []
    try:
        settings = endpoints if isinstance(endpoints, EtcdSettings) else resolve_settings(endpoints)
        eps = settings.parsed()
    except ConfigError:
        return ()
    for ep in eps:
        try:
            addr = socket.gethostbyname(ep.host)
        except OSError:
            continue
        if not ipaddress.ip_address(addr).is_loopback:  # loopback is not routable from pods
            out.append(addr)
    return tuple(sorted(set(out)))


def reporter_ok(reporter: Any) -> bool:
    return getattr(reporter, "last_ok", True)


def start_api(agent: Agent, args: argparse.Namespace) -> list[Any]:
    """The node API (HTTP on a root-only unix socket, optional TCP with a token) and the
    CNI hand-off socket; both run in threads of this process. Returns what to stop."""
    started: list[Any] = []
    if args.cni_socket:
        cni = CNIServer(args.cni_socket)
        cni.start()
        started.append(cni)
    if args.api_socket or args.api_listen:
        tcp = None
        if args.api_listen:
            host, _, port = args.api_listen.rpartition(":")
            tcp = (host or "0.0.0.0", int(port))
        token = None
        if args.api_token_file:
            token = Path(args.api_token_file).read_text().strip()
        server = serve(
            agent, args.api_socket, tcp=tcp, token=token or os.environ.get("CALICO_API_TOKEN")
        )
        started.append(server)
        log.info("node API on %s%s", args.api_socket or "-", f" and tcp {tcp}" if tcp else "")
        if args.api_socket:
            url = f"unix://{os.path.abspath(args.api_socket)}"
        else:
            host, port = server.tcp_address
            url = f"http://{args.api_advertise or host}:{port}"
        threading.Thread(
            target=publish_api_url, args=(agent, url), name="publish-api", daemon=True
        ).start()
    return started


def publish_api_url(agent: Agent, url: str, attempts: int = 60) -> None:
    """Say where this node's API answers, on its Node resource (annotation
    `calico-rkt.io/api`), so the console finds every node from etcd alone. Retried until
    etcd answers; a Node that does not exist yet is created."""

    for _ in range(attempts):
        if agent.stop_event.is_set():
            return
        try:
            ds = Datastore.connect(agent.endpoints, timeout=5.0)
            try:
                try:
                    node = ds.get(Node, agent.nodename)
                except NotFound:
                    node = Node(metadata=Metadata(name=agent.nodename))
                    node.metadata.annotations[Node.API_ANNOTATION] = url
                    ds.create(node)
                    return
                if node.metadata.annotations.get(Node.API_ANNOTATION) == url:
                    return
                node.metadata.annotations[Node.API_ANNOTATION] = url
                ds.update(node)
                return
            finally:
                ds.close()
        except (Conflict, DatastoreError) as exc:
            log.debug("publishing the API address: %s", exc)
        agent.stop_event.wait(1.0)
    log.warning("could not publish the API address %s on Node %s", url, agent.nodename)


def stop_api(started: list[Any]) -> None:
    for thing in reversed(started):
        service = getattr(thing, "service", None)
        try:
            thing.stop()
            if service is not None:
                service.close()
                if service.flows is not None:
                    service.flows.stop()
        except Exception as exc:  # leaving anyway; say what could not be stopped
            log.warning("stopping %s: %s", type(thing).__name__, exc)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="calico-agent",
        description="Program this network namespace's iptables, ipsets and routes from etcd.",
    )
    p.add_argument(
        "--nodename",
        default=os.environ.get("CALICO_NODENAME"),
        help="this node's name (default: $CALICO_NODENAME)",
    )
    p.add_argument(
        "--etcd-endpoints",
        default=None,
        help="comma-separated etcd URLs (default: $ETCD_ENDPOINTS, then calicoctl.cfg)",
    )
    for flag, var in (
        ("--etcd-ca-cert-file", "ETCD_CA_CERT_FILE"),
        ("--etcd-cert-file", "ETCD_CERT_FILE"),
        ("--etcd-key-file", "ETCD_KEY_FILE"),
    ):
        p.add_argument(
            flag,
            metavar="PATH",
            default=None,
            help=f"etcd TLS (default: ${var}, then calicoctl.cfg)",
        )
    p.add_argument("--once", action="store_true", help="sync, apply once, exit")
    p.add_argument(
        "--refresh-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between full reads of the kernel state to repair drift (default 10)",
    )
    p.add_argument(
        "--api-socket",
        metavar="PATH",
        default=os.environ.get("CALICO_AGENT_SOCKET"),
        help="serve the node API on this unix socket (default: $CALICO_AGENT_SOCKET)",
    )
    p.add_argument(
        "--api-listen", metavar="HOST:PORT", help="also serve the API on TCP (needs a token)"
    )
    p.add_argument("--api-token-file", metavar="PATH", help="bearer token for --api-listen")
    p.add_argument(
        "--api-advertise",
        metavar="HOST",
        help="address to publish for --api-listen when it binds 0.0.0.0 (default: the bind host)",
    )
    p.add_argument(
        "--cni-socket",
        metavar="PATH",
        default=os.environ.get("CALICO_CNI_SOCKET"),
        help="run CNI requests handed over by the calico plugins (default: $CALICO_CNI_SOCKET)",
    )
    p.add_argument("--health-file", metavar="PATH", help="keep health JSON in this file")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default_backend(),
        help="bird: BIRD distributes routes (BGP); direct: routes to remote blocks via their "
        "node, for a flat L2 fabric (default: $CALICO_NETWORKING_BACKEND, else bird)",
    )
    p.add_argument(
        "--run-dir",
        metavar="DIR",
        default=default_run_dir(),
        help="the node's runtime dir: bird.conf, bird.ctl (default: $CALICO_RUN_DIR, else "
        f"{DEFAULT_RUN_DIR})",
    )
    p.add_argument("--status-interval", type=float, default=5.0, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default=os.environ.get("CALICO_AGENT_LOG", "INFO"))
    args = p.parse_args(argv)
    if not args.nodename:
        p.error("--nodename (or CALICO_NODENAME) is required")
    if args.refresh_interval <= 0:
        p.error("--refresh-interval must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s calico-agent[%(process)d] %(levelname)s %(message)s",
    )

    try:
        settings = resolve_settings(
            args.etcd_endpoints, args.etcd_ca_cert_file, args.etcd_cert_file, args.etcd_key_file
        )
        agent = Agent(
            args.nodename,
            settings,
            refresh_interval=args.refresh_interval,
            once=args.once,
            health_file=Path(args.health_file) if args.health_file else None,
            status_interval=args.status_interval,
            backend=args.backend,
            run_dir=args.run_dir,
        )
    except ConfigError as exc:
        print(f"calico-agent: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    started = [] if args.once else start_api(agent, args)
    try:
        code = agent.run()
    except ConfigError as exc:
        print(f"calico-agent: {exc}", file=sys.stderr)
        return 2
    finally:
        stop_api(started)
    log.info("calico-agent stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
