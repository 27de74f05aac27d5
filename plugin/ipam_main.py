"""`calico-ipam`: the CNI IPAM plugin. Addresses come from IPPool resources, in blocks
claimed per node, through plugin/ipam_store.py's transactions.

ADD   one IPv4 address per attachment, owned by the handle `<network>.<containerID>`:
      the runtime's choice when it names one (CNI_ARGS `IP=`, `args.cni.ips`,
      `runtimeConfig.ips`: it must be in a pool and free), else from the node's blocks,
      a newly claimed block, or borrowed from another node's block. `ipv4_pools` limits
      automatic assignment to those pools (by name or CIDR). Result: `ip/32`.
DEL   release everything the handle holds; nothing held is success.
CHECK the handle still holds the addresses of prevResult.
GC    (1.1.0) every handle `<network>.<containerID>` of this network whose containerID is
      not in `cni.dev/valid-attachments` is released as DEL releases it. Other networks'
      handles are never touched (a network whose name is this one's plus `.<more>` shares
      the prefix: Calico's handle naming cannot tell those apart).

IPv6 (`assign_ipv6: "true"`) is refused with a clear error: the block model is IPv4-only.

`calico` calls `ipam_add`/`ipam_del`/`ipam_gc` in-process when its ipam type is calico-ipam, so the
exec path costs one process, not two.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

from calico import ipam, ipam_store, keys
from calico.config import ConfigError
from calico.errors import DatastoreError, Unavailable
from plugin.errors import (
    ADDRESS_UNAVAILABLE,
    INVALID_CONFIG,
    NO_POOLS,
    PLUGIN_FAILURE,
    POOLS_EXHAUSTED,
    TRY_AGAIN_LATER,
    CNIError,
)
from plugin.result import IPConfig, Result
from plugin.shim import main as shim_main
from plugin.spec import Attachment, Request, dispatch


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Datastore and IPAM failures -> the CNI codes a runtime acts on."""

    try:
        yield
    except Unavailable as exc:
        raise CNIError(TRY_AGAIN_LATER, "datastore unavailable", str(exc)) from None
    except ipam_store.TooManyConflicts as exc:
        raise CNIError(TRY_AGAIN_LATER, "datastore busy", str(exc)) from None
    except ipam_store.NoPools as exc:
        raise CNIError(NO_POOLS, "no usable IP pool", str(exc)) from None
    except ipam_store.PoolsExhausted as exc:
        raise CNIError(POOLS_EXHAUSTED, "IP pools exhausted", str(exc)) from None
    except ipam_store.AddressUnavailable as exc:
        raise CNIError(ADDRESS_UNAVAILABLE, "requested address unavailable", str(exc)) from None
    except ConfigError as exc:
        raise CNIError(INVALID_CONFIG, "invalid etcd settings", str(exc)) from None
    except DatastoreError as exc:
        raise CNIError(PLUGIN_FAILURE, "datastore error", str(exc)) from None


def node_of(req: Request) -> str:
    return req.nodename(socket.gethostname())


def _datastore(req: Request) -> Any:
    return ipam_store.datastore_for(req.etcd_settings())


def _secondary(req: Request, node: str) -> dict[str, str]:
    # Calico's allocation attributes: which node, and the pod when an orchestrator says.
    attrs = {"node": node}
    if req.args.k8s_pod_name:
        attrs["pod"] = req.args.k8s_pod_name
        attrs["namespace"] = req.args.k8s_pod_namespace or "default"
    return attrs


