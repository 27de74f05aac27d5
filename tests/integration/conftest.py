"""Integration fixtures. `lab`: one 2-node lab cluster shared by the whole session."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def lab_prerequisites_missing() -> str | None:
    """Why a lab cannot be made on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, mounts)"
    for tool in ("etcd", "ip", "nsenter", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@contextmanager
def dedicated_lab(
    base: Path, nodes: int, networks: Iterable[str] = (), **options: Any
) -> Iterator[Any]:
    """A lab of a module's own (unique name `ct<hex>` under `base`) with a calico +
    calico-ipam network file per name in `networks` on every node; torn down on exit even
    when the module fails."""
    from lab.cluster import Lab

    reason = lab_prerequisites_missing()
    if reason:
        pytest.skip(reason)
    name = "ct" + secrets.token_hex(2)
    cluster = Lab(name, state_dir=base / name)
    try:
        cluster.up(nodes=nodes, **options)  # options: topology, tor_bgp, ipip_mode...
        for node in cluster.nodes:
            for net in networks:
                conf = {"name": net, "cniVersion": "0.1.0", "type": "calico",
                        "ipam": {"type": "calico-ipam"}}  # fmt: skip
                cluster.write_net_conf(node, f"10-calico-{net}.conf", conf)
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def lab(tmp_path_factory, request):
    """A running lab (nodes calico-01, calico-02) with a unique name, torn down at the end
    of the session even when tests fail. Its state dir is <tmp>/labs/<name>;
    `calico-lab status --name <name>` finds it by hand (through /run/calico-lab)."""
    with dedicated_lab(tmp_path_factory.mktemp("labs"), 2) as cluster:  # tears down on failure
        request.config.calico_lab = cluster
        yield cluster


@pytest.fixture(autouse=True, scope="module")
def _pods_removed_after_each_module(request):
    """Whatever pods a module left on the shared lab (its own, or the agents' probe pods)
    are stopped and removed, so the next module starts from a clean lab: only `node` runs."""
    yield
    cluster = getattr(request.config, "calico_lab", None)
    if cluster is None:
        return
    import json

    for node in cluster.nodes:
        listing = cluster.exec(node, ["rkt", "list", "--format=json"], timeout=60)
        try:
            pods = json.loads(listing.stdout or "[]")
        except ValueError:
            continue
        for pod in pods:
            if "node" in pod.get("app_names", []):
                continue
            cluster.exec(node, ["rkt", "stop", "--force", pod["name"]], timeout=60)
            cluster.exec(node, ["rkt", "rm", pod["name"]], timeout=60)
