"""etcd's gRPC KV.Range spoken over HTTP/2 with the standard library: a listing without
importing grpc.

Why: the console's follower process lists every key before it can show a row, and the
grpc stack (cygrpc, the etcd protobufs, pyetcd) took 75-90 ms of its ~250 ms to import
before the first byte went to etcd. etcd's JSON gateway needs no import but serves 10,000
endpoints in ~185 ms instead of gRPC's ~45 ms (etcd marshals the JSON and base64 itself).
This module asks the gRPC service itself, so etcd does the same work as for its own
clients, and ~1 ms of import is paid here. calico.etcd_gateway drives it (`wire="grpc"`):
endpoints, TLS, failover and the one-line errors are that module's, for both wires.

What is spoken, each part as small as a unary call needs:
- HTTP/2 (RFC 9113): the preface, SETTINGS (windows opened to 2^31-1 so etcd never waits
  on us), one stream per call, HEADERS + DATA out, HEADERS/DATA/trailers in; PING and
  SETTINGS answered; GOAWAY and RST_STREAM are errors.
- HPACK (RFC 7541): requests as literals without indexing (no table needed to send);
  answers decoded in full, dynamic table and Huffman strings included (grpc-go Huffman
  codes every string it can shorten).
- gRPC: one length-prefixed, uncompressed message each way; `grpc-status` and the
  percent-encoded `grpc-message` from the trailers.
- protobuf: RangeRequest written by hand; RangeResponse read by hand into plain tuples
  (3.5 ms per 2,000 keys, what upb's parse and the conversion to tuples cost together).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

RANGE_PATH = "/etcdserverpb.KV/Range"
MAX_WINDOW = 0x7FFFFFFF
MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE: the default, which we never raise
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9,
)  # fmt: skip
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
FRAME_HEAD = struct.Struct(">IBI")  # 24-bit length and type in one int, flags, stream
GRPC_PREFIX = struct.Struct(">BI")  # compressed flag, message length
GRPC_CODES = {
    1: "cancelled", 2: "unknown", 3: "invalid argument", 4: "deadline exceeded",
    5: "not found", 6: "already exists", 7: "permission denied", 8: "resource exhausted",
    9: "failed precondition", 10: "aborted", 11: "out of range", 12: "unimplemented",
    13: "internal", 14: "unavailable", 15: "data loss", 16: "unauthenticated",
}  # fmt: skip


class ProtocolError(ValueError):
    """The peer does not speak what etcd's gRPC service speaks (a ValueError: callers treat
    it as "not etcd")."""


class GrpcError(Exception):
    """A call that etcd answered with a non-zero grpc-status."""

    def __init__(self, code: int, message: str):
        super().__init__(message or GRPC_CODES.get(code, f"grpc status {code}"))
        self.code = code
        self.message = message


# ---------------------------------------------------------------- HPACK

# The static table (RFC 7541 appendix A), index 1 first.
STATIC_TABLE: tuple[tuple[str, str], ...] = tuple(
    (name, value)
    for name, _, value in (
        entry.partition(" ")
        for entry in (
            ":authority",
            ":method GET",
            ":method POST",
            ":path /",
            ":path /index.html",
            ":scheme http",
            ":scheme https",
            ":status 200",
            ":status 204",
            ":status 206",
            ":status 304",
            ":status 400",
            ":status 404",
            ":status 500",
            "accept-charset",
            "accept-encoding gzip, deflate",
            "accept-language",
            "accept-ranges",
            "accept",
            "access-control-allow-origin",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "content-disposition",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-range",
            "content-type",
            "cookie",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "link",
            "location",
            "max-forwards",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "refresh",
            "retry-after",
            "server",
            "set-cookie",
            "strict-transport-security",
            "transfer-encoding",
            "user-agent",
            "vary",
            "via",
            "www-authenticate",
        )  # fmt: skip
    )
)

# The Huffman code's length in bits for each symbol, 0-255 and EOS (RFC 7541 appendix B).
# The code is canonical: codes follow from the lengths alone, assigned in order of length
# and then symbol, so the table is these 257 numbers.
HUFFMAN_LENGTHS = (
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
)  # fmt: skip
EOS = 256


def huffman_codes(lengths: tuple[int, ...] = HUFFMAN_LENGTHS) -> dict[int, int]:
    """symbol -> code, from the code lengths of a canonical Huffman code."""
    codes: dict[int, int] = {}
    code, last = -1, 0
    for symbol in sorted(range(len(lengths)), key=lambda s: (lengths[s], s)):
        code = (code + 1) << (lengths[symbol] - last)
        last = lengths[symbol]
        codes[symbol] = code
    return codes


# (length, code) -> symbol, for the decoder (257 entries, built in ~0.1 ms).
_DECODE = {(HUFFMAN_LENGTHS[s], c): s for s, c in huffman_codes().items()}


def huffman_decode(data: bytes) -> bytes:
    """A Huffman-coded string -> its octets. Header strings are tens of bytes, so a bit at
    a time is fast enough; the padding must be at most 7 bits of EOS's leading ones."""
    out = bytearray()
    code = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            symbol = _DECODE.get((length, code))
            if symbol is not None:
                if symbol == EOS:
                    raise ProtocolError("HPACK: EOS inside a Huffman string")
                out.append(symbol)
                code = length = 0
            elif length > 30:
                raise ProtocolError("HPACK: not a Huffman code")
    if length > 7 or code != (1 << length) - 1:
        raise ProtocolError("HPACK: bad Huffman padding")
    return bytes(out)