def ipam_add(req: Request, rider: ipam_store.Rider | None = None) -> Result:
    """Assign the attachment's address. `rider` (the calico plugin's endpoint write)
    rides in the address's transaction when there is one address to assign; with several
    requested ones it is left uncommitted, for its owner to write afterwards."""
    assert req.conf is not None
    cfg = req.conf.require_ipam()
    if cfg.assign_ipv6:
        raise CNIError(
            INVALID_CONFIG,
            "IPv6 is not supported",
            'calico-ipam here assigns IPv4 only; set "assign_ipv6": "false"',
        )
    if not cfg.assign_ipv4:
        raise CNIError(INVALID_CONFIG, "invalid ipam config", "assign_ipv4 is false: nothing to do")
    requested = req.requested_ips()
    for ip in requested:
        if ip.version != 4:
            raise CNIError(ADDRESS_UNAVAILABLE, "requested address unavailable", f"{ip} is IPv6")
    node = node_of(req)
    handle_id = req.handle_id
    attrs = _secondary(req, node)
    with store_errors():
        ds = _datastore(req)
        got: list[ipaddress.IPv4Address] = []
        try:
            if requested:
                ride = rider if len(requested) == 1 else None
                for ip in requested:
                    got.append(ipam_store.assign_ip(ds, node, handle_id, ip, attrs, ride))  # type: ignore[arg-type]
            else:
                got.append(
                    ipam_store.auto_assign(ds, node, handle_id, cfg.ipv4_pools, attrs, rider)
                )
        except BaseException:
            if got:  # a second requested address failed: give back the first
                with contextlib.suppress(Exception):
                    ipam_store.release_by_handle(ds, handle_id)
            raise
    return Result(ips=[IPConfig(address=ipaddress.IPv4Interface(f"{ip}/32")) for ip in got])


def ipam_del(req: Request) -> list[ipaddress.IPv4Address]:
    with store_errors():
        return ipam_store.release_by_handle(_datastore(req), req.handle_id)


def valid_attachments(req: Request) -> list[Attachment]:
    """GC's list of attachments still in use. Absent is refused rather than read as
    "nothing is in use", which would release every address of the network."""
    assert req.conf is not None
    if req.conf.valid_attachments is None:
        raise CNIError(
            INVALID_CONFIG, "invalid network config", "GC needs cni.dev/valid-attachments"
        )
    return req.conf.valid_attachments


def _handle_nodes(ds: Any) -> dict[str, set[str]]:
    """handle id -> the nodes its addresses were assigned to (the allocation's `node`
    attribute, else the block's affinity). Blocks keep only attributes in use."""
    out: dict[str, set[str]] = {}
    for kv in ds.kv_list(keys.BLOCK_PREFIX)[0]:
        block = ipam.Block.from_json(kv.value)
        for attr in block.attributes:
            if attr.handle_id:
                node = (attr.secondary or {}).get("node") or block.node or ""
                out.setdefault(attr.handle_id, set()).add(node)
    return out


def ipam_gc(req: Request) -> list[str]:
    """Release every handle of this network whose container is not in the valid list and
    whose addresses belong to this node (a runtime lists only its own node's attachments:
    another node's pods are never its to collect); returns the handles released."""
    assert req.conf is not None
    valid = {a.container_id for a in valid_attachments(req)}
    node = node_of(req)
    prefix = keys.handle_key(ipam.make_handle_id(req.conf.name, ""))
    released: list[str] = []
    with store_errors():
        ds = _datastore(req)
        kvs, _ = ds.kv_list(prefix)
        owners = _handle_nodes(ds) if kvs else {}
        for kv in kvs:
            handle_id = kv.key[len(keys.HANDLE_PREFIX) :]
            if handle_id[len(prefix) - len(keys.HANDLE_PREFIX) :] in valid:
                continue
            if owners.get(handle_id, set()) - {node}:
                continue  # held on another node
            ipam_store.release_by_handle(ds, handle_id)
            released.append(handle_id)
    return released


def ipam_check(req: Request) -> None:
    assert req.conf is not None
    prev = req.conf.prev_result
    if prev is None:
        raise CNIError(INVALID_CONFIG, "invalid network config", "CHECK needs prevResult")
    with store_errors():
        held = set(ipam_store.handle_ips(_datastore(req), req.handle_id))
    for ip in prev.ips:
        if ip.address.version == 4 and ip.address.ip not in held:
            raise CNIError(
                PLUGIN_FAILURE,
                "check failed",
                f"{ip.address.ip} is not allocated to {req.handle_id} any more",
            )


def cmd_add(req: Request) -> Result:
    return ipam_add(req)


def cmd_del(req: Request) -> None:
    ipam_del(req)


def cmd_check(req: Request) -> None:
    ipam_check(req)


def cmd_gc(req: Request) -> None:
    ipam_gc(req)


HANDLERS = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "GC": cmd_gc}


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """The shim's entry: one request dict in, one reply dict out."""
    return dispatch(request, HANDLERS)


def main() -> int:

    return shim_main("calico-ipam")
