"""Follow one node's flow stream in a thread; stoppable at once, reconnecting on failure.

The agent streams JSON lines (`GET /v1/flows?follow=1`) with a keepalive every 15 s, so a
reader blocked in `recv` could take that long to notice it was asked to stop. `stop()`
shuts the socket down instead (httpcore hands it out as the response's `network_stream`),
which wakes the reader now. A node that goes away is reported through `status`, and the
follower retries every `retry` seconds until stopped.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx

from calico.nodeapi import NodeClient


class FlowFollower:
    def __init__(
        self,
        node: str,
        url: str,
        deliver: Callable[[str, dict[str, Any]], None],  # called in this thread, per record
        status: Callable[[str, bool, str], None],  # (node, connected, error)
        history: int = 200,
        retry: float = 2.0,
        since: float = 0.0,
    ):
        self.node = node
        self.url = url
        self.deliver = deliver
        self.status = status
        self.history = history
        self.retry = retry
        self.since = since  # newest record time already seen: replayed history up to it is skipped
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._follow(last=self.history)
                error = "flow stream ended"
            except (httpx.HTTPError, OSError, ValueError) as exc:
                error = str(exc) or type(exc).__name__
            if self.stopped.is_set():
                break
            self.status(self.node, False, error)
            self.stopped.wait(self.retry)

    def _follow(self, last: int) -> None:
        if not self.url:
            raise ValueError("node publishes no API address")
        params = {"follow": "1"}
        if last:
            params["last"] = str(last)
        with NodeClient(self.url, timeout=5.0) as client:
            # read=None: the agent's keepalives (every 15 s) keep a quiet stream alive
            timeout = httpx.Timeout(5.0, read=None)
            with client.http.stream("GET", "/v1/flows", params=params, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    try:
                        message = resp.json().get("error", resp.text)
                    except ValueError:
                        message = resp.text
                    raise ValueError(f"{resp.status_code} {message}")
                with self._lock:
                    self._stream = resp.extensions.get("network_stream")
                if self.stopped.is_set():
                    return
                self.status(self.node, True, "")
                replaying = bool(self.since)
                try:
                    for line in resp.iter_lines():
                        if self.stopped.is_set():
                            return
                        if not line:
                            continue
                        item = json.loads(line)
                        when = item.get("time")
                        if item.get("type", "flow") == "flow" and isinstance(when, int | float):
                            if replaying and when <= self.since:
                                continue  # seen before the stream was (re)opened
                            replaying = False
                            self.since = max(self.since, when)
                        self.deliver(self.node, item)
                finally:
                    with self._lock:
                        self._stream = None

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            stream = self._stream
        if stream is None:
            return
        try:
            sock = stream.get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