def _integer(block: bytes, i: int, prefix_bits: int) -> tuple[int, int]:
    """An HPACK integer whose prefix is the low `prefix_bits` of block[i] -> (value, next)."""
    limit = (1 << prefix_bits) - 1
    value = block[i] & limit
    i += 1
    if value < limit:
        return value, i
    shift = 0
    while True:
        if i >= len(block):
            raise ProtocolError("HPACK: integer cut short")
        byte = block[i]
        i += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i
        if shift > 28:
            raise ProtocolError("HPACK: integer too large")


def _string(block: bytes, i: int) -> tuple[str, int]:
    if i >= len(block):
        raise ProtocolError("HPACK: string cut short")
    huffman = block[i] & 0x80
    size, i = _integer(block, i, 7)
    raw = block[i : i + size]
    if len(raw) != size:
        raise ProtocolError("HPACK: string cut short")
    data = huffman_decode(raw) if huffman else raw
    return data.decode("latin-1"), i + size


class HeaderDecoder:
    """One connection's HPACK decoder: every header block of the connection goes through
    it in order, since each may add to the dynamic table the next ones refer to."""

    def __init__(self, max_size: int = 4096):
        self.max_size = max_size  # SETTINGS_HEADER_TABLE_SIZE we announce (the default)
        self.limit = max_size  # the encoder's current size, at most max_size
        self.dynamic: list[tuple[str, str]] = []  # newest first: index 62 is dynamic[0]
        self.size = 0

    def _entry(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        pos = index - len(STATIC_TABLE) - 1
        if 0 <= pos < len(self.dynamic):
            return self.dynamic[pos]
        raise ProtocolError(f"HPACK: no table entry {index}")

    def _add(self, name: str, value: str) -> None:
        self.dynamic.insert(0, (name, value))
        self.size += len(name) + len(value) + 32
        self._evict()

    def _evict(self) -> None:
        while self.size > self.limit and self.dynamic:
            name, value = self.dynamic.pop()
            self.size -= len(name) + len(value) + 32

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        i = 0
        while i < len(block):
            byte = block[i]
            if byte & 0x80:  # indexed field
                index, i = _integer(block, i, 7)
                headers.append(self._entry(index))
                continue
            if byte & 0xE0 == 0x20:  # dynamic table size update
                size, i = _integer(block, i, 5)
                if size > self.max_size:
                    raise ProtocolError("HPACK: table size above the one announced")
                self.limit = size
                self._evict()
                continue
            indexing = byte & 0xC0 == 0x40
            index, i = _integer(block, i, 6 if indexing else 4)
            if index:
                name = self._entry(index)[0]
            else:
                name, i = _string(block, i)
            value, i = _string(block, i)
            headers.append((name, value))
            if indexing:
                self._add(name, value)
        return headers


def _literal(text: str) -> bytes:
    data = text.encode("latin-1")
    return _encode_integer(len(data), 7, 0) + data


def _encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    """A header block of literals without indexing, plain strings: no state to keep."""
    return b"".join(b"\x00" + _literal(name) + _literal(value) for name, value in headers)


# ---------------------------------------------------------------- protobuf


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64s go out as two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def range_request(
    key: bytes, range_end: bytes | None = None, limit: int = 0, revision: int = 0
) -> bytes:
    """etcdserverpb.RangeRequest: key = 1, range_end = 2, limit = 3, revision = 4 (zero
    fields left out, as protobuf does)."""
    out = b"\x0a" + _varint(len(key)) + key
    if range_end:
        out += b"\x12" + _varint(len(range_end)) + range_end
    if limit:
        out += b"\x18" + _varint(limit)
    if revision:
        out += b"\x20" + _varint(revision)
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    byte = data[i]
    if byte < 0x80:
        return byte, i + 1
    value, shift = byte & 0x7F, 7
    i += 1
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ProtocolError("protobuf: varint too long")


def _skip(data: bytes, i: int, wire_type: int) -> int:
    if wire_type == 0:
        return _read_varint(data, i)[1]
    if wire_type == 2:
        size, i = _read_varint(data, i)
        return i + size
    if wire_type == 1:
        return i + 8
    if wire_type == 5:
        return i + 4
    raise ProtocolError(f"protobuf: wire type {wire_type}")


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message: varints as ints, length-delimited
    fields as (start, end) into data, anything else skipped."""
    i = start
    while i < end:
        tag, i = _read_varint(data, i)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, i = _read_varint(data, i)
            yield number, 0, value
        elif wire_type == 2:
            size, i = _read_varint(data, i)
            if i + size > end:
                raise ProtocolError("protobuf: field runs past its message")
            yield number, 2, (i, i + size)
            i += size
        else:
            i = _skip(data, i, wire_type)
    if i != end:
        raise ProtocolError("protobuf: message cut short")


def parse_range(data: bytes) -> tuple[list[tuple[str, bytes, int, int]], int, bool, int]:
    """etcdserverpb.RangeResponse -> (kvs as (key, value, mod_revision, create_revision),
    the header's revision, more, count). Fields: header = 1 (revision = 3), kvs = 2
    (KeyValue: key = 1, create_revision = 2, mod_revision = 3, value = 5), more = 3,
    count = 4."""
    kvs: list[tuple[str, bytes, int, int]] = []
    append_kv = kvs.append
    revision = count = 0
    more = False
    end = len(data)
    i = 0
    try:
        while i < end:
            tag = data[i]
            if tag == 0x12:  # a KeyValue: the hot path, ~10,000 per listing
                size = data[i + 1]
                if size < 0x80:
                    i += 2
                else:
                    size, i = _read_varint(data, i + 1)
                append_kv(_key_value(data, i, i + size))
                i += size
                continue
            tag, i = _read_varint(data, i)
            number, wire_type = tag >> 3, tag & 7
            if wire_type == 0:
                value, i = _read_varint(data, i)
                if number == 3:
                    more = bool(value)
                elif number == 4:
                    count = value
            elif wire_type == 2:
                size, i = _read_varint(data, i)
                if number == 1:
                    for n, w, v in _fields(data, i, i + size):
                        if n == 3 and w == 0:
                            revision = v
                i += size
            else:
                i = _skip(data, i, wire_type)
        if i != end:
            raise ProtocolError("protobuf: message cut short")
    except IndexError:
        raise ProtocolError("protobuf: message cut short") from None
    return kvs, revision, more, count


def _key_value(data: bytes, i: int, end: int) -> tuple[str, bytes, int, int]:
    # The hot loop of a listing (10,000 of these per 10,000 endpoints): one-byte varints
    # read inline (key lengths, versions; revisions below 16,384 take two), _read_varint
    # and _skip for the rest. 2.8 -> 1.9 us a key.
    key = value = b""
    mod = create = 0
    read = _read_varint
    if end > len(data):
        raise ProtocolError("protobuf: KeyValue runs past its message")
    while i < end:
        tag = data[i]
        i += 1
        if tag == 0x0A or tag == 0x2A:  # key, value
            size = data[i]
            if size < 0x80:
                i += 1
            else:
                size, i = read(data, i)
            if tag == 0x0A:
                key = data[i : i + size]
            else:
                value = data[i : i + size]
            i += size
        elif tag == 0x10:
            create, i = read(data, i)
        elif tag == 0x18:
            mod, i = read(data, i)
        elif tag == 0x20 or tag == 0x30:  # version, lease: not kept
            if data[i] < 0x80:
                i += 1
            else:
                i = read(data, i)[1]
        elif tag & 0x80:  # a multi-byte tag: not one of KeyValue's six fields
            tag, i = read(data, i - 1)
            i = _skip(data, i, tag & 7)
        else:
            i = _skip(data, i, tag & 7)
    if i != end:
        raise ProtocolError("protobuf: KeyValue cut short")
    return key.decode(), value, mod, create


# ---------------------------------------------------------------- one connection


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return FRAME_HEAD.pack((len(payload) << 8) | kind, flags, stream) + payload


class Connection:
    """One HTTP/2 connection to one member over a connected (TLS) socket, unary gRPC calls
    on it one at a time. Transport trouble is an OSError or EOFError, a peer that is not
    gRPC a ProtocolError, a call etcd refused a GrpcError."""

    def __init__(self, sock: Any, authority: str, scheme: str):
        self.sock = sock
        self.authority = authority
        self.scheme = scheme
        self.buf = bytearray()
        self.decoder = HeaderDecoder()
        self.next_stream = 1
        self.received = 0  # DATA bytes since the connection window was last opened
        self.ahead: dict[tuple[str, bytes], int] = {}  # a request sent ahead -> its stream
        self.greeted = False  # the server's SETTINGS came
        settings = struct.pack(">HI", 2, 0) + struct.pack(">HI", 4, MAX_WINDOW)  # no push
        self.sock.sendall(
            PREFACE
            + _frame(SETTINGS, 0, 0, settings)
            + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535))
        )

    def call(self, path: str, message: bytes) -> bytes:
        """Send one request message (unless `send_ahead` sent this very one), return the
        answer's message (raises as above)."""
        stream = self.ahead.pop((path, message), None)
        if stream is None:
            stream = self._send(path, message)
        return self._answer(stream)

    def send_ahead(self, path: str, message: bytes) -> None:
        """Send the request the next `call` will make, so etcd serves it while the caller
        works on the last answer (a listing's next page while this one is decoded). One
        at a time: `_answer` reads only its own stream."""
        if not self.ahead:
            self.ahead[(path, message)] = self._send(path, message)

    def _send(self, path: str, message: bytes) -> int:
        stream = self.next_stream
        self.next_stream += 2
        headers = encode_headers(
            [
                (":method", "POST"),
                (":scheme", self.scheme),
                (":path", path),
                (":authority", self.authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
        )
        body = GRPC_PREFIX.pack(0, len(message)) + message
        self.sock.sendall(
            _frame(HEADERS, END_HEADERS, stream, headers) + _frame(DATA, END_STREAM, stream, body)
        )
        return stream

    def _answer(self, stream: int) -> bytes:
        fields: dict[str, str] = {}
        data: list[bytes] = []
        block = bytearray()  # a header block across CONTINUATION frames
        ended = False  # the HEADERS frame that began the block ended the stream
        while True:
            kind, flags, sid, payload = self._read_frame()
            if sid == 0:
                self._connection_frame(kind, flags, payload)
                continue
            if kind in (HEADERS, CONTINUATION):
                if kind == HEADERS:
                    ended = bool(flags & END_STREAM)
                    payload = _unpad(flags, payload, priority=bool(flags & PRIORITY))
                block += payload
                if not flags & END_HEADERS:
                    continue
                headers = self.decoder.decode(bytes(block))  # every block, for the table
                block.clear()
                if sid == stream:
                    fields.update(headers)
                    if ended:
                        break
            elif kind == DATA:
                self._opened(len(payload))
                if sid == stream:
                    data.append(_unpad(flags, payload))
                    if flags & END_STREAM:
                        break
            elif kind == RST_STREAM and sid == stream:
                (code,) = struct.unpack(">I", payload[:4])
                raise EOFError(f"the stream was reset (HTTP/2 error {code})")
        return _grpc_message(fields, b"".join(data))

    def _connection_frame(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            self.sock.sendall(_frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            self.sock.sendall(_frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            code = struct.unpack(">I", payload[4:8])[0] if len(payload) >= 8 else 0
            why = payload[8:].decode(errors="replace")
            raise EOFError(f"etcd closed the connection (GOAWAY {code}{': ' + why if why else ''})")

    def _opened(self, size: int) -> None:
        """Keep the connection window open: etcd stops sending when it reaches zero."""
        self.received += size
        if self.received >= 1 << 30:
            self.sock.sendall(_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.received)))
            self.received = 0

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        head = self._read(9)
        size = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        if not self.greeted:  # a server's first frame is its SETTINGS (RFC 9113 3.4)
            if head.startswith(b"HTTP/"):
                raise ProtocolError("an HTTP/1 answer, not HTTP/2")
            if kind != SETTINGS or stream != 0:
                raise ProtocolError("no HTTP/2 SETTINGS first")
            self.greeted = True
        if size > MAX_FRAME:
            raise ProtocolError(f"HTTP/2: a frame of {size} bytes (at most {MAX_FRAME} here)")
        return kind, flags, stream, self._read(size)

    def _read(self, size: int) -> bytes:
        while len(self.buf) < size:
            chunk = self.sock.recv(max(262144, size - len(self.buf)))
            if not chunk:
                raise EOFError("the connection was closed in the middle of an answer")
            self.buf += chunk
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _unpad(flags: int, payload: bytes, priority: bool = False) -> bytes:
    start, end = 0, len(payload)
    if flags & PADDED:
        if not payload:
            raise ProtocolError("HTTP/2: padded frame without its pad length")
        start, end = 1, len(payload) - payload[0]
    if priority:
        start += 5
    if start > end:
        raise ProtocolError("HTTP/2: padding longer than the frame")
    return payload[start:end]


def _grpc_message(fields: dict[str, str], body: bytes) -> bytes:
    """The answer's one message, or the error its trailers carry."""
    status = fields.get(":status")
    if status != "200":
        raise ProtocolError(f"HTTP status {status} where gRPC answers 200")
    if not fields.get("content-type", "").startswith("application/grpc"):
        raise ProtocolError(f"content-type {fields.get('content-type')!r}, not gRPC")
    code = fields.get("grpc-status")
    if code is None:
        raise EOFError("the answer ended without a gRPC status")
    if code != "0":
        from urllib.parse import unquote

        raise GrpcError(int(code) if code.isdigit() else 2, unquote(fields.get("grpc-message", "")))
    if len(body) < GRPC_PREFIX.size:
        raise ProtocolError("gRPC: no message in the answer")
    compressed, size = GRPC_PREFIX.unpack_from(body)
    if compressed:
        raise ProtocolError("gRPC: a compressed message, which was not asked for")
    if len(body) != GRPC_PREFIX.size + size:
        raise ProtocolError("gRPC: the message's length does not match its frames")
    return body[GRPC_PREFIX.size :]
