"""`calico`: the CNI network plugin. Wires a pod into the node Calico's way and records
it in etcd.

ADD    IPAM (calico-ipam in-process; any other `ipam.type` exec'd from CNI_PATH as a
       runtime would) with the WorkloadEndpoint and the network's Profile
       (plugin/endpoint.py) in the same etcd transaction as the address (calico-ipam;
       else written right after it), while a helper thread makes the veth; then its
       addresses and routes (plugin/veth.py). Any failure after the IPAM ADD releases
       the address, takes the endpoint off and removes a half-made veth, on every path.
       Where the milliseconds go: plugin/phases.py, bench/bench_cni.py.
DEL    release by handle `<network>.<containerID>`, take the endpoint off, delete the
       veth. Missing netns, endpoint or address is success (DEL is repeatable); the
       kernel and etcd halves run side by side since neither needs the other.
CHECK  (cniVersion >= 0.4.0) the veth, addresses and routes against prevResult, the
       allocation and the endpoint; the first thing that differs is the error.
STATUS (1.1.0) etcd answers, else code 50.
GC     (1.1.0) on this node, every `cni` WorkloadEndpoint carrying this network's profile
       whose (containerID, interface) is not in `cni.dev/valid-attachments` loses the
       profile (or is deleted, as DEL does) and, when deleted, its veth; then, with
       calico-ipam, every handle of this network not in the list is released in-process
       (plugin/ipam_main.py). Other networks' and other nodes' endpoints are left alone.

Endpoint choice for a pod on a second calico network: see plugin/endpoint.py (one
endpoint per interface, as Calico names them; a second network on the same interface
appends its profile).

Failure codes: etcd unreachable -> 11 (try again later; every etcd call has a 2 s
deadline, so the answer comes within 5 s); pools -> 101/102/103 (plugin/ipam_main.py);
bad input -> the spec's 1/4/6/7 (plugin/spec.py); kernel errors -> 100 with the step.

Test hook: CALICO_CNI_PAUSE_AFTER_IPAM=<file> makes ADD create <file> once the address
is allocated and then sleep, so a test can SIGKILL the plugin half-way through.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import ipaddress
import json
import os
import subprocess
import threading
import time
from typing import Any

from calico import ipam_store
from calico.errors import DatastoreError
from calico.keys import kind_prefix
from calico.resources import WorkloadEndpoint
from kernel.ns import NamespaceError
from plugin import endpoint, ipam_main, phases, veth
from plugin.errors import (
    INVALID_CONFIG,
    PLUGIN_FAILURE,
    PLUGIN_NOT_AVAILABLE,
    TRY_AGAIN_LATER,
    CNIError,
)
from plugin.result import Interface, IPConfig, Result, Route, parse_result
from plugin.shim import main as shim_main
from plugin.spec import Request, dispatch

CALICO_IPAM = "calico-ipam"
PAUSE_HOOK_ENV = "CALICO_CNI_PAUSE_AFTER_IPAM"
EXEC_TIMEOUT = 60.0


# ---- logging (config log_file / log_level) -----------------------------------------------


def _log(req: Request, level: str, text: str) -> None:
    """One line per outcome into the config's log_file; nothing when none is set."""
    conf = req.conf
    if conf is None or not conf.log_file:
        return
    if level == "debug" and conf.log_level != "debug":
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    line = (
        f"{stamp} {level.upper()} {req.command} net={conf.name} "
        f"container={req.env.container_id} if={req.env.ifname}: {text}\n"
    )
    with contextlib.suppress(OSError), open(conf.log_file, "a") as fh:
        fh.write(line)


# ---- delegated IPAM ----------------------------------------------------------------------


def _find_plugin(req: Request, name: str) -> str:
    if not name or "/" in name:
        raise CNIError(INVALID_CONFIG, "invalid ipam config", f"bad ipam type {name!r}")
    for d in req.env.path:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise CNIError(
        INVALID_CONFIG,
        "unknown IPAM type",
        f"ipam type {name!r}: no such plugin in CNI_PATH {':'.join(req.env.path)}",
    )


