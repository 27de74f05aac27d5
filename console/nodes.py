"""Polls every node's agent API in a background thread; a node that goes away is shown
as unreachable, never as a crash.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from calico.nodeapi import NodeAPIError, NodeClient
from console.model import NodeInfo


class NodePoller:
    """Every `interval` seconds, asks each node for health, pods, networks and BGP, in parallel."""

    def __init__(
        self,
        nodes: Callable[[], dict[str, str]],  # node name -> API URL (from Node resources)
        deliver: Callable[[dict[str, NodeInfo]], None],
        interval: float = 1.0,
        timeout: float = 2.0,
    ):
        self.nodes = nodes
        self.deliver = deliver
        self.interval = interval
        self.timeout = timeout
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.clients: dict[str, NodeClient] = {}

    def client(self, url: str) -> NodeClient:
        if url not in self.clients:
            self.clients[url] = NodeClient(url, timeout=self.timeout)
        return self.clients[url]

    def poll_one(self, name: str, url: str) -> NodeInfo:
        if not url:
            return NodeInfo(reachable=False, error="node publishes no API address")
        client = self.client(url)
        try:
            health = client.health()
            pods = client.pods()
            try:
                networks = client.networks()
            except NodeAPIError:
                networks = []
        except NodeAPIError as exc:
            return NodeInfo(reachable=False, error=str(exc))
        bgp, bgp_error = None, ""
        try:
            bgp = client.bgp()
        except NodeAPIError as exc:
            bgp_error = "not served by this agent" if exc.status == 404 else str(exc)
        return NodeInfo(
            reachable=True,
            health=health,
            pods=pods,
            networks=networks,
            bgp=bgp,
            bgp_error=bgp_error,
        )

    def poll_all(self) -> dict[str, NodeInfo]:
        targets = self.nodes()
        if not targets:
            return {}
        with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
            futures = {name: pool.submit(self.poll_one, name, url) for name, url in targets.items()}
            return {name: f.result() for name, f in futures.items()}

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.deliver(self.poll_all())
            self.wake.wait(self.interval)
            self.wake.clear()
        for client in self.clients.values():
            client.close()

    def poll_now(self) -> None:
        """Skip the rest of the wait (after an action the user expects to see at once)."""
        self.wake.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()
