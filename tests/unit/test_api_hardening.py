"""The node API transport against malformed, slow and too many clients (defect 6 of issue 12).

Raw sockets on the unix listener of a real APIServer: every malformed request gets a JSON
4xx (never a 500, never a hang), a slow client is cut after the request deadline, and the
connection cap answers 503 instead of spending a thread per client.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from agent.api import server as api_server
from agent.api.server import APIServer, Router


def make_router() -> Router:
    router = Router()
    router.add("GET", "/v1/health", lambda r: {"ok": True}, "health")
    router.add("POST", "/v1/echo", lambda r: {"got": r.body}, "echo")
    return router


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setattr(api_server, "REQUEST_TIMEOUT", 1.0)  # the default is 5 s
    srv = APIServer(make_router(), tmp_path / "agent.sock")
    srv.start()
    yield srv
    srv.stop()


def connect(srv: APIServer, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    for _ in range(100):
        try:
            s.connect(str(srv.socket_path))
            return s
        except BlockingIOError:  # backlog full for a moment: the accept loop catches up
            time.sleep(0.01)
    raise ConnectionError("backlog stayed full")


def read_reply(s: socket.socket) -> tuple[int, dict, bytes]:
    """Status, headers and body of one reply (the body by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a reply: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def exchange(srv: APIServer, raw: bytes) -> tuple[int, dict, dict]:
    with connect(srv) as s:
        s.sendall(raw)
        status, headers, body = read_reply(s)
    assert headers["content-type"] == "application/json", (status, body)
    return status, headers, json.loads(body)


def post(body: bytes, *headers: str) -> bytes:
    lines = ["POST /v1/echo HTTP/1.1", "Host: node", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


MALFORMED = {
    "content-length abc": post(b"{}", "Content-Length: abc"),
    "negative content-length": post(b"{}", "Content-Length: -5"),
    "signed content-length": post(b"{}", "Content-Length: +2"),
    "two content-lengths": post(b"{}", "Content-Length: 2", "Content-Length: 3"),
    "length and chunked": post(b"{}", "Content-Length: 2", "Transfer-Encoding: chunked"),
    "gzip coding": post(b"{}", "Transfer-Encoding: gzip"),
    "bad chunk size": post(b"zz\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"),
    "chunk without crlf": post(b"2\r\n{}xx0\r\n\r\n", "Transfer-Encoding: chunked"),
    "chunk size overflow": post(b"fffffffffffffffff\r\n", "Transfer-Encoding: chunked"),
    "bad json": post(b"{not json", "Content-Length: 9"),
    "bad utf-8": post(b'"\xff\xfe"', "Content-Length: 4"),
    "deep json": post(b"[" * 100000, "Content-Length: 100000"),
    "bad request line": b"GARBAGE\r\n\r\n",
    "unknown method": b"FROB /v1/health HTTP/1.1\r\nHost: node\r\n\r\n",
    "http/2 request line": b"GET /v1/health HTTP/2.0\r\nHost: node\r\n\r\n",
    "patch": b"PATCH /v1/health HTTP/1.1\r\nHost: node\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformed_request_is_a_json_4xx(server, case):
    status, _, payload = exchange(server, MALFORMED[case])
    assert 400 <= status < 500, (case, status, payload)
    assert payload["status"] == status and payload["error"]


def test_huge_content_length_is_413_without_reading_it(server):
    status, headers, payload = exchange(server, post(b"", "Content-Length: 99999999999999999999"))
    assert status == 413 and "larger than" in payload["error"]
    assert headers.get("connection") == "close"


def test_chunked_body_is_read(server):
    body = b'4\r\n{"a"\r\n3\r\n: 1\r\n1;ext=1\r\n}\r\n0\r\nX-Trailer: y\r\n\r\n'
    status, _, payload = exchange(server, post(body, "Transfer-Encoding: chunked"))
    assert (status, payload) == (200, {"got": {"a": 1}})


def test_keep_alive_after_a_good_request_and_cut_when_idle(server):
    with connect(server) as s:
        for _ in range(2):
            s.sendall(post(b"[1]", "Content-Length: 3"))
            status, _, body = read_reply(s)
            assert (status, json.loads(body)) == (200, {"got": [1]})
        started = time.monotonic()
        assert s.recv(1) == b""  # idle past REQUEST_TIMEOUT: closed
        assert time.monotonic() - started < 3


def test_slow_headers_are_cut_after_the_request_deadline(server):
    """A client trickling one header byte every 0.2 s never finishes: cut at ~1 s."""
    with connect(server) as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\n")
        started = time.monotonic()
        cut = None
        for _ in range(40):
            try:
                s.sendall(b"X")
                time.sleep(0.2)
                if s.recv(1, socket.MSG_DONTWAIT) == b"":
                    cut = time.monotonic() - started
                    break
            except BlockingIOError:
                continue
            except OSError:
                cut = time.monotonic() - started
                break
        assert cut is not None and cut < 3, cut


def test_unfinished_body_gets_408(server):
    with connect(server) as s:
        s.sendall(post(b'{"a":', "Content-Length: 100"))
        started = time.monotonic()
        status, _, body = read_reply(s)
        assert status == 408 and "not received within" in json.loads(body)["error"]
        assert time.monotonic() - started < 3


def test_the_defaults_are_a_few_seconds_and_bounded():
    assert api_server.REQUEST_TIMEOUT <= 10 and api_server.MAX_CONNECTIONS <= 100


def test_200_slow_clients_hold_at_most_the_cap_and_the_rest_get_503(server):
    before = threading.active_count()
    socks, busy = [], 0
    try:
        for _ in range(200):
            s = connect(server)
            s.sendall(b"GET /v1/health HTTP/1.1\r\n")  # and never the rest
            socks.append(s)
        time.sleep(0.3)  # let the accept loop catch up (the point: it keeps up)
        assert threading.active_count() - before <= api_server.MAX_CONNECTIONS
        for s in socks:
            s.settimeout(0.05)
            try:
                data = s.recv(4096)
            except TimeoutError:
                continue
            if data.startswith(b"HTTP/1.1 503"):
                busy += 1
                assert b'"too many connections' in data
        assert busy >= 200 - api_server.MAX_CONNECTIONS
    finally:
        for s in socks:
            s.close()
    # once the slow ones are cut (1 s here), the API answers again
    deadline = time.monotonic() + 5
    while True:
        try:
            status, _, payload = exchange(server, b"GET /v1/health HTTP/1.1\r\nHost: n\r\n\r\n")
            if status == 200:
                break
        except ConnectionError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert payload == {"ok": True}
