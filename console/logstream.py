"""Follow one pod's output (`GET /v1/pods/{uuid}/logs?follow=1&tail=N`) in a thread.

Records go into an inbox the log screen drains 20 times a second (a line per
call_from_thread would cost the event loop a wake-up per line: a pod printing 10,000 lines
at once would stall it). `stop()` shuts the socket down, as console/flowstream.py does, so
a reader blocked between keepalives (15 s) ends now. A broken stream is reported once
and not retried: a retry could only repeat or skip lines, and the screen's keys restart it.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import httpx

from calico.nodeapi import NodeClient


class LogFollower:
    def __init__(self, url: str, uuid: str, tail: int | None, follow: bool = True) -> None:
        self.url = url
        self.uuid = uuid
        self.tail = tail
        self.follow = follow
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._inbox: list[dict[str, Any]] = []
        self._stream: Any = None

    def take(self) -> list[dict[str, Any]]:
        """What arrived since the last call (lines, an end record, status records)."""
        with self._lock:
            out, self._inbox = self._inbox, []
        return out

    def _put(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._inbox.append(item)

    def run(self) -> None:
        try:
            self._follow()
        except (httpx.HTTPError, OSError, ValueError) as exc:
            if not self.stopped.is_set():
                self._put({"type": "error", "error": str(exc) or type(exc).__name__})

    def _follow(self) -> None:
        if not self.url:
            raise ValueError("the node publishes no API address")
        params = {"follow": "1"} if self.follow else {}
        if self.tail is not None:
            params["tail"] = str(self.tail)
        with NodeClient(self.url, timeout=5.0) as client:
            timeout = httpx.Timeout(5.0, read=None)  # keepalives every 15 s hold it open
            path = f"/v1/pods/{self.uuid}/logs"
            with client.http.stream("GET", path, params=params, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    try:
                        message = resp.json().get("error", resp.text)
                    except ValueError:
                        message = resp.text
                    raise ValueError(message)
                with self._lock:
                    self._stream = resp.extensions.get("network_stream")
                self._put({"type": "connected"})
                try:
                    for line in resp.iter_lines():
                        if self.stopped.is_set():
                            return
                        if line:
                            item = json.loads(line)
                            if item.get("type") != "keepalive":
                                self._put(item)
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
