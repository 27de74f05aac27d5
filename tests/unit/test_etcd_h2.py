"""calico.etcd_h2 without etcd: HPACK against RFC 7541's own examples, the protobufs
against the etcd client's generated classes, and one connection against a scripted peer
on a socketpair (what etcd's grpc-go sends: SETTINGS, PING, Huffman headers, DATA split
and padded, trailers; and what a peer that is not etcd sends)."""

from __future__ import annotations

import random
import socket
import struct
import threading

import pytest

from calico import etcd_h2 as h

# ---------------------------------------------------------------- HPACK


# RFC 7541 appendix C.4: the strings of its request examples, Huffman coded.
HUFFMAN_EXAMPLES = {
    "www.example.com": "f1e3c2e5f23a6ba0ab90f4ff",
    "no-cache": "a8eb10649cbf",
    "custom-key": "25a849e95ba97d7f",
    "custom-value": "25a849e95bb8e8b4bf",
}


def huffman_encode(text: bytes) -> bytes:
    """The encoder side, for the tests: the codes packed, padded with EOS's leading ones."""
    codes = h.huffman_codes()
    bits = length = 0
    for byte in text:
        bits = (bits << h.HUFFMAN_LENGTHS[byte]) | codes[byte]
        length += h.HUFFMAN_LENGTHS[byte]
    pad = -length % 8
    bits = (bits << pad) | ((1 << pad) - 1)
    return (bits).to_bytes((length + pad) // 8, "big")


def test_the_huffman_code_decodes_the_rfcs_examples():
    for text, coded in HUFFMAN_EXAMPLES.items():
        assert h.huffman_decode(bytes.fromhex(coded)) == text.encode()
        assert huffman_encode(text.encode()).hex() == coded


def test_every_octet_survives_the_huffman_code():
    rng = random.Random(7541)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        assert h.huffman_decode(huffman_encode(data)) == data
    assert h.huffman_decode(b"") == b""


def test_the_code_is_the_rfcs():
    codes = h.huffman_codes()
    assert len(codes) == 257 and len(set(codes.values())) == 257
    assert (codes[ord("0")], h.HUFFMAN_LENGTHS[ord("0")]) == (0x0, 5)
    assert (codes[ord("a")], h.HUFFMAN_LENGTHS[ord("a")]) == (0x3, 5)
    assert (codes[h.EOS], h.HUFFMAN_LENGTHS[h.EOS]) == (0x3FFFFFFF, 30)
    # prefix-free, as a Huffman code is
    as_bits = sorted(format(c, f"0{h.HUFFMAN_LENGTHS[s]}b") for s, c in codes.items())
    assert not any(b.startswith(a) for a, b in zip(as_bits, as_bits[1:], strict=False))


def test_bad_huffman_is_a_protocol_error():
    with pytest.raises(h.ProtocolError, match="padding"):
        h.huffman_decode(bytes.fromhex("f1e3c2e5f23a6ba0ab90f4") + b"\x00")  # zeros as padding
    with pytest.raises(h.ProtocolError, match="padding"):
        h.huffman_decode(b"\xff")  # 8 bits of padding: more than 7
    with pytest.raises(h.ProtocolError, match="EOS"):
        h.huffman_decode(b"\xff\xff\xff\xff")  # EOS itself inside the string


def test_the_request_examples_through_one_decoder():
    """RFC 7541 C.4.1-C.4.3: three header blocks on one connection, each referring to
    what the previous ones added to the dynamic table."""
    decoder = h.HeaderDecoder()
    blocks = [
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ]
    got = [decoder.decode(bytes.fromhex(b)) for b in blocks]
    base = [(":method", "GET"), (":scheme", "http"), (":path", "/")]
    assert got[0] == [*base, (":authority", "www.example.com")]
    assert got[1] == [*base, (":authority", "www.example.com"), ("cache-control", "no-cache")]
    assert got[2] == [
        (":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
        (":authority", "www.example.com"), ("custom-key", "custom-value"),
    ]  # fmt: skip
    assert decoder.dynamic == [
        ("custom-key", "custom-value"), ("cache-control", "no-cache"),
        (":authority", "www.example.com"),
    ]  # fmt: skip
    assert decoder.size == 164


def test_the_response_examples_evict_from_a_small_table():
    """RFC 7541 C.6: responses with a 256-octet table, whose entries are evicted."""
    decoder = h.HeaderDecoder(max_size=256)
    blocks = [
        "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171"
        "863c78f0b97c8e9ae82ae43d3",
        "4883640effc1c0bf",
        "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7"
        "b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
    ]
    got = [decoder.decode(bytes.fromhex(b)) for b in blocks]
    assert got[0][0] == (":status", "302") and got[1][0] == (":status", "307")
    assert got[2][-1] == ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")
    assert [name for name, _ in decoder.dynamic] == ["set-cookie", "content-encoding", "date"]
    assert decoder.size == 215


def test_integers_and_table_size_updates():
    assert h._integer(bytes([0x0A]), 0, 5) == (10, 1)  # RFC 7541 C.1.1
    assert h._integer(bytes.fromhex("1f9a0a"), 0, 5) == (1337, 3)  # C.1.2
    for value in (0, 1, 30, 31, 127, 128, 1337, 2**20):
        for bits in (4, 5, 6, 7):
            encoded = h._encode_integer(value, bits, 0)
            assert h._integer(encoded, 0, bits) == (value, len(encoded))
    decoder = h.HeaderDecoder()
    decoder.decode(bytes.fromhex("418cf1e3c2e5f23a6ba0ab90f4ff"))
    assert decoder.dynamic
    assert decoder.decode(b"\x20") == [] and decoder.dynamic == []  # size 0: all evicted
    with pytest.raises(h.ProtocolError, match="above"):
        decoder.decode(h._encode_integer(8192, 5, 0x20))
    with pytest.raises(h.ProtocolError, match="no table entry"):
        h.HeaderDecoder().decode(bytes([0x80 | 62]))
    with pytest.raises(h.ProtocolError, match="cut short"):
        h.HeaderDecoder().decode(bytes.fromhex("418c"))


def test_what_we_send_decodes_as_sent():
    headers = [(":method", "POST"), (":path", "/etcdserverpb.KV/Range"), ("te", "trailers"),
               ("x-long", "v" * 300)]  # fmt: skip
    decoder = h.HeaderDecoder()
    assert decoder.decode(h.encode_headers(headers)) == headers
    assert decoder.dynamic == []  # literals without indexing: nothing for either side to keep


# ---------------------------------------------------------------- protobuf

rpc_pb2 = pytest.importorskip("pyetcd.etcdrpc.rpc_pb2")


def test_range_requests_are_what_protobuf_writes():
    cases = [
        dict(key=b"/calico/"),
        dict(key=b"/calico/", range_end=b"/calico0"),
        dict(key=b"/calico/", range_end=b"/calico0", limit=2000),
        dict(key=b"/calico/", range_end=b"/calico0", limit=250, revision=10**12),
        dict(key=b"k", revision=3),
    ]
    for args in cases:
        assert h.range_request(**args) == rpc_pb2.RangeRequest(**args).SerializeToString()


def _response(rng: random.Random, n: int) -> rpc_pb2.RangeResponse:
    resp = rpc_pb2.RangeResponse(more=rng.random() < 0.5, count=rng.randrange(10**9))
    resp.header.cluster_id, resp.header.member_id = rng.randrange(2**64), rng.randrange(2**64)
    resp.header.revision, resp.header.raft_term = rng.randrange(1, 2**62), rng.randrange(2**32)
    for i in range(n):
        kv = resp.kvs.add()
        kv.key = f"/calico/resources/v3/projectcalico.org/x/{i}-ü-{rng.random()}".encode()
        kv.value = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 127, 128, 900))))
        kv.create_revision = rng.choice((0, 1, 127, 128, 16383, 16384, 2**40))
        kv.mod_revision = max(kv.create_revision, rng.randrange(2**45))
        kv.version = rng.choice((0, 1, 200))
        kv.lease = rng.choice((0, 0, 7, 2**60))
    return resp


