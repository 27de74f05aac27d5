"""calico.etcd_gateway's pure parts: the JSON both ways, HTTP/1.1 answers (sized and
chunked), and the one-line failures, worded as calico.datastore words them."""

from __future__ import annotations

import base64
import io
import json
import socket
import ssl

import pytest

from calico import datastore, etcd_gateway
from calico.config import EtcdSettings
from calico.etcd_gateway import (
    KV,
    error_line,
    parse_range,
    prefix_end,
    range_request,
    read_response,
    transport_failure,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_range_request_is_etcds_json_with_base64_keys_and_zero_fields_left_out():
    body = json.loads(range_request(b"/calico/a/", b"/calico/a0", limit=500, revision=7))
    assert body == {
        "key": b64(b"/calico/a/"),
        "range_end": b64(b"/calico/a0"),
        "limit": 500,
        "revision": 7,
    }
    assert json.loads(range_request(b"/k")) == {"key": b64(b"/k")}


def test_prefix_end_is_etcds_rule():
    assert prefix_end(b"/calico/resources/") == b"/calico/resources0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_a_range_answer_becomes_kvs_revision_and_more():
    answer = {
        "header": {"cluster_id": "1", "revision": "42", "raft_term": "2"},
        "kvs": [
            {"key": b64(b"/p/a"), "value": b64(b'{"x":1}'), "mod_revision": "40",
             "create_revision": "3", "version": "2"},
            {"key": b64(b"/p/b"), "mod_revision": "41", "create_revision": "41"},
        ],
        "more": True,
        "count": "9",
    }  # fmt: skip
    kvs, revision, more = parse_range(json.dumps(answer).encode())
    assert kvs == [KV("/p/a", b'{"x":1}', 40, 3), KV("/p/b", b"", 41, 41)]
    assert (revision, more) == (42, True)
    # etcd leaves out what is zero: no kvs, no more
    assert parse_range(b'{"header":{"revision":"5"}}') == ([], 5, False)


def test_gateway_kvs_have_the_datastore_kv_fields():
    assert KV._fields == tuple(datastore.KV.__dataclass_fields__)


def test_a_sized_answer_is_read_and_the_connection_kept():
    raw = (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}NEXT'
    )
    reader = io.BufferedReader(io.BytesIO(raw))
    assert read_response(reader) == (200, b'{"a":1}', True)
    assert reader.read() == b"NEXT"  # the next answer on the same connection starts here


def test_a_chunked_answer_with_trailers_is_read_whole():
    raw = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: Grpc-Trailer-Content-Type\r\n\r\n"
        b'a\r\n{"error":"\r\n'
        b'1c;ext=1\r\netcdserver: no leader","code\r\n'
        b'5\r\n":14}\r\n'
        b"0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n"
    )
    status, body, keep = read_response(io.BufferedReader(io.BytesIO(raw)))
    assert (status, keep) == (400, True)
    assert json.loads(body) == {"error": "etcdserver: no leader", "code": 14}


def test_connection_close_and_http_1_0_are_not_kept():
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    assert read_response(io.BufferedReader(io.BytesIO(close))) == (200, b"{}", False)
    old = b"HTTP/1.0 200 OK\r\n\r\n{}"
    assert read_response(io.BufferedReader(io.BytesIO(old))) == (200, b"{}", False)


@pytest.mark.parametrize(
    "raw",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", b"HTTP/1.1 200 OK\r\nContent"],
)
def test_an_answer_cut_short_is_an_eof(raw):
    with pytest.raises(EOFError):
        read_response(io.BufferedReader(io.BytesIO(raw)))


def test_something_that_is_not_http_is_a_value_error():
    with pytest.raises(ValueError, match="not an HTTP answer"):
        read_response(io.BufferedReader(io.BytesIO(b"\x15\x03\x01\x00\x02\x02\x46")))


def test_etcd_errors_are_its_words_without_the_etcdserver_prefix():
    url = "http://127.0.0.1:2379"
    body = b'{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}'
    assert error_line(url, 503, body) == f"etcd {url}: no leader"
    not_etcd = "not an etcd answer (is this etcd's client URL?)"
    assert error_line(url, 502, b"<html>Bad Gateway</html>") == f"etcd {url}: HTTP 502, {not_etcd}"
    assert error_line(url, 500, b"") == f"etcd {url}: HTTP 500, {not_etcd}"


