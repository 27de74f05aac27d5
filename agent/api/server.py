"""The node API: HTTP/JSON on a unix socket (root only), optionally TCP with a bearer token.

Routing and error shaping live here; what each route does lives in a backend object (the
agent's), so this file never knows about iptables or pods. Every error is JSON
`{"error": "...", "status": N}`: never a stack trace.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import socket
import socketserver
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_PREFIX = "/v1"
MAX_BODY = 1 << 20


class APIError(Exception):
    """Raised by a backend to answer with a status code and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]  # path parameters, e.g. {"uuid": "..."}
    query: dict[str, list[str]]
    body: Any  # decoded JSON or None

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Stream:
    """A streaming answer: each item is written as one JSON line, flushed at once."""

    items: Iterator[Any]
    content_type: str = "application/x-ndjson"


@dataclass
class Text:
    body: str
    content_type: str = "text/plain; version=0.0.4"


Handler = Callable[[Request], Any]


class Router:
    """`GET /v1/pods/{uuid}` style routes; pure, tested without sockets."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], str, Handler, str]] = []

    def add(self, method: str, template: str, handler: Handler, summary: str = "") -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append((method, re.compile(f"^{pattern}$"), template, handler, summary))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = []
        for m, pattern, _, handler, _ in self.routes:
            hit = pattern.match(path)
            if hit:
                if m == method:
                    return handler, hit.groupdict()
                allowed.append(m)
        if allowed:
            raise APIError(
                405, f"{method} not allowed on {path} (allowed: {', '.join(sorted(set(allowed)))})"
            )
        raise APIError(404, f"no such endpoint: {path}")

    def openapi(self, title: str = "calico-agent node API") -> dict[str, Any]:
        paths: dict[str, Any] = {}
        for method, _, template, _, summary in self.routes:
            entry = paths.setdefault(template, {})
            params = [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in re.findall(r"\{(\w+)\}", template)
            ]
            entry[method.lower()] = {
                "summary": summary,
                "parameters": params,
                "responses": {
                    "200": {"description": "OK (JSON)"},
                    "default": {
                        "description": "error",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                },
            }
        return {
            "openapi": "3.0.3",
            "info": {"title": title, "version": "1"},
            "paths": paths,
            "components": {
                "schemas": {
                    "Error": {
                        "type": "object",
                        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                    }
                }
            },
        }


def _make_handler(router: Router, token: str | None, require_token: bool):
    class NodeAPIHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "calico-agent"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass  # the agent logs applies, not every request

        def _send_json(self, status: int, payload: Any) -> None:
            body = json.dumps(payload, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send_json(status, {"error": message, "status": status})

        def _authorized(self) -> bool:
            if not require_token:
                return True
            got = self.headers.get("Authorization", "")
            want = f"Bearer {token}"
            return bool(token) and hmac.compare_digest(got.encode(), want.encode())

        def _handle(self, method: str) -> None:
            try:
                if not self._authorized():
                    self._error(401, "missing or wrong bearer token")
                    return
                url = urlsplit(self.path)
                path = url.path.rstrip("/") or "/"
                handler, params = router.match(method, path)
                body = None
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise APIError(413, f"body larger than {MAX_BODY} bytes")
                if length:
                    raw = self.rfile.read(length)
                    try:
                        body = json.loads(raw)
                    except ValueError as exc:
                        raise APIError(400, f"body is not valid JSON: {exc}") from None
                result = handler(Request(method, path, params, parse_qs(url.query), body))
                if isinstance(result, Stream):
                    self._stream(result)
                elif isinstance(result, Text):
                    data = result.body.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", result.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._send_json(200, result)
            except APIError as exc:
                self._error(exc.status, exc.message)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as exc:  # a bug: say so in one line, log the trace for us
                traceback.print_exc(file=sys.stderr)
                try:
                    self._error(500, f"internal error: {type(exc).__name__}: {exc}")
                except OSError:
                    pass

        def _stream(self, stream: Stream) -> None:
            self.send_response(200)
            self.send_header("Content-Type", stream.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for item in stream.items:
                    line = (json.dumps(item, separators=(",", ":")) + "\n").encode()
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            finally:
                close = getattr(stream.items, "close", None)
                if close:
                    close()

        def do_GET(self) -> None:  # noqa: N802 - stdlib's name
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

    return NodeAPIHandler


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):  # AF_UNIX peers have no address; the handler wants a tuple
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)


class _TCPHTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class APIServer:
    """Serves a Router on a unix socket (mode 0600) and optionally TCP (token required)."""

    def __init__(
        self,
        router: Router,
        socket_path: str | Path | None,
        tcp: tuple[str, int] | None = None,
        token: str | None = None,
    ):
        self.router = router
        self.socket_path = Path(socket_path) if socket_path else None
        self.tcp = tcp
        self.token = token
        self.servers: list[socketserver.BaseServer] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.socket_path:
            self.socket_path.parent.mkdir(parents=True, exist_ok=True)
            if self.socket_path.exists() or self.socket_path.is_symlink():
                self.socket_path.unlink()  # a stale socket from a killed agent
            old = os.umask(0o077)  # root-only from the moment it exists
            try:
                unix = _UnixHTTPServer(
                    str(self.socket_path), _make_handler(self.router, None, False)
                )
            finally:
                os.umask(old)
            os.chmod(self.socket_path, 0o600)
            self.servers.append(unix)
        if self.tcp:
            if not self.token:
                raise ValueError("a TCP listener needs a token (--api-token or --api-token-file)")
            tcp = _TCPHTTPServer(self.tcp, _make_handler(self.router, self.token, True))
            self.servers.append(tcp)
        for srv in self.servers:
            t = threading.Thread(
                target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
            )
            t.start()
            self.threads.append(t)

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        for srv in self.servers:
            if isinstance(srv, _TCPHTTPServer):
                host, port = srv.server_address[:2]
                return str(host), int(port)
        return None

    def stop(self) -> None:
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()
        if self.socket_path and self.socket_path.exists():
            self.socket_path.unlink()


def unix_socket_ready(path: str | Path, timeout: float = 0.5) -> bool:
    """True if something accepts connections on the unix socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True
