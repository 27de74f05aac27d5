"""A node API follow stream read in a thread, and stopped at once from another.

The agent's follow streams (`GET /v1/flows?follow=1`, `GET /v1/pods/{uuid}/logs?follow=1`)
send a keepalive after 15 s of silence, so a reader blocked in `recv` could take that long
to notice it was asked to stop. `stop()` shuts the socket down instead (NodeClient.stream
hands out httpcore's network stream once the agent has accepted the request), which wakes
the reader now. Reading the stream is calico/nodeapi.py's; what to do with the records,
and whether to reconnect, is each follower's own: console/flowstream.py retries,
console/logstream.py reports once.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from calico.nodeapi import NodeClient

NO_ADDRESS = "the node publishes no API address"


class NodeStream:
    """What a follower thread shares with the thread that stops it."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None

    def records(
        self, url: str, path: str, params: dict[str, str], what: str, on_open: Callable[[], None]
    ) -> Iterator[dict[str, Any]]:
        """The stream's records until it ends or `stop()` is called; `on_open` runs once
        the agent has accepted the request. Raises NodeAPIError (an error answer, with its
        status; a connection that failed or broke), ValueError (no address, a line that is
        not JSON) or OSError."""
        if not url:
            raise ValueError(NO_ADDRESS)

        def opened(stream: Any) -> None:
            with self._lock:
                self._stream = stream
            if self.stopped.is_set():  # stop() came before there was a socket to shut
                _shut(stream)
            else:
                on_open()

        with NodeClient(url, timeout=5.0) as client:
            items = client.stream(path, params, what, opened=opened)
            try:
                for item in items:
                    if self.stopped.is_set():
                        return
                    yield item
            finally:
                items.close()  # the response, before the client goes
                with self._lock:
                    self._stream = None

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            _shut(stream)


def _shut(stream: Any) -> None:
    """Shut a response's socket down: a read blocked on it returns now."""
    try:
        sock = stream.get_extra_info("socket")
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
