"""Helpers for the tests that work on the shared lab through its nodes' APIs: a client for a
node's agent, the pods each node has, and the walkthrough's networks + httpd steps run as
`calico-lab tutorial` runs them, with every pod made meanwhile removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from calico.nodeapi import NodeClient
from calico.tutorial import Tutorial


def node_api(lab, node: str, timeout: float = 10.0) -> NodeClient:
    """A client for `node`'s agent, over its unix socket in the lab's state dir."""
    return NodeClient(f"unix://{lab.state_dir / 'nodes' / node / 'agent.sock'}", timeout=timeout)


def pod_ids(lab) -> dict[str, set[str]]:
    """Each node's pods (UUIDs), the node's own `node` pod left out."""
    out = {}
    for node in lab.nodes:
        with node_api(lab, node) as client:
            out[node] = {p["uuid"] for p in client.pods() if p.get("app") != "node"}
    return out


@contextmanager
def walkthrough_httpd(lab) -> Iterator[None]:
    """The walkthrough's `networks` and `httpd` steps on the lab's first two nodes; on exit,
    every pod made since (the agents' probe pods too) is stopped and removed, and the test
    fails if one is left."""
    before = pod_ids(lab)

    def shell(node, argv, input=None, timeout=30.0):
        proc = lab.exec(node, argv, input=input, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr

    tut = Tutorial(nodes=tuple(lab.nodes[:2]))
    keys = [s.key for s in tut.steps]
    try:
        for key in ("networks", "httpd"):
            result = tut.run_step(keys.index(key), shell)
            assert result.ok, result.seen
        yield
    finally:
        for node, uuids in pod_ids(lab).items():
            with node_api(lab, node) as client:
                for uuid in uuids - before.get(node, set()):
                    try:
                        client.stop_pod(uuid)
                    except Exception:
                        pass
                    client.remove_pod(uuid)
        assert pod_ids(lab) == before, "pods left behind"
