"""etcd's v3 JSON gateway over plain HTTP/1.1: one-shot reads without the gRPC stack.

Why: `calicoctl get profiles` spent most of its 154 ms importing grpc, the etcd protobufs
and pyetcd (~55 ms on an idle machine, 150 ms and more on a loaded one, before any byte
went to etcd), where `etcdctl get --prefix` takes 14 ms in all. etcd (3.4 here) serves the
same KV API as JSON on every client URL, TLS with client certificates included; this
module speaks it with `_socket` (and `ssl` for https) from the standard library, ~2 ms to
import beyond calico.config. Writes, watches and transactions stay on the gRPC client
(calico.datastore).

The wire (int64s are JSON strings, bytes are base64, fields at their zero value are left
out of answers):

    POST /v3/kv/range  {"key": "<b64>", "range_end": "<b64>", "limit": 500, "revision": 7}
    200 {"header": {"revision": "7", ...}, "kvs": [{"key": "<b64>", "value": "<b64>",
         "mod_revision": "5", "create_revision": "3", ...}], "more": true, "count": "9"}
    4xx/5xx {"error": "etcdserver: no leader", "code": 14, ...}   (often chunked)
    POST /v3/maintenance/status {}  ->  {"version": "3.4.23", "leader": "...", ...}

What a caller sees is what calico.datastore gives for the same read: the same keys, the
same listing in pages of 500 at one revision, the same failover (a cluster's members are
tried in turn for `FAILOVER_WINDOW`, each attempt at most `CLUSTER_ATTEMPT_TIMEOUT`, a
member that failed passed over for `FAILED_MEMBER_SKIP`; a certificate problem is not
retried) and the same one-line `Unavailable("etcd URL: why")` errors, worded by the same
rules (`VERIFY_REASONS`, `client_cert_problem`). A member without the gateway (404) raises
`GatewayMissing`, so the caller can fall back to gRPC.

A second wire, `Gateway(wire="grpc")`, asks etcd's gRPC service itself over HTTP/2
(calico.etcd_h2), with the same endpoints, TLS (ALPN h2), failover and words: etcd serves
10,000 endpoints in ~45 ms that way against ~185 ms as JSON, for ~1 ms more of import. The
console's follower lists with it; calicoctl reads JSON. A gRPC status other than
unavailable or a deadline is final there: another member would say the same.
"""

from __future__ import annotations

import _socket  # socket.py's enums and selectors cost 2.5 ms; ssl brings it for https
import binascii
import json
import sys
import time
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from calico.config import EtcdEndpoint, EtcdSettings
from calico.errors import Unavailable

# The same budgets as calico.datastore's gRPC path (tests/unit/test_etcd_gateway.py
# checks that they agree).
LIST_PAGE = 500  # keys per range read of a listing
FAILOVER_WINDOW = 2.5  # seconds a read keeps trying other members of a cluster
CLUSTER_ATTEMPT_TIMEOUT = 1.5  # seconds one attempt may take in a cluster
FAILED_MEMBER_SKIP = 0.2  # seconds a member that just failed is passed over
MAX_HEADER_LINE = 65536  # an HTTP header line longer than this is not etcd talking


class KV(namedtuple("KV", "key value mod_revision create_revision")):
    """One key as etcd stores it: calico.datastore.KV's fields and json(), so callers
    (calicoctl get, ipam show/check) take either."""

    __slots__ = ()

    def json(self) -> Any:
        return json.loads(self.value)


# ---------------------------------------------------------------- failures, in words

# OpenSSL's verify results -> what a user can act on (calico.datastore words gRPC's with them).
VERIFY_REASONS = {
    "unable to get local issuer certificate": "certificate signed by unknown authority",
    "self signed certificate in certificate chain": "certificate signed by unknown authority",
    "self-signed certificate in certificate chain": "certificate signed by unknown authority",
    "certificate has expired": "etcd's certificate has expired",
    "certificate is not yet valid": "etcd's certificate is not yet valid",
}
NOT_THIS_ADDRESS = "etcd's certificate does not name this address"
CLOSED_PLAIN = (
    "the connection was closed"
    " (the member stopped, or it serves only TLS: use https:// and ETCD_CA_CERT_FILE)"
)
CLOSED_IN_HANDSHAKE = (
    "TLS handshake failed: the connection was closed"
    " (the member stopped, or it serves plain http: use http://)"
)


