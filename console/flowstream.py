"""Follow one node's flow stream (`GET /v1/flows?follow=1`) in a thread, reconnecting.

Reading the stream is calico/nodeapi.py's, the stop that wakes a blocked reader
console/nodestream.py's. A node that goes away is reported through `status`, and the
follower retries every `retry` seconds until stopped; on reconnecting, the history the agent
replays is skipped up to the newest record already delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calico.nodeapi import NodeAPIError
from console.nodestream import NodeStream


class FlowFollower(NodeStream):
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
        super().__init__()
        self.node = node
        self.url = url
        self.deliver = deliver
        self.status = status
        self.history = history
        self.retry = retry
        self.since = since  # newest record time already seen: replayed history up to it is skipped

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._follow(last=self.history)
                error = "flow stream ended"
            except NodeAPIError as exc:
                error = f"{exc.status} {exc}" if exc.status else str(exc)
            except (OSError, ValueError) as exc:
                error = str(exc) or type(exc).__name__
            if self.stopped.is_set():
                break
            self.status(self.node, False, error)
            self.stopped.wait(self.retry)

    def _follow(self, last: int) -> None:
        params = {"follow": "1"}
        if last:
            params["last"] = str(last)
        replaying = bool(self.since)

        def opened() -> None:
            self.status(self.node, True, "")

        for item in self.records(self.url, "/v1/flows", params, "flow", on_open=opened):
            when = item.get("time")
            if item.get("type", "flow") == "flow" and isinstance(when, int | float):
                if replaying and when <= self.since:
                    continue  # seen before the stream was (re)opened
                replaying = False
                self.since = max(self.since, when)
            self.deliver(self.node, item)