URL = "https://127.0.0.1:2379"


def tls_settings(**files) -> EtcdSettings:
    return EtcdSettings(URL, "/x/ca.pem", sources=(("ca_cert_file", "ETCD_CA_CERT_FILE"),), **files)


def verify_error(message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(
    "message, reason",
    [
        ("unable to get local issuer certificate", "certificate signed by unknown authority"),
        ("certificate has expired", "etcd's certificate has expired"),
        ("IP address mismatch, certificate is not valid for '127.0.0.1'.",
         "etcd's certificate does not name this address"),
        ("Hostname mismatch, certificate is not valid for 'etcd1'.",
         "etcd's certificate does not name this address"),
    ],
)  # fmt: skip
def test_a_server_certificate_problem_names_the_ca_and_is_not_retried(message, reason):
    failure = transport_failure(verify_error(message), URL, tls_settings(), "handshake")
    assert (
        failure.line == f"etcd {URL}: TLS handshake failed: {reason} (ETCD_CA_CERT_FILE=/x/ca.pem)"
    )
    assert failure.tls


def test_the_verify_words_are_the_datastores():
    assert datastore.VERIFY_REASONS is etcd_gateway.VERIFY_REASONS  # one table for both


def test_a_refused_client_certificate_says_which_and_why():
    alert = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert")
    alert.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    none = transport_failure(alert, URL, tls_settings(), "exchange")
    assert none.tls and none.line == (
        f"etcd {URL}: TLS handshake failed: etcd requires a client certificate and none"
        " was given (ETCD_CERT_FILE, ETCD_KEY_FILE)"
    )
    # TLS 1.3: the server's refusal can arrive as a closed connection on the first request
    given = tls_settings(cert_file="/nonexistent/c.pem", key_file="/nonexistent/k.pem")
    closed = transport_failure(ConnectionResetError(104, "reset"), URL, given, "exchange")
    assert closed.tls and "etcd rejected the client certificate" in closed.line


@pytest.mark.parametrize(
    "exc, stage, url, line",
    [
        (ConnectionRefusedError(111, "Connection refused"), "connect", "http://h:1",
         "etcd http://h:1: connection refused"),
        (TimeoutError("timed out"), "reply", "http://h:1",
         "etcd http://h:1: no answer within the timeout"),
        (OSError(113, "No route to host"), "connect", "http://h:1",
         "etcd http://h:1: no route to host"),
        (socket.gaierror(-2, "Name or service not known"), "connect", "http://nohost:1",
         "etcd http://nohost:1: cannot resolve nohost: Name or service not known"),
        (EOFError("closed"), "reply", "http://h:1",
         "etcd http://h:1: the connection was closed (the member stopped, or it serves only"
         " TLS: use https:// and ETCD_CA_CERT_FILE)"),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "handshake", URL,
         f"etcd {URL}: TLS handshake failed: the connection was closed (the member stopped,"
         " or it serves plain http: use http://)"),
    ],
)  # fmt: skip
def test_transport_failures_are_one_line(exc, stage, url, line):
    failure = transport_failure(exc, url, None, stage)
    assert failure.line == line and not failure.tls


def test_the_failover_budgets_are_the_datastores():
    for name in ("LIST_PAGE", "FAILOVER_WINDOW", "CLUSTER_ATTEMPT_TIMEOUT", "FAILED_MEMBER_SKIP"):
        assert getattr(etcd_gateway, name) == getattr(datastore, name), name


class Trickle:
    """A socket that hands out its bytes a few at a time, then end of stream."""

    def __init__(self, data: bytes, step: int = 3):
        self.data, self.step = data, step

    def recv(self, size: int) -> bytes:
        out, self.data = self.data[: min(size, self.step)], self.data[min(size, self.step) :]
        return out


def test_the_socket_reader_reads_answers_however_the_bytes_arrive():
    one = b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"a":1}'
    two = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    for step in (1, 5, 1 << 20):
        reader = etcd_gateway._Reader(Trickle(one + two, step))
        assert read_response(reader) == (200, b'{"a":1}', True)
        assert read_response(reader) == (503, b"{}", True)
        with pytest.raises(EOFError):
            read_response(reader)
    reader = etcd_gateway._Reader(Trickle(b"abcdef\nrest"))
    assert reader.readline(3) == b"abc" and reader.readline() == b"def\n"
    assert reader.read() == b"rest"