def expired(cert_file: str) -> str | None:
    """notAfter of a PEM certificate if it is in the past (None if valid or unreadable)."""
    import ssl

    try:
        info = ssl._ssl._test_decode_cert(cert_file)  # type: ignore[attr-defined]
        not_after = info["notAfter"]
        if ssl.cert_time_to_seconds(not_after) < time.time():
            return not_after
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return None


def client_cert_problem(settings: EtcdSettings | None) -> str:
    """Why etcd refused the handshake after it started: the client certificate."""
    if settings is None or not settings.cert_file:
        return (
            "etcd requires a client certificate and none was given (ETCD_CERT_FILE, ETCD_KEY_FILE)"
        )
    when = expired(settings.cert_file)
    if when:
        why = f"the client certificate expired on {when}"
    else:
        why = "etcd rejected the client certificate (not signed by a CA it trusts?)"
    return f"{why} ({settings.source_of('cert_file')})"


class Failed(Exception):
    """One failed attempt on one member, judged: `line` is what the user reads."""

    def __init__(self, line: str, tls: bool = False, final: bool = False):
        super().__init__(line)
        self.line = line
        self.tls = tls  # a certificate problem
        self.final = final or tls  # trying again or elsewhere cannot help


class GatewayMissing(Exception):
    """The member answers HTTP but has no v3 JSON gateway (etcd --enable-grpc-gateway=false)."""


def verify_failure(exc: Any, url: str, settings: EtcdSettings | None) -> Failed:
    """ssl.SSLCertVerificationError -> `etcd URL: TLS handshake failed: why (CA file)`."""
    message = str(getattr(exc, "verify_message", "") or "")
    low = message.lower()
    if "mismatch" in low or "not valid for" in low:
        reason = NOT_THIS_ADDRESS
    else:
        reason = VERIFY_REASONS.get(message, message or "certificate verify failed")
    named = settings.source_of("ca_cert_file") if settings else "ca_cert_file"
    return Failed(f"etcd {url}: TLS handshake failed: {reason} ({named})", tls=True)


def transport_failure(
    exc: BaseException, url: str, settings: EtcdSettings | None, stage: str
) -> Failed:
    """A socket or TLS error at `stage` ("connect", "handshake", "exchange": the first
    request on a fresh TLS connection, where TLS 1.3 reports a refused client certificate,
    or "reply") -> the line calico.datastore.describe_failure gives for the same cause."""
    _ssl = sys.modules.get("ssl")  # imported for every https connection, never for http
    secure = url.startswith("https")
    if _ssl is not None and isinstance(exc, _ssl.SSLCertVerificationError):
        return verify_failure(exc, url, settings)
    if isinstance(exc, TimeoutError):
        return Failed(f"etcd {url}: no answer within the timeout")
    if stage == "connect":
        if isinstance(exc, ConnectionRefusedError):
            return Failed(f"etcd {url}: connection refused")
        if isinstance(exc, _socket.gaierror):
            host = url.split("://", 1)[-1].rsplit(":", 1)[0]
            return Failed(f"etcd {url}: cannot resolve {host}: {exc.strerror or exc}")
        if getattr(exc, "errno", None) in (101, 113):  # ENETUNREACH, EHOSTUNREACH
            return Failed(f"etcd {url}: no route to host")
        return Failed(f"etcd {url}: cannot connect: {getattr(exc, 'strerror', None) or exc}")
    closed = isinstance(exc, ConnectionError | EOFError) or (
        _ssl is not None and isinstance(exc, _ssl.SSLEOFError | _ssl.SSLZeroReturnError)
    )
    reason = str(getattr(exc, "reason", "") or "").lower()
    if secure and (("alert" in reason) or (closed and stage == "exchange")):
        # The server refused the handshake once it saw (or missed) our certificate.
        return Failed(
            f"etcd {url}: TLS handshake failed: {client_cert_problem(settings)}", tls=True
        )
    if secure and stage == "handshake":
        if closed or "wrong version" in reason or "record" in reason:
            return Failed(f"etcd {url}: {CLOSED_IN_HANDSHAKE}")
        return Failed(f"etcd {url}: TLS handshake failed: {reason or exc}")
    if closed:
        return Failed(f"etcd {url}: {CLOSED_PLAIN if not secure else 'the connection was closed'}")
    return Failed(f"etcd {url}: {getattr(exc, 'strerror', None) or exc}")


