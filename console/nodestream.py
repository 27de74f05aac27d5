"""One JSON-lines stream from a node's API, read in a thread and stoppable at once.

The agent's follow streams (`GET /v1/flows?follow=1`, `GET /v1/pods/{uuid}/logs?follow=1`)
send a keepalive after 15 s of silence, so a reader blocked in `recv` could take that long
to notice it was asked to stop. `stop()` shuts the socket down instead (httpcore hands it
out as the response's `network_stream`), which wakes the reader now. What to do with the
records, and whether to reconnect, is each follower's own: console/flowstream.py retries,
console/logstream.py reports once.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from calico.nodeapi import NodeClient

NO_ADDRESS = "the node publishes no API address"


class StreamRefused(ValueError):
    """The API answered the request with an error status; `message` is its error body's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NodeStream:
    """What a follower thread shares with the thread that stops it."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None

    def records(
        self, url: str, path: str, params: dict[str, str], on_open: Callable[[], None]
    ) -> Iterator[dict[str, Any]]:
        """The stream's records (one JSON object per line, blank lines skipped), until it
        ends or `stop()` is called. `on_open` runs once the API has accepted the request.

        Raises StreamRefused for an error status, ValueError for a missing address or a
        line that is not JSON, httpx.HTTPError or OSError when the connection fails."""
        if not url:
            raise ValueError(NO_ADDRESS)
        with NodeClient(url, timeout=5.0) as client:
            timeout = httpx.Timeout(5.0, read=None)  # the keepalives hold a quiet stream open
            with client.http.stream("GET", path, params=params, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    try:
                        message = resp.json().get("error", resp.text)
                    except ValueError:
                        message = resp.text
                    raise StreamRefused(resp.status_code, str(message))
                with self._lock:
                    self._stream = resp.extensions.get("network_stream")
                try:
                    if self.stopped.is_set():
                        return
                    on_open()
                    for line in resp.iter_lines():
                        if self.stopped.is_set():
                            return
                        if line:
                            yield json.loads(line)
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
