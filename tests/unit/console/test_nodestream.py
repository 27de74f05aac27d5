"""console/nodestream.py: a node API follow stream, what the two followers make of it."""

from __future__ import annotations

import json
import socket
import threading
import time

from console.flowstream import FlowFollower
from console.logstream import LogFollower
from console.nodestream import NO_ADDRESS


class OneShotServer:
    """A unix-socket HTTP server that answers one request with `head` + `body`, then holds
    the connection open and silent until closed (a follow stream between keepalives)."""

    def __init__(self, path: str, head: bytes, body: bytes) -> None:
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(1)
        self.head, self.body = head, body
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.conn, _ = self.server.accept()
        self.conn.recv(65536)
        self.conn.sendall(self.head + self.body)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def test_stop_wakes_a_reader_blocked_on_a_quiet_stream_at_once(tmp_path):
    path = str(tmp_path / "agent.sock")
    line = json.dumps({"type": "line", "line": "hello"}).encode() + b"\n"
    server = OneShotServer(path, STREAM_HEAD, chunk(line))
    follower = LogFollower(f"unix://{path}", "pod-1", tail=0)
    thread = threading.Thread(target=follower.run)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        got: list[dict] = []
        while len(got) < 2 and time.monotonic() < deadline:
            got += follower.take()
            time.sleep(0.01)
        assert got == [{"type": "connected"}, {"type": "line", "line": "hello"}]
        started = time.monotonic()
        follower.stop()  # the server sends nothing more: only the shutdown can end the read
        thread.join(2)
        assert not thread.is_alive()
        assert time.monotonic() - started < 1.0
        assert follower.take() == []  # a stop is not reported as an error
    finally:
        follower.stop()
        server.close()


def refused(tmp_path) -> tuple[str, OneShotServer]:
    path = str(tmp_path / "agent.sock")
    body = json.dumps({"error": "no pod found with uuid pod-9"}).encode()
    head = (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    return path, OneShotServer(path, head, body)


def test_the_log_follower_reports_the_apis_error_once(tmp_path):
    path, server = refused(tmp_path)
    follower = LogFollower(f"unix://{path}", "pod-9", tail=None)
    try:
        follower.run()
        assert follower.take() == [{"type": "error", "error": "no pod found with uuid pod-9"}]
    finally:
        server.close()


def test_the_flow_follower_reports_the_status_and_the_apis_error(tmp_path):
    path, server = refused(tmp_path)
    statuses: list[tuple[str, bool, str]] = []

    def status(node: str, ok: bool, error: str) -> None:
        statuses.append((node, ok, error))
        follower.stopped.set()  # one report is enough; no retry

    follower = FlowFollower("calico-01", f"unix://{path}", lambda n, i: None, status)
    try:
        follower.run()
        assert statuses == [("calico-01", False, "404 no pod found with uuid pod-9")]
    finally:
        server.close()


def test_a_node_without_an_address_is_said_so():
    follower = LogFollower("", "pod-1", tail=None)
    follower.run()
    assert follower.take() == [{"type": "error", "error": NO_ADDRESS}]