NOT_ETCD = "not an etcd answer (is this etcd's client URL?)"


def error_line(url: str, status: int, body: bytes) -> str:
    """A non-200 answer -> `etcd URL: what etcd said` (its `etcdserver: ` prefix dropped,
    as calico.datastore drops it from gRPC's status); anything else says it is not etcd."""
    said = ""
    try:
        doc = json.loads(body)
        said = str(doc.get("error") or doc.get("message") or "") if isinstance(doc, dict) else ""
    except ValueError:
        pass
    said = said.removeprefix("etcdserver: ").strip()
    return f"etcd {url}: {said or f'HTTP {status}, {NOT_ETCD}'}"


def next_limit(page: int, left: int) -> int:
    """The next page's size when a consumer takes each page as it comes (`on_page`): the
    listing ends on a page of an eighth, so what the consumer still has to do once the
    read is over is an eighth of a page's work (`left`: the keys still to read, from
    etcd's count of the range at the listing's revision; one round trip more)."""
    tail = max(1, page // 8)
    return left - tail if 2 * tail < left <= page + tail else page


# ---------------------------------------------------------------- the JSON, both ways


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (etcd's rule: the
    prefix with its last byte that is not 0xff incremented, the rest dropped)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def range_request(
    key: bytes, range_end: bytes | None = None, limit: int = 0, revision: int = 0
) -> bytes:
    """The body of POST /v3/kv/range (zero fields left out, as etcd's own clients do)."""
    doc: dict[str, Any] = {"key": _b64(key)}
    if range_end:
        doc["range_end"] = _b64(range_end)
    if limit:
        doc["limit"] = limit
    if revision:
        doc["revision"] = revision
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_range(body: bytes) -> tuple[list[KV], int, bool]:
    """A range answer -> (kvs, the store revision it was read at, more to come)."""
    doc = json.loads(body)
    a2b = binascii.a2b_base64
    kvs = [
        KV(
            a2b(kv.get("key", "")).decode(),
            a2b(kv.get("value", "")),
            int(kv.get("mod_revision", 0)),
            int(kv.get("create_revision", 0)),
        )
        for kv in doc.get("kvs") or ()
    ]
    return kvs, int((doc.get("header") or {}).get("revision", 0)), bool(doc.get("more"))


def http_request(host: str, path: str, body: bytes) -> bytes:
    """One HTTP/1.1 POST of a JSON body; the connection stays open for the next page."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def read_response(reader: Any) -> tuple[int, bytes, bool]:
    """(status, body, keep the connection) from a buffered reader (readline/read), with a
    Content-Length or a chunked body (etcd chunks its error answers, trailers after)."""
    status_line = reader.readline(MAX_HEADER_LINE)
    if not status_line:
        raise EOFError("the connection was closed before an answer")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    status = int(parts[1])
    keep = parts[0] == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    while True:
        line = reader.readline(MAX_HEADER_LINE)
        if not line:
            raise EOFError("the connection was closed in the answer's headers")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = keep and value.lower() != b"close"
    if chunked:
        chunks = []
        while True:
            size_line = reader.readline(MAX_HEADER_LINE)
            if not size_line:
                raise EOFError("the connection was closed in a chunked answer")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while reader.readline(MAX_HEADER_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers (Grpc-Trailer-*): nothing we need
                break
            chunks.append(_read_exactly(reader, size))
            reader.readline(MAX_HEADER_LINE)  # the CRLF after each chunk
        return status, b"".join(chunks), keep
    if length is None:
        return status, reader.read(), False  # to the end of the connection
    return status, _read_exactly(reader, length), keep


def _read_exactly(reader: Any, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise EOFError("the connection was closed in the middle of an answer")
    return data


# ---------------------------------------------------------------- the client


class _Connection:
    """One HTTP/1.1 connection to one member (TLS when its URL is https)."""

    def __init__(
        self, member: EtcdEndpoint, ssl_context: Any, timeout: float, settings: EtcdSettings
    ):
        self.url = member.url()
        host = f"[{member.host}]" if ":" in member.host else member.host  # IPv6
        self.host = f"{host}:{member.port}"
        self.fresh = True  # no answer read on it yet
        self.sock = _open(member, ssl_context, timeout, settings)
        self.reader = _Reader(self.sock)

    def post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes, bool]:
        self.sock.settimeout(timeout)
        self.sock.sendall(http_request(self.host, path, body))
        return read_response(self.reader)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _H2Connection:
    """One HTTP/2 connection to one member for etcd's gRPC service (calico.etcd_h2), TLS
    with ALPN h2 when its URL is https; `post` answers as _Connection's does."""

    def __init__(
        self, member: EtcdEndpoint, ssl_context: Any, timeout: float, settings: EtcdSettings
    ):
        from calico import etcd_h2

        self.url = member.url()
        host = f"[{member.host}]" if ":" in member.host else member.host  # IPv6
        self.fresh = True
        sock = _open(member, ssl_context, timeout, settings)
        if ssl_context is not None and sock.selected_alpn_protocol() != "h2":
            sock.close()
            raise Failed(f"etcd {self.url}: {NOT_ETCD} (it did not agree to HTTP/2)")
        try:
            self.h2 = etcd_h2.Connection(sock, f"{host}:{member.port}", member.scheme)
        except OSError as exc:
            sock.close()
            raise transport_failure(exc, self.url, settings, "exchange") from None

    def post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes, bool]:
        from calico.etcd_h2 import GrpcError

        self.h2.sock.settimeout(timeout)
        try:
            return 200, self.h2.call(path, body), True
        except GrpcError as exc:
            said = exc.message.removeprefix("etcdserver: ").strip()
            # Unavailable (no leader, the member stopping) or a deadline: another member
            # may answer. Anything else (a compacted revision, a bad argument) is the same
            # everywhere.
            final = exc.code not in (4, 14)
            raise Failed(f"etcd {self.url}: {said or exc}", final=final) from None

    def close(self) -> None:
        self.h2.close()


