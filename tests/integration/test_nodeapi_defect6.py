"""Defect 6 of issue 12 against a real agent on the shared lab: `Content-Length: abc`,
`{"image": "--help"}` and 200 slow clients. Raw sockets on the node's unix socket (the
address it publishes on its Node resource)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from agent.api import server as api_server

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.fault]

NODE = "calico-01"


def connect(lab) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    for _ in range(200):
        try:
            s.connect(str(lab.node_dir(NODE) / "agent.sock"))
            return s
        except BlockingIOError:  # backlog full for a moment
            time.sleep(0.01)
    raise ConnectionError("agent socket backlog stayed full")


def agent_threads(lab) -> int:
    """Threads of the node's calico-agent process (found by its netns and command line)."""
    import os

    want = os.stat(f"/run/netns/{lab.node_netns(NODE)}").st_ino
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"calico-agent" not in f.read():
                    continue
            if os.stat(f"/proc/{pid}/ns/net").st_ino != want:
                continue
            with open(f"/proc/{pid}/status") as f:
                total += int(next(ln for ln in f if ln.startswith("Threads:")).split()[1])
        except (OSError, StopIteration):
            continue
    return total


def exchange(lab, raw: bytes) -> tuple[int, dict]:
    with connect(lab) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = next(
                    int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                    if ln.lower().startswith(b"content-length:")
                )  # fmt: skip
                if len(body) >= length:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def request(method: str, path: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: node", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_content_length_abc_is_a_json_400(lab):
    status, err = exchange(lab, request("POST", "/v1/pods", b"{}", "Content-Length: abc"))
    assert status == 400 and err["status"] == 400 and "Content-Length" in err["error"]


def test_an_image_is_never_an_option(lab):
    before = lab.exec(NODE, ["rkt", "list", "--no-legend"], timeout=30).stdout
    for image in ("--help", "-h", "--net=host"):
        body = json.dumps({"image": image}).encode()
        status, err = exchange(
            lab, request("POST", "/v1/pods", body, f"Content-Length: {len(body)}")
        )
        assert status == 400 and "must not start with '-'" in err["error"], (image, err)
    body = json.dumps({"image": "docker://busybox", "exec": {"x": 1}}).encode()
    status, err = exchange(lab, request("POST", "/v1/pods", body, f"Content-Length: {len(body)}"))
    assert status == 400 and "exec must be a string" in err["error"]
    assert lab.exec(NODE, ["rkt", "list", "--no-legend"], timeout=30).stdout == before


def test_200_slow_clients_do_not_take_200_threads(lab):
    """They get a 503 past the cap or are cut after the request deadline; the API answers
    again within seconds of them."""
    socks, busy = [], 0
    try:
        for _ in range(200):
            s = connect(lab)
            s.sendall(b"GET /v1/health HTTP/1.1\r\n")  # and never the rest
            socks.append(s)
        threads = agent_threads(lab)
        assert 0 < threads < 200, threads
        for s in socks:
            s.settimeout(0.05)
            try:
                if s.recv(4096).startswith(b"HTTP/1.1 503"):
                    busy += 1
            except TimeoutError:
                pass
        assert busy >= 200 - api_server.MAX_CONNECTIONS
        started = time.monotonic()
        for s in socks:  # every slow client is cut after the request deadline
            s.settimeout(max(0.1, started + api_server.REQUEST_TIMEOUT + 5 - time.monotonic()))
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            status, health = exchange(lab, request("GET", "/v1/health"))
            if status == 200:
                break
        except (ConnectionError, OSError):
            pass
        assert time.monotonic() < deadline, "the node API did not come back"
        time.sleep(0.1)
    assert health["node"] == NODE