def test_range_responses_read_as_protobuf_reads_them():
    rng = random.Random(15)
    for n in (0, 1, 3, 200):
        resp = _response(rng, n)
        kvs, revision, more, count = h.parse_range(resp.SerializeToString())
        assert kvs == [
            (kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision) for kv in resp.kvs
        ]
        assert (revision, more, count) == (resp.header.revision, resp.more, resp.count)


def test_fields_a_newer_etcd_might_add_are_passed_over():
    resp = _response(random.Random(3), 2)
    data = resp.SerializeToString()
    unknown = bytes([(9 << 3) | 2, 3]) + b"new" + bytes([(10 << 3) | 0, 0x96, 0x01])
    unknown += bytes([(11 << 3) | 5]) + b"\x00" * 4 + bytes([(12 << 3) | 1]) + b"\x00" * 8
    kvs, *_ = h.parse_range(data + unknown)
    assert [kv[0] for kv in kvs] == [kv.key.decode() for kv in resp.kvs]
    # inside a KeyValue too: a field with a two-byte tag
    one = rpc_pb2.RangeResponse()
    kv = one.kvs.add()
    kv.key, kv.value, kv.mod_revision = b"k", b"v", 5
    inner = kv.SerializeToString() + bytes([0x80 | ((20 << 3) & 0x7F) | 0, (20 << 3) >> 7, 1])
    data = bytes([0x12, len(inner)]) + inner
    assert h.parse_range(data)[0] == [("k", b"v", 5, 0)]


