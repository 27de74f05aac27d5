"""The node API: HTTP/JSON on a unix socket (root only), optionally TCP with a bearer token.

Routing and error shaping live here; what each route does lives in a backend object (the
agent's), so this file never knows about iptables or pods. Every error is JSON
`{"error": "...", "status": N}`: never a stack trace.

Limits (the transport's; a client past one gets a JSON 4xx/503, or is cut):
- a request (request line, headers and body) must arrive within REQUEST_TIMEOUT = 5 s of
  its first byte being awaited: a slow or stalled client is cut (408 once its headers are
  in, else the connection is closed); an idle keep-alive connection is closed after 5 s too;
- MAX_CONNECTIONS = 64 connections are served at once per listener, one thread each;
  the 65th gets `503 {"error": "too many connections ..."}` and is closed at once, so 200
  slow clients hold at most 64 threads, each for at most 5 s;
- a body is at most MAX_BODY = 1 MiB, given by one decimal Content-Length or by
  `Transfer-Encoding: chunked` (strict hex sizes, CRLF after each chunk); anything else
  (`Content-Length: abc`, negative, two different lengths, both headers, another
  transfer coding) is a 400, a larger body a 413; JSON nested too deeply is a 400;
- a reply that the client does not read is abandoned after WRITE_TIMEOUT = 30 s.
The request line (64 KiB) and header count (100) are the standard library's limits, and its
errors (400, 414, 431, an unknown method) are answered in JSON too.
"""

from __future__ import annotations

import hmac
import io
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_PREFIX = "/v1"
MAX_BODY = 1 << 20  # bytes of request body
REQUEST_TIMEOUT = 5.0  # seconds for request line + headers + body
WRITE_TIMEOUT = 30.0  # seconds a blocked reply may wait for the client to read
MAX_CONNECTIONS = 64  # served at once per listener; more are answered 503 and closed
_MAX_CHUNK_LINE = 1024  # a chunk-size line (hex size and extensions)
_MAX_TRAILERS = 100


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


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose every read is bounded by one deadline, so a client
    trickling a byte at a time still cannot hold the request open past it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request not received in time")
            self.sock.settimeout(left)
        return self.sock.recv_into(buf)


def _content_length(values: list[str]) -> int:
    """The one Content-Length: decimal digits only, the same if repeated."""
    lengths = {v.strip() for v in values}
    if len(lengths) != 1:
        raise APIError(400, "conflicting Content-Length headers")
    text = lengths.pop()
    if not text.isascii() or not text.isdigit():
        raise APIError(400, f"Content-Length must be a non-negative integer, not {text[:40]!r}")
    if len(text) > 12 or int(text) > MAX_BODY:
        raise APIError(413, f"body larger than {MAX_BODY} bytes")
    return int(text)