def _open(member: EtcdEndpoint, ssl_context: Any, timeout: float, settings: EtcdSettings) -> Any:
    """A socket connected to a member, TLS wrapped when `ssl_context` is given; what fails
    on the way is a Failed in words."""
    stage = "connect"
    sock: Any = None
    try:
        sock = _connect(member.host, member.port, timeout, ssl_context is not None)
        if ssl_context is not None:
            stage = "handshake"
            sock = ssl_context.wrap_socket(sock, server_hostname=member.host)
        return sock
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise transport_failure(exc, member.url(), settings, stage) from None


def _connect(host: str, port: int, timeout: float, tls: bool) -> Any:
    """A connected TCP socket (the first address of `host` that accepts), no Nagle delay;
    a socket.socket for TLS (ssl wraps only those), a bare _socket.socket for http."""
    make: Any = _socket.socket
    if tls:
        import socket

        make = socket.socket
    # An ASCII host as bytes: a str one is IDNA-encoded, an import of 1 ms.
    name = host.encode() if host.isascii() else host
    last: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = make(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"no address for {host}")


class _Reader:
    """readline/read over a socket's recv, as read_response needs (io's buffered reader
    needs socket.py's SocketIO)."""

    def __init__(self, sock: Any):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(262144)
        self.buf += data
        return bool(data)

    def readline(self, limit: int = -1) -> bytes:
        start = 0
        while True:
            end = self.buf.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if 0 <= limit <= len(self.buf):
                end = limit
                break
            start = len(self.buf)
            if not self._fill():
                end = len(self.buf)
                break
        if 0 <= limit < end:
            end = limit
        line = bytes(self.buf[:end])
        del self.buf[:end]
        return line

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            while self._fill():
                pass
            size = len(self.buf)
        while len(self.buf) < size and self._fill():
            pass
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data


