"""Follow one pod's output (`GET /v1/pods/{uuid}/logs?follow=1&tail=N`) in a thread.

Records go into an inbox the log screen drains 20 times a second (a line per
call_from_thread would cost the event loop a wake-up per line: a pod printing 10,000 lines
at once would stall it). Reading the stream is calico/nodeapi.py's, the stop that ends a
reader blocked between keepalives console/nodestream.py's. A broken stream is reported once
and not retried: a retry could only repeat or skip lines, and the screen's keys restart it.
"""

from __future__ import annotations

import threading
from typing import Any

from calico.nodeapi import NodeAPIError
from console.nodestream import NodeStream


class LogFollower(NodeStream):
    def __init__(self, url: str, uuid: str, tail: int | None, follow: bool = True) -> None:
        super().__init__()
        self.url = url
        self.uuid = uuid
        self.tail = tail
        self.follow = follow
        self._inbox_lock = threading.Lock()
        self._inbox: list[dict[str, Any]] = []

    def take(self) -> list[dict[str, Any]]:
        """What arrived since the last call (lines, an end record, status records)."""
        with self._inbox_lock:
            out, self._inbox = self._inbox, []
        return out

    def _put(self, item: dict[str, Any]) -> None:
        with self._inbox_lock:
            self._inbox.append(item)

    def _connected(self) -> None:
        self._put({"type": "connected"})

    def run(self) -> None:
        params = {"follow": "1"} if self.follow else {}
        if self.tail is not None:
            params["tail"] = str(self.tail)
        path = f"/v1/pods/{self.uuid}/logs"
        try:
            for item in self.records(self.url, path, params, "log", on_open=self._connected):
                if item.get("type") != "keepalive":
                    self._put(item)
        except (NodeAPIError, OSError, ValueError) as exc:
            if not self.stopped.is_set():
                self._put({"type": "error", "error": str(exc) or type(exc).__name__})