def _exec_ipam(req: Request, command: str) -> Result | None:
    """Run the configured IPAM plugin like a runtime: same env and config, our command."""

    assert req.conf is not None
    plugin = _find_plugin(req, req.conf.require_ipam().type)
    env = {**os.environ, **req.full_env, "CNI_COMMAND": command}
    try:
        proc = subprocess.run(
            [plugin],
            input=req.stdin.encode(),
            env=env,
            capture_output=True,
            timeout=EXEC_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CNIError(PLUGIN_FAILURE, f"IPAM plugin {plugin} failed", str(exc)) from None
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            raise CNIError(
                int(err.get("code", PLUGIN_FAILURE)),
                str(err.get("msg", f"IPAM plugin {plugin} failed")),
                str(err.get("details", "")),
            )
        except (ValueError, AttributeError):
            detail = (out or proc.stderr.decode(errors="replace")).strip()
            raise CNIError(PLUGIN_FAILURE, f"IPAM plugin {plugin} failed", detail) from None
    if command != "ADD":
        return None
    try:
        data = json.loads(out)
        return parse_result(data, data.get("cniVersion") or req.cni_version)
    except (ValueError, CNIError, AttributeError) as exc:
        raise CNIError(
            PLUGIN_FAILURE, f"IPAM plugin {plugin} returned an unreadable result", str(exc)
        ) from None


def _calico_ipam(req: Request) -> bool:
    assert req.conf is not None
    return req.conf.require_ipam().type == CALICO_IPAM


def ipam_release(req: Request) -> list[ipaddress.IPv4Address]:
    if _calico_ipam(req):
        return ipam_main.ipam_del(req)
    _exec_ipam(req, "DEL")
    return []


# ---- ADD ---------------------------------------------------------------------------------


def _pause_hook(req: Request) -> None:
    path = req.full_env.get(PAUSE_HOOK_ENV)
    if path:
        with open(path, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(60)


def ipam_add(req: Request, rider: endpoint.Rider | None = None) -> Result:
    """The address; with calico-ipam the endpoint and profile ride in its transaction."""
    if _calico_ipam(req):
        return ipam_main.ipam_add(req, rider)
    return _exec_ipam(req, "ADD")  # type: ignore[return-value]


def cmd_add(req: Request) -> Result:
    conf = req.conf
    assert conf is not None
    conf.require_ipam()
    netns = req.env.netns
    # Before any allocation: a namespace that is not there fails cleanly, nothing to undo.
    if not os.path.exists(netns):
        raise CNIError(PLUGIN_FAILURE, "failed to open netns", f"{netns} does not exist")
    node = ipam_main.node_of(req)
    cid, ifname = req.env.container_id, req.env.ifname

    # The veth does not need the address: it is made while IPAM talks to etcd (unless a
    # test pauses between the two, when the order must be IPAM first).
    pod_mac = veth.random_mac()  # chosen here so the endpoint can be written meanwhile

    def make_veth() -> veth.Pending:
        with phases.phase("veth.create"):
            return veth.create(netns, cid, ifname, conf.mtu, pod_mac)

    kernel = _Background(make_veth, start=PAUSE_HOOK_ENV not in req.full_env)
    rider: endpoint.Rider | None = None
    try:
        with ipam_main.store_errors():
            info = endpoint.EndpointInfo(
                node=node,
                container_id=cid,
                ifname=ifname,
                host_ifname=veth.host_ifname(cid, ifname),
                mac=pod_mac,
                ip_networks=[],  # the address, once IPAM has chosen it
                network=conf.name,
                pod=req.args.k8s_pod_name,
            )
            rider = endpoint.Rider(ipam_main._datastore(req), info)
        with phases.phase("ipam"):
            ipam_result = ipam_add(req, rider)
    except BaseException:
        pending = kernel.result(suppress=True)
        if pending is not None:
            veth.abort(pending)
        if rider is not None and (rider.state or rider.sent):
            # The transaction committed and something after it failed, or it was sent and
            # its answer lost (an etcd leader dying): nothing may stay half-way, so the
            # address goes back and this ADD's network comes off the endpoint, unless the
            # endpoint was another network's that the transaction did not write.
            with contextlib.suppress(CNIError):
                ipam_release(req)
            if rider.state != "exists":
                _unrecord(req, rider)
        raise
    try:
        _pause_hook(req)
        v4 = [ip.address for ip in ipam_result.ips if ip.address.version == 4]
        if not v4:
            raise CNIError(PLUGIN_FAILURE, "IPAM returned no IPv4 address", str(ipam_result.ips))
        plumbed = _plumb_and_record(req, v4, kernel, rider)
    except BaseException as exc:
        # Every failure after the allocation gives the address back (and the endpoint,
        # if it committed with it: see _plumb_and_record).
        try:
            ipam_release(req)
        except CNIError as rel:
            _log(req, "error", f"releasing after a failed ADD: {rel}")
        _log(req, "error", str(exc))
        if isinstance(exc, endpoint.EndpointConflict):
            raise CNIError(TRY_AGAIN_LATER, "datastore busy", str(exc)) from None
        raise

    result = Result(
        interfaces=[
            Interface(name=plumbed.host_ifname, mac=plumbed.host_mac),
            Interface(name=ifname, mac=plumbed.pod_mac, sandbox=netns),
        ],
        ips=[
            IPConfig(
                address=ipaddress.IPv4Interface(f"{ip.ip}/32"), gateway=veth.GATEWAY, interface=1
            )
            for ip in v4
        ],
        routes=[Route(dst=veth.DEFAULT_NET, gw=veth.GATEWAY)],
        dns=conf.dns,
    )
    _log(req, "info", f"added {', '.join(str(ip) for ip in v4)} on {plumbed.host_ifname}")
    return result


def _unrecord(req: Request, rider: endpoint.Rider) -> None:
    """Take this ADD's network off the endpoint it wrote (best effort: the caller is
    already failing; a leftover is what `calicoctl ipam check` finds)."""
    conf = req.conf
    assert conf is not None
    info = rider.info
    with contextlib.suppress(Exception):
        endpoint.remove(
            rider.ds,
            info.node,
            info.container_id,
            info.ifname,
            conf.name,
            [n.split("/")[0] for n in info.ip_networks],
        )


# Helper threads for the kernel half of ADD, started once per process and reused: a new
# thread per ADD made the request wait for it to be scheduled (Thread.start() blocks until
# the thread runs: 0.5-1 ms on a loaded 2-core node, bench/bench_cni.py's trace).
# Generous, since a veth waits mostly on the kernel's rtnl lock, not on Python.
KERNEL_WORKERS = 32
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _kernel_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(KERNEL_WORKERS, "cni-kernel")
        return _pool


class _Background:
    """Run one function on a helper thread (or, with start=False, later in the caller's
    thread) and hand back its result or exception."""

    def __init__(self, fn: Any, start: bool = True) -> None:
        self.fn = fn
        self.value: Any = None
        self.error: BaseException | None = None
        self.future: concurrent.futures.Future[None] | None = None
        self.done = False
        if start:
            # In a copy of the caller's context: the request's trace (plugin/phases.py).
            ctx = contextvars.copy_context()
            self.future = _kernel_pool().submit(ctx.run, self._run)

    @property
    def started(self) -> bool:
        """Running (or ran) on a helper thread; False: `result()` runs it here."""
        return self.future is not None

    def _run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:
            self.error = exc

    def result(self, suppress: bool = False) -> Any:
        if self.future is None:
            if not self.done:
                self._run()
        else:
            self.future.result()  # _run catches everything: this only waits
        self.done = True
        if self.error is not None:
            if suppress:
                return None
            raise self.error
        return self.value


def _plumb_and_record(
    req: Request, v4: list[Any], kernel: _Background, rider: endpoint.Rider
) -> veth.Plumbed:
    """Record the endpoint (unless it committed with the address already) while the veth
    is being made, then give the veth its addresses and routes. If either half fails,
    the other is undone (the caller releases the address)."""
    rider.info.ip_networks = [f"{ip.ip}/32" for ip in v4]
    written = rider.state == "created"

    def unwrite() -> None:
        if written:
            _unrecord(req, rider)

    try:
        if not kernel.started:
            kernel.result(suppress=True)  # sequential mode: IPAM, then the veth
        with ipam_main.store_errors(), phases.phase("wep.write"):
            rider.finish()
            written = True
        with phases.phase("veth.wait"):
            pending = kernel.result()
    except (veth.PlumbingError, NamespaceError) as exc:
        unwrite()
        raise CNIError(PLUGIN_FAILURE, "failed to set up the pod's interface", str(exc)) from None
    except BaseException:
        made = kernel.result(suppress=True)
        if made is not None:
            veth.abort(made)
        unwrite()
        raise
    try:
        with phases.phase("veth.finish"):
            return veth.finish(pending, v4)
    except (veth.PlumbingError, NamespaceError) as exc:
        unwrite()
        raise CNIError(PLUGIN_FAILURE, "failed to set up the pod's interface", str(exc)) from None


# ---- DEL ---------------------------------------------------------------------------------


def cmd_del(req: Request) -> None:
    conf = req.conf
    assert conf is not None
    conf.require_ipam()
    cid, ifname = req.env.container_id, req.env.ifname
    # The veth (and, in a pod still there, the interface's source rules) goes regardless
    # of etcd (deleting it takes the kernel ~10-20 ms, mostly
    # waiting for RCU), so it runs beside the etcd work instead of before it.
    kernel_error: list[BaseException] = []

    def delete_veth() -> None:
        try:
            with phases.phase("veth.teardown"):
                veth.teardown(cid, ifname, req.env.netns)
        except BaseException as exc:
            kernel_error.append(exc)

    ctx = contextvars.copy_context()  # the request's trace (plugin/phases.py)
    worker = threading.Thread(target=ctx.run, args=(delete_veth,), name=f"del-{cid[:12]}")
    worker.start()
    try:
        with phases.phase("ipam.release"):
            released = ipam_release(req)
        with ipam_main.store_errors(), phases.phase("wep.remove"):
            try:
                endpoint.remove(
                    ipam_main._datastore(req),
                    ipam_main.node_of(req),
                    cid,
                    ifname,
                    conf.name,
                    [str(ip) for ip in released],
                )
            except endpoint.EndpointConflict as exc:
                raise CNIError(TRY_AGAIN_LATER, "datastore busy", str(exc)) from None
    finally:
        with phases.phase("veth.wait"):
            worker.join()
    if kernel_error:
        raise CNIError(PLUGIN_FAILURE, "failed to delete the pod's interface", str(kernel_error[0]))
    _log(req, "info", f"deleted ({', '.join(map(str, released)) or 'no addresses held'})")


# ---- CHECK -------------------------------------------------------------------------------


def cmd_check(req: Request) -> None:
    conf = req.conf
    assert conf is not None
    prev = conf.prev_result
    if prev is None:
        raise CNIError(INVALID_CONFIG, "invalid network config", "CHECK needs prevResult")
    v4 = [ip.address for ip in prev.ips if ip.address.version == 4]
    pod_mac = next((i.mac for i in prev.interfaces if i.name == req.env.ifname and i.sandbox), "")
    try:
        veth.check(req.env.netns, req.env.container_id, req.env.ifname, v4, pod_mac)  # type: ignore[arg-type]
    except veth.CheckFailed as exc:
        raise CNIError(PLUGIN_FAILURE, "check failed", str(exc)) from None
    if _calico_ipam(req):
        ipam_main.ipam_check(req)
    else:
        _exec_ipam(req, "CHECK")
    with ipam_main.store_errors():
        wep = endpoint.read(
            ipam_main._datastore(req), ipam_main.node_of(req), req.env.container_id, req.env.ifname
        )
    name = endpoint.endpoint_name(ipam_main.node_of(req), req.env.container_id, req.env.ifname)
    if wep is None:
        raise CNIError(PLUGIN_FAILURE, "check failed", f"WorkloadEndpoint {name} does not exist")
    spec = wep.get("spec") or {}
    nets = spec.get("ipNetworks") or []
    for ip in v4:
        if f"{ip.ip}/32" not in nets:
            raise CNIError(
                PLUGIN_FAILURE, "check failed", f"WorkloadEndpoint {name} lacks {ip.ip}/32"
            )
    if conf.name not in (spec.get("profiles") or []):
        raise CNIError(
            PLUGIN_FAILURE, "check failed", f"WorkloadEndpoint {name} lacks profile {conf.name}"
        )


# ---- STATUS ------------------------------------------------------------------------------


def cmd_status(req: Request) -> None:

    try:
        ipam_main._datastore(req).revision()
    except DatastoreError as exc:
        raise CNIError(PLUGIN_NOT_AVAILABLE, "etcd is not reachable", str(exc)) from None


# ---- GC ----------------------------------------------------------------------------------


def _stale_endpoints(req: Request, ds: Any, node: str) -> list[dict[str, Any]]:
    """This node's cni endpoints with this network's profile that the runtime no longer
    lists (an attachment without ifname keeps every interface of its container)."""

    assert req.conf is not None
    valid = {(a.container_id, a.ifname) for a in ipam_main.valid_attachments(req)}
    prefix = kind_prefix(WorkloadEndpoint, endpoint.NAMESPACE) + endpoint.name_prefix(node)
    stale = []
    for kv in ds.kv_list(prefix)[0]:
        spec = kv.json().get("spec") or {}
        cid, ifname = spec.get("containerID", ""), spec.get("endpoint", "")
        if (
            spec.get("node") != node
            or spec.get("orchestrator") != endpoint.ORCHESTRATOR
            or req.conf.name not in (spec.get("profiles") or [])
            or not cid
            or (cid, ifname) in valid
            or (cid, "") in valid
        ):
            continue
        stale.append(spec)
    return stale


def cmd_gc(req: Request) -> None:
    conf = req.conf
    assert conf is not None
    conf.require_ipam()
    node = ipam_main.node_of(req)
    removed: list[str] = []
    kernel_errors: list[str] = []
    with ipam_main.store_errors():
        ds = ipam_main._datastore(req)
        for spec in _stale_endpoints(req, ds, node):
            cid, ifname = spec["containerID"], spec.get("endpoint", "")
            ips: list[str] = []
            if _calico_ipam(req):
                handle = f"{conf.name}.{cid}"
                ips = [str(ip) for ip in ipam_store.handle_ips(ds, handle)]
            try:
                endpoint.remove(ds, node, cid, ifname, conf.name, ips)
            except endpoint.EndpointConflict as exc:
                raise CNIError(TRY_AGAIN_LATER, "datastore busy", str(exc)) from None
            removed.append(f"{cid}/{ifname}")
            # The veth is the endpoint's (named by container and interface): it stays
            # only while another network still uses this endpoint.
            others = [p for p in spec.get("profiles") or [] if p != conf.name]
            if others:
                continue
            try:
                veth.teardown(cid, ifname)
            except (veth.PlumbingError, NamespaceError, OSError) as exc:
                kernel_errors.append(str(exc))
    released = ipam_main.ipam_gc(req) if _calico_ipam(req) else []
    if kernel_errors:
        raise CNIError(PLUGIN_FAILURE, "failed to delete a stale interface", kernel_errors[0])
    _log(req, "info", f"gc: endpoints {removed or 'none'}, handles {released or 'none'}")


HANDLERS = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "STATUS": cmd_status,
    "GC": cmd_gc,
}


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """The shim's entry (agent or in-process): one request dict in, one reply dict out."""
    return dispatch(request, HANDLERS)


def main() -> int:

    return shim_main("calico")