def test_a_cut_response_is_a_protocol_error_not_a_short_listing():
    data = _response(random.Random(5), 20).SerializeToString()
    for cut in (1, 2, len(data) // 2, len(data) - 1):
        with pytest.raises(h.ProtocolError):
            h.parse_range(data[:cut])


# ---------------------------------------------------------------- one connection


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def huffman_literal(name: str, value: str) -> bytes:
    """A header as grpc-go sends it: literal with incremental indexing, Huffman strings."""
    out = b"\x40"
    for text in (name, value):
        coded = huffman_encode(text.encode())
        out += h._encode_integer(len(coded), 7, 0x80) + coded
    return out


def read_frames(data: bytes):
    i = 0
    while i + 9 <= len(data):
        size = int.from_bytes(data[i : i + 3], "big")
        kind, flags = data[i + 3], data[i + 4]
        stream = int.from_bytes(data[i + 5 : i + 9], "big")
        yield kind, flags, stream, data[i + 9 : i + 9 + size]
        i += 9 + size


class Peer:
    """The server's end of a socketpair, scripted: it reads the client's preface and
    request, then writes `script(stream)` as raw bytes."""

    def __init__(self, script):
        self.ours, self.theirs = socket.socketpair()
        self.received = bytearray()
        self.script = script
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stream = 1
        while True:
            try:
                chunk = self.theirs.recv(65536)
            except OSError:  # shut down by a test
                return
            if not chunk:
                return
            self.received += chunk
            # each request ends with a DATA frame flagged END_STREAM on an odd stream
            while self._has_request(stream):
                self.theirs.sendall(self.script(stream))
                stream += 2

    def _has_request(self, stream: int) -> bool:
        marker = bytes([h.DATA, h.END_STREAM]) + struct.pack(">I", stream)
        return marker in self.received

    def connection(self) -> h.Connection:
        self.ours.settimeout(5)
        return h.Connection(self.ours, "etcd:2379", "http")

    def close(self) -> None:
        self.ours.close()  # the peer's recv sees the end, and it returns
        self.thread.join(5)
        self.theirs.close()


def grpc_answer(stream: int, message: bytes, split: int = 7, pad: int = 0) -> bytes:
    """HEADERS (Huffman, indexed), the message over several DATA frames, one padded, and
    trailers: what etcd sends for a unary call."""
    head = bytes([0x88]) + huffman_literal("content-type", "application/grpc")
    body = h.GRPC_PREFIX.pack(0, len(message)) + message
    out = frame(h.HEADERS, h.END_HEADERS, stream, head)
    for i in range(0, len(body), split):
        part = body[i : i + split]
        if pad and i == 0:
            out += frame(h.DATA, h.PADDED, stream, bytes([pad]) + part + b"\0" * pad)
        else:
            out += frame(h.DATA, 0, stream, part)
    trailers = huffman_literal("grpc-status", "0") + huffman_literal("grpc-message", "")
    return out + frame(h.HEADERS, h.END_HEADERS | h.END_STREAM, stream, trailers)


GREETING = frame(h.SETTINGS, 0, 0, struct.pack(">HI", 5, 16384)) + frame(
    h.WINDOW_UPDATE, 0, 0, struct.pack(">I", 1000)
)


def test_a_call_reads_what_etcd_sends_and_answers_its_settings_and_pings():
    response = _response(random.Random(9), 30).SerializeToString()

    def script(stream: int) -> bytes:
        greet = GREETING if stream == 1 else b""
        ping = frame(h.PING, 0, 0, b"12345678")
        return greet + ping + grpc_answer(stream, response, split=1000, pad=5)

    peer = Peer(script)
    try:
        conn = peer.connection()
        request = h.range_request(b"/calico/", b"/calico0", 2000)
        for _ in range(3):  # the dynamic table carries over from call to call
            assert conn.call(h.RANGE_PATH, request) == response
        got = bytes(peer.received)
        assert got.startswith(h.PREFACE)
        assert frame(h.SETTINGS, h.ACK, 0) in got  # our ACK of its SETTINGS
        assert frame(h.PING, h.ACK, 0, b"12345678") in got  # and of its PING
        frames = list(read_frames(got[len(h.PREFACE) :]))
        assert frames[0][:2] == (h.SETTINGS, 0)  # ours: windows open, no push
        first = next(f for f in frames if f[0] == h.HEADERS)
        assert h.HeaderDecoder().decode(first[3]) == [
            (":method", "POST"), (":scheme", "http"), (":path", h.RANGE_PATH),
            (":authority", "etcd:2379"), ("content-type", "application/grpc"), ("te", "trailers"),
        ]  # fmt: skip
    finally:
        peer.close()


def test_a_request_sent_ahead_is_not_sent_again():
    answers = []

    def script(stream: int) -> bytes:
        answers.append(stream)
        return (GREETING if stream == 1 else b"") + grpc_answer(stream, f"s{stream}".encode())

    peer = Peer(script)
    try:
        conn = peer.connection()
        assert conn.call(h.RANGE_PATH, b"a") == b"s1"
        conn.send_ahead(h.RANGE_PATH, b"b")
        conn.send_ahead(h.RANGE_PATH, b"c")  # one at a time: not sent
        assert conn.call(h.RANGE_PATH, b"b") == b"s3"  # the one sent ahead
        assert conn.call(h.RANGE_PATH, b"c") == b"s5"  # sent now
        assert answers == [1, 3, 5]
    finally:
        peer.close()


def test_a_refused_call_is_its_grpc_status_and_message():
    def script(stream: int) -> bytes:
        only = bytes([0x88]) + huffman_literal("content-type", "application/grpc")
        only += huffman_literal("grpc-status", "11")
        only += huffman_literal(
            "grpc-message", "etcdserver: mvcc: required revision is a future revision"
        )
        return GREETING + frame(h.HEADERS, h.END_HEADERS | h.END_STREAM, stream, only)

    peer = Peer(script)
    try:
        with pytest.raises(h.GrpcError) as info:
            peer.connection().call(h.RANGE_PATH, b"")
        assert info.value.code == 11
        assert info.value.message == "etcdserver: mvcc: required revision is a future revision"
    finally:
        peer.close()


def test_headers_continued_in_continuation_frames():
    def script(stream: int) -> bytes:
        head = bytes([0x88]) + huffman_literal("content-type", "application/grpc")
        body = h.GRPC_PREFIX.pack(0, 2) + b"ok"
        trailers = huffman_literal("grpc-status", "0")
        return (
            GREETING
            + frame(h.HEADERS, 0, stream, head[:3])
            + frame(h.CONTINUATION, h.END_HEADERS, stream, head[3:])
            + frame(h.DATA, 0, stream, body)
            + frame(h.HEADERS, h.END_STREAM, stream, trailers[:2])
            + frame(h.CONTINUATION, h.END_HEADERS, stream, trailers[2:])
        )

    peer = Peer(script)
    try:
        assert peer.connection().call(h.RANGE_PATH, b"") == b"ok"
    finally:
        peer.close()


@pytest.mark.parametrize(
    "answer, error, words",
    [
        (b"HTTP/1.0 501 Unsupported method ('PRI')\r\n\r\n", h.ProtocolError, "HTTP/1"),
        (frame(h.PING, 0, 0, b"12345678"), h.ProtocolError, "SETTINGS first"),
        (GREETING + frame(h.RST_STREAM, 0, 1, struct.pack(">I", 8)), EOFError, "reset"),
        (GREETING + frame(h.GOAWAY, 0, 0, struct.pack(">II", 0, 11) + b"calm"), EOFError, "GOAWAY 11: calm"),
        (GREETING + b"\xff\xff\xff" + b"\x00" * 6, h.ProtocolError, "a frame of"),
        (GREETING + frame(h.HEADERS, h.END_HEADERS | h.END_STREAM, 1, bytes([0x8D])), h.ProtocolError, "HTTP status 404"),
        (GREETING + grpc_answer(1, b"x")[:-5], EOFError, "closed"),
    ],
)  # fmt: skip
def test_what_is_not_etcd_answering_is_an_error(answer, error, words):
    peer = Peer(lambda stream: answer)
    try:
        conn = peer.connection()
        if error is EOFError and "closed" in words:
            threading.Timer(0.2, lambda: peer.theirs.shutdown(socket.SHUT_WR)).start()
        with pytest.raises(error, match=words):
            conn.call(h.RANGE_PATH, b"")
    finally:
        peer.close()


def test_a_compressed_or_missing_message_is_refused():
    def compressed(stream: int) -> bytes:
        answer = grpc_answer(stream, b"zz")
        body_at = answer.index(h.GRPC_PREFIX.pack(0, 2))
        return GREETING + answer[:body_at] + b"\x01" + answer[body_at + 1 :]

    peer = Peer(compressed)
    try:
        with pytest.raises(h.ProtocolError, match="compressed"):
            peer.connection().call(h.RANGE_PATH, b"")
    finally:
        peer.close()