def read_chunked(rfile: Any, limit: int = MAX_BODY) -> bytes:
    """A `Transfer-Encoding: chunked` body (RFC 9112 7.1), strictly: APIError 400 on any
    malformed size line or missing CRLF, 413 past `limit` bytes."""
    out = bytearray()
    while True:
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
        if len(line) > _MAX_CHUNK_LINE or not line.endswith(b"\r\n"):
            raise APIError(400, "malformed chunked body: bad chunk-size line")
        size_text = line[:-2].split(b";", 1)[0].strip()
        if (
            not size_text
            or len(size_text) > 8
            or any(c not in b"0123456789abcdefABCDEF" for c in size_text)
        ):
            raise APIError(400, f"malformed chunked body: chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(out) + size > limit:
            raise APIError(413, f"body larger than {limit} bytes")
        data = rfile.read(size)
        if len(data) != size or rfile.read(2) != b"\r\n":
            raise APIError(400, "malformed chunked body: chunk shorter than its size")
        out += data
    for _ in range(_MAX_TRAILERS):
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return bytes(out)
        if not line or len(line) > _MAX_CHUNK_LINE:
            break
    raise APIError(400, "malformed chunked body: trailers not terminated")


def decode_json(raw: bytes) -> Any:
    """The body as JSON; APIError 400 for anything that is not (bad UTF-8, bad syntax,
    nesting deep enough to exhaust the parser)."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise APIError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise APIError(400, "body is not valid JSON: nested too deeply") from None


def _make_handler(router: Router, token: str | None, require_token: bool):
    class NodeAPIHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "calico-agent"

        def setup(self) -> None:
            super().setup()
            self._reader = _DeadlineReader(self.connection)
            self.rfile = io.BufferedReader(self._reader)

        def handle_one_request(self) -> None:
            # The deadline covers the wait for the request too: an idle keep-alive
            # connection is closed after REQUEST_TIMEOUT.
            self._reader.deadline = time.monotonic() + REQUEST_TIMEOUT
            try:
                super().handle_one_request()
            except (TimeoutError, OSError):  # cut mid-headers, or the peer went away
                self.close_connection = True

        def send_error(self, code: int, message: str | None = None, explain: str | None = None):
            """The standard library's own refusals (bad request line, too long, too many
            headers, unknown method), as JSON 4xx."""
            if code in (501, 505):  # unknown method / HTTP version: the client's mistake
                code = 405 if code == 501 else 400
            if not self.request_version.startswith("HTTP/1."):
                self.request_version = "HTTP/1.0"  # else no status line or headers go out
            self.close_connection = True
            try:
                self._error(code, message or explain or "bad request")
            except OSError:
                pass

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass  # the agent logs applies, not every request

        def _send_json(self, status: int, payload: Any) -> None:
            body = json.dumps(payload, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _read_body(self) -> bytes:
            """The whole body within the request deadline; the connection is closed after
            any refusal (what is left of the body cannot be told from the next request)."""
            coding = [v.strip().lower() for v in self.headers.get_all("Transfer-Encoding") or []]
            lengths = self.headers.get_all("Content-Length") or []
            try:
                if coding:
                    if lengths:
                        raise APIError(400, "both Content-Length and Transfer-Encoding given")
                    if coding != ["chunked"]:
                        raise APIError(400, f"unsupported Transfer-Encoding {', '.join(coding)}")
                    return read_chunked(self.rfile)
                length = _content_length(lengths) if lengths else 0
                raw = self.rfile.read(length) if length else b""
                if len(raw) != length:
                    raise APIError(400, f"body ended after {len(raw)} of {length} bytes")
                return raw
            except APIError:
                self.close_connection = True
                raise
            except (TimeoutError, OSError):
                self.close_connection = True
                raise APIError(
                    408, f"request body not received within {REQUEST_TIMEOUT:g} s"
                ) from None

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
                    self.close_connection = True  # its body, if any, is left unread
                    self._error(401, "missing or wrong bearer token")
                    return
                raw = self._read_body()
                # The request is in: what follows runs as long as its route needs.
                self._reader.deadline = None
                self.connection.settimeout(WRITE_TIMEOUT)
                url = urlsplit(self.path)
                path = url.path.rstrip("/") or "/"
                handler, params = router.match(method, path)
                body = decode_json(raw) if raw else None
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
                try:
                    self._error(exc.status, exc.message)
                except OSError:
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                self.close_connection = True
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

        def do_PATCH(self) -> None:  # noqa: N802
            self._handle("PATCH")

        def do_OPTIONS(self) -> None:  # noqa: N802
            self._handle("OPTIONS")

    return NodeAPIHandler


def _busy_reply() -> bytes:
    body = json.dumps(
        {
            "error": f"too many connections (the node API serves {MAX_CONNECTIONS} at once); "
            "try again shortly",
            "status": 503,
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _BoundedThreads(socketserver.ThreadingMixIn):
    """A thread per connection, at most MAX_CONNECTIONS at once: past that the connection
    gets the 503 from the accepting thread (a fresh socket's send buffer is empty, so the
    short send cannot block it) and is closed."""

    daemon_threads = True
    request_queue_size = 256  # listen backlog: a burst of clients is accepted (and refused)
    max_connections = MAX_CONNECTIONS
    _slots: threading.BoundedSemaphore | None = None

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots is None:
            self._slots = threading.BoundedSemaphore(self.max_connections)
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(0.2)
                request.sendall(_busy_reply())
                request.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            assert self._slots is not None
            self._slots.release()


class _UnixHTTPServer(_BoundedThreads, socketserver.UnixStreamServer):
    def get_request(self):  # AF_UNIX peers have no address; the handler wants a tuple
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)


class _TCPHTTPServer(_BoundedThreads, socketserver.TCPServer):
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