class Gateway:
    """Read-only etcd access over the JSON gateway: kv_get, kv_list, status.

    Takes the same EtcdSettings as calico.datastore.Datastore.connect (checked by
    calico.config), so endpoints, TLS files and the names of their sources are resolved
    once, by the same rules."""

    def __init__(self, settings: EtcdSettings, timeout: float = 5.0, wire: str = "json"):
        if wire not in ("json", "grpc"):
            raise ValueError(f"wire is json or grpc, not {wire!r}")
        self.wire = wire  # "grpc": etcd's gRPC KV service over calico.etcd_h2 (reads only)
        self.settings = settings
        self.endpoints = settings.endpoints
        self.members = settings.parsed()
        self.cluster = len(self.members) > 1
        self.timeout = timeout
        self._ssl: Any = None
        self._current = 0  # the member asked first
        self._failed_at: dict[int, float] = {}
        self._conn: _Connection | _H2Connection | None = None
        self._conn_member = -1

    # -- reads
    def kv_get(self, key: str) -> KV | None:
        kvs, _, _, _ = self._range(key.encode())
        return kvs[0] if kvs else None

    def _range(
        self, key: bytes, end: bytes | None = None, limit: int = 0, revision: int = 0
    ) -> tuple[list[KV], int, bool, int]:
        """One range read -> (kvs, revision, more, count; count is 0 on the JSON wire)."""
        if self.wire == "grpc":
            from calico import etcd_h2

            body = self._post(etcd_h2.RANGE_PATH, etcd_h2.range_request(key, end, limit, revision))
            try:
                kvs, rev, more, count = etcd_h2.parse_range(body)
            except ValueError as exc:
                url = self.members[self._conn_member].url()
                raise Unavailable(f"etcd {url}: {NOT_ETCD} ({exc})") from None
            return list(map(KV._make, kvs)), rev, more, count
        body = self._post("/v3/kv/range", range_request(key, end, limit, revision))
        try:
            return (*parse_range(body), 0)
        except (ValueError, TypeError, AttributeError) as exc:  # a 200 that is not etcd's
            url = self.members[self._conn_member].url()
            raise Unavailable(f"etcd {url}: {NOT_ETCD} ({exc})") from None

    def kv_list(
        self,
        prefix: str,
        page: int = LIST_PAGE,
        on_page: Callable[[list[KV]], None] | None = None,
    ) -> tuple[list[KV], int]:
        """Every key under a prefix and the revision it was read at: pages of `page` keys
        pinned to the first page's revision, so the listing is one consistent state.
        `on_page` sees each page as it arrives; on the gRPC wire the listing then ends on
        a page of an eighth, as calico.datastore's does (`next_limit`)."""
        start = prefix.encode()
        end = prefix_end(start)
        out: list[KV] = []
        revision = 0
        limit = page
        while True:
            kvs, rev, more, count = self._range(start, end, limit, revision)
            revision = revision or rev
            out.extend(kvs)
            if not more or not kvs:
                if on_page is not None and kvs:
                    on_page(kvs)
                return out, revision
            start = kvs[-1].key.encode() + b"\0"
            if on_page is not None and count:
                limit = next_limit(page, count - len(kvs))
            if on_page is not None:
                self._send_ahead(start, end, limit, revision)
                on_page(kvs)

    def _send_ahead(self, key: bytes, end: bytes, limit: int, revision: int) -> None:
        """On the gRPC wire, the next page's request goes out before `on_page` works on
        this one, so etcd serves it meanwhile: a 10,000-endpoint listing's pages came
        15 ms apart instead of 30-48 (etcd, the follower and the console share 2 cores).
        Best effort: if it cannot be sent, the next `_range` sends it, and says why not."""
        if isinstance(self._conn, _H2Connection):
            from calico import etcd_h2

            try:
                self._conn.h2.send_ahead(
                    etcd_h2.RANGE_PATH, etcd_h2.range_request(key, end, limit, revision)
                )
            except OSError:
                pass

    def status(self) -> dict[str, Any]:
        """/v3/maintenance/status of the member answering: {"version": "3.4.23", ...}."""
        return json.loads(self._post("/v3/maintenance/status", b"{}"))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- one call, with failover
    def _ssl_context(self, url: str) -> Any:
        if self._ssl is None:
            import ssl

            s = self.settings
            try:
                ctx = ssl.create_default_context(cafile=s.ca_cert_file)
            except (ssl.SSLError, OSError) as exc:
                raise Failed(
                    f"etcd {url}: cannot use {s.source_of('ca_cert_file')}: {exc}", tls=True
                ) from None
            if s.cert_file:
                ctx.load_cert_chain(s.cert_file, s.key_file)  # calico.config checked them
            if self.wire == "grpc":
                ctx.set_alpn_protocols(["h2"])
            self._ssl = ctx
        return self._ssl

    def _pick(self) -> int | None:
        """The member to ask: the current one, else the next that did not fail just now."""
        now = time.monotonic()
        n = len(self.members)
        for step in range(n):
            idx = (self._current + step) % n
            if now - self._failed_at.get(idx, -FAILED_MEMBER_SKIP) >= FAILED_MEMBER_SKIP:
                return idx
        return None

    def _post(self, path: str, body: bytes) -> bytes:
        deadline = time.monotonic() + FAILOVER_WINDOW
        attempt = min(self.timeout, CLUSTER_ATTEMPT_TIMEOUT) if self.cluster else self.timeout
        last: Failed | None = None  # the last member's own failure, the one worth reporting
        while True:
            idx = self._pick()
            if idx is None:  # every member failed in the last FAILED_MEMBER_SKIP
                failure = last or Failed(f"etcd unavailable: no member of {self.endpoints} answers")
            else:
                try:
                    return self._attempt(idx, path, body, attempt)
                except Failed as exc:
                    failure = last = exc
                self.close()
                if not failure.final:
                    self._failed_at[idx] = time.monotonic()
                    self._current = (idx + 1) % len(self.members)
            if not self.cluster or failure.final or time.monotonic() >= deadline:
                raise Unavailable(failure.line) from None
            time.sleep(0.02)

    def _attempt(self, idx: int, path: str, body: bytes, timeout: float) -> bytes:
        member = self.members[idx]
        url = member.url()
        if self._conn_member != idx:
            self.close()
        for _ in range(2):
            reused = self._conn is not None
            if self._conn is None:
                ctx = self._ssl_context(url) if member.scheme == "https" else None
                make = _H2Connection if self.wire == "grpc" else _Connection
                self._conn = make(member, ctx, timeout, self.settings)
                self._conn_member = idx
            conn = self._conn
            stage = "exchange" if conn.fresh and member.scheme == "https" else "reply"
            try:
                status, answer, keep = conn.post(path, body, timeout)
            except (OSError, EOFError) as exc:
                self.close()
                if reused and isinstance(exc, ConnectionError | EOFError):
                    continue  # an idle connection the member closed: once more, fresh
                raise transport_failure(exc, url, self.settings, stage) from None
            except ValueError:  # not HTTP: something else listens there
                self.close()
                raise Failed(f"etcd {url}: {NOT_ETCD}") from None
            conn.fresh = False
            if not keep:
                self.close()
            if status == 200:
                return answer
            if status == 404:
                raise GatewayMissing(f"etcd {url}: no v3 JSON gateway ({path}: HTTP 404)")
            raise Failed(error_line(url, status, answer))
        raise Failed(f"etcd {url}: {CLOSED_PLAIN}")
