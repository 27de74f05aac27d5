"""A small client for a node agent's API (httpx); the console and the tests use it.

A node publishes where its API is on its Node resource (annotation `calico-rkt.io/api`):
`unix:///path/to/agent.sock` for the lab and single hosts, `http://host:port` (with a
bearer token) for remote nodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx


class NodeAPIError(Exception):
    """The agent answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _refusal(resp: httpx.Response) -> NodeAPIError:
    """An error answer as NodeAPIError: the message of its JSON body (`{"error": ...}`),
    else its text, and the status."""
    try:
        message = resp.json().get("error", resp.text)
    except ValueError:
        message = resp.text
    return NodeAPIError(str(message), resp.status_code)


class NodeClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if url.startswith("unix://"):
            transport = httpx.HTTPTransport(uds=url[len("unix://") :])
            base = "http://node"
        else:
            transport = httpx.HTTPTransport()
            base = url.rstrip("/")
        self.http = httpx.Client(
            base_url=base, transport=transport, headers=headers, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing
    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        try:
            resp = self.http.request(
                method,
                "/v1" + path if not path.startswith("/metrics") else path,
                json=body,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise NodeAPIError(f"node API at {self.url} unreachable: {exc}") from None
        if resp.status_code >= 400:
            raise _refusal(resp)
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.text

    # -- reads
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def pods(self) -> list[dict[str, Any]]:
        return self._call("GET", "/pods")

    def networks(self) -> list[dict[str, Any]]:
        return self._call("GET", "/networks")

    def endpoints(self) -> list[dict[str, Any]]:
        return self._call("GET", "/endpoints")

    def dataplane(self, endpoint: str | None = None) -> dict[str, Any]:
        """Chains with counters and each rule's origin, ipsets, routes; `endpoint` (a
        WorkloadEndpoint name or interface) narrows to that endpoint's."""
        if endpoint:
            return self._call("GET", "/dataplane?" + urlencode({"endpoint": endpoint}))
        return self._call("GET", "/dataplane")

    def metrics(self) -> str:
        return self._call("GET", "/metrics")

    def bgp(self) -> dict[str, Any]:
        """The node's BGP daemon and its peers: backend, running, router_id, peers, error."""
        return self._call("GET", "/bgp")

    # -- actions
    def run_pod(
        self,
        image: str = "docker://busybox",
        networks: list[str] | None = None,
        exec_: str | None = None,
        args: list[str] | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Start a pod like `rkt run`; with wait=True, until it exits (output included)."""
        body = {
            "image": image,
            "networks": networks or [],
            "exec": exec_,
            "args": args or [],
            "wait": wait,
        }
        return self._call("POST", "/pods", body, timeout=timeout)

    def stop_pod(self, uuid: str, force: bool = True) -> dict[str, Any]:
        return self._call("POST", f"/pods/{uuid}/stop", {"force": force})

    def remove_pod(self, uuid: str) -> dict[str, Any]:
        return self._call("DELETE", f"/pods/{uuid}")

    def probe(
        self,
        address: str,
        port: int,
        pod: str | None = None,
        network: str | None = None,
        timeout: float = 3.0,
        http: bool = False,
        source_ip: str | None = None,
    ) -> dict[str, Any]:
        """From a pod (uuid) or a fresh pod on a network: connected / refused / timed out.
        `source_ip`: connect from that address of the pod (one per interface)."""
        body = {
            "address": address,
            "port": port,
            "pod": pod,
            "network": network,
            "timeout": timeout,
            "http": http,
        }
        if source_ip:
            body["source_ip"] = source_ip
        return self._call("POST", "/probes", body, timeout=timeout + 10)

    def probes(self, requests: list[dict[str, Any]], timeout: float = 3.0) -> list[dict[str, Any]]:
        """Many probes at once, run concurrently by the agent."""
        return self._call("POST", "/probes/batch", {"probes": requests}, timeout=timeout + 15)

    def flows(self, follow: bool = False, **filters: str) -> Iterator[dict[str, Any]]:
        """Flow records, newest last; follow=True streams until the caller stops reading."""
        params = {k: v for k, v in filters.items() if v}
        if follow:
            params["follow"] = "1"
        return self.stream("/v1/flows", params, "flow")

    def logs(
        self, uuid: str, follow: bool = False, tail: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """A pod's output: {"type": "line", "line": ...} records, then {"type": "end",
        "state": ..., "exit_code": ...}; follow=True streams until the pod ends."""
        params = {"follow": "1"} if follow else {}
        if tail is not None:
            params["tail"] = str(tail)
        return self.stream(f"/v1/pods/{uuid}/logs", params, "log")

    def stream(
        self,
        path: str,
        params: dict[str, str],
        what: str,
        opened: Callable[[Any], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The records of a JSON-lines answer (one object a line, blank lines skipped), as
        they arrive. The connection waits at most the client's timeout; reads wait as long
        as the stream lasts (a follow stream's keepalives come every 15 s).

        `opened` is called once the agent has accepted the request, with httpcore's network
        stream: a thread that must end a blocked read shuts its socket down
        (console/nodestream.py). An error answer is NodeAPIError with the agent's message
        and the status; a broken connection NodeAPIError("<what> stream from ... broke")."""
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            with self.http.stream("GET", path, params=params, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _refusal(resp)
                if opened is not None:
                    opened(resp.extensions.get("network_stream"))
                for line in resp.iter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.HTTPError as exc:
            raise NodeAPIError(f"{what} stream from {self.url} broke: {exc}") from None
