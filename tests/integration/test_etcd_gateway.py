"""calico.etcd_gateway against real etcd: the same keys, listings and one-line failures as
the gRPC datastore, over one member, a cluster with members down, a member without the
gateway (calicoctl falls back to gRPC) and a 3-member cluster serving only TLS with client
certificates (certificates from lab.pki in tmp_path; members stopped by our pids)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calico.config import EtcdSettings
from calico.datastore import Datastore
from calico.errors import Unavailable
from calico.etcd_gateway import Gateway
from calicoctl import context
from calicoctl.cli import main
from lab.etcd import EtcdCluster, free_port, local_etcd
from lab.pki import issue, make_ca, make_pki
from tests.unit.test_calicoctl_format import SAMPLES

pytestmark = pytest.mark.etcd

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")


def same(kvs_a, kvs_b) -> bool:
    fields = ("key", "value", "mod_revision", "create_revision")
    return [tuple(getattr(kv, f) for f in fields) for kv in kvs_a] == [
        tuple(getattr(kv, f) for f in fields) for kv in kvs_b
    ]


def failure(call) -> str:
    with pytest.raises(Unavailable) as info:
        call()
    return str(info.value)


WIRES = pytest.mark.parametrize("wire", ["json", "grpc"])


@WIRES
def test_reads_are_the_datastores_across_pages(datastore, etcd_server, wire):
    prefix = "/calico/resources/v3/projectcalico.org/profiles/"
    ops = datastore.ops
    for start in range(0, 1203, 100):  # more than two pages of 500
        puts = [
            ops.put(f"{prefix}p{i:05d}", f'{{"n":{i}}}')
            for i in range(start, min(start + 100, 1203))
        ]
        datastore.kv_txn([], puts)
    datastore.kv_put(prefix + "p00007", "changed")  # a key with a later mod revision
    datastore.kv_put(prefix[:-1] + "x/other", "{}")  # a sibling prefix: not listed
    gw = Gateway(EtcdSettings(etcd_server.endpoints), wire=wire)
    try:
        ours, rev = gw.kv_list(prefix)
        theirs, their_rev = datastore.kv_list(prefix)
        assert len(ours) == 1203 and same(ours, theirs) and rev == their_rev
        small, small_rev = gw.kv_list(prefix, page=7)  # many pages, one revision
        assert same(small, theirs) and small_rev == rev
        pages: list = []  # taken page by page (the gRPC wire sends each next request ahead)
        paged, paged_rev = gw.kv_list(prefix, page=500, on_page=pages.append)
        assert same(paged, theirs) and paged_rev == rev
        assert same([kv for p in pages for kv in p], theirs)
        if wire == "grpc":  # ends on a page of an eighth, as calico.datastore's listing does
            assert [len(p) for p in pages] == [500, 500, 141, 62]
        assert same([gw.kv_get(prefix + "p00007")], [datastore.kv_get(prefix + "p00007")])
        assert gw.kv_get(prefix + "absent") is None
    finally:
        gw.close()


def test_calicoctl_get_prints_what_the_grpc_path_prints(
    datastore, etcd_server, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd_server.endpoints)
    docs = "---\n".join(SAMPLES.values())
    (tmp_path / "all.yaml").write_text(docs)
    assert main(["create", "-f", str(tmp_path / "all.yaml")]) == 0
    capsys.readouterr()
    cases = [["get", kind, *args, "-o", fmt] for kind in ("profiles", "wep", "gnp", "ippools", "nodes")
             for args in ([], ["-A"]) for fmt in ("ps", "wide", "yaml", "json")]  # fmt: skip
    cases += [["get", "profile", "network1", "nosuch"], ["get", "-f", str(tmp_path / "all.yaml")]]

    def outputs() -> list:
        got = []
        for argv in cases:
            code = main(argv)
            got.append((code, *capsys.readouterr()))
        return got

    over_gateway = outputs()
    monkeypatch.setattr(context.Cli, "reader", lambda self: self.datastore())
    over_grpc = outputs()
    assert over_gateway == over_grpc
    assert over_gateway[0][1].startswith("NAME\nnetwork1")


@WIRES
def test_etcd_down_is_the_datastores_one_line_and_quick(wire):
    closed = f"http://127.0.0.1:{free_port()}"
    single = EtcdSettings(closed)
    t0 = time.monotonic()
    line = failure(lambda: Gateway(single, wire=wire).kv_list("/calico/"))
    assert time.monotonic() - t0 < 2.0  # one member: no retry (the window is 2.5 s)
    assert line == f"etcd {closed}: connection refused"
    assert line == failure(lambda: Datastore.connect(single).kv_list("/calico/"))
    proc = subprocess.run(
        [CALICOCTL, "get", "profiles"], capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "ETCD_ENDPOINTS": closed, "CALICOCTL_CONFIG": "/nonexistent"},
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"etcd unavailable at {closed}: connection refused\n"


@WIRES
def test_a_dead_member_is_passed_over_and_all_dead_is_one_line(etcd_server, datastore, wire):
    datastore.kv_put("/calico/gw/k", "v")
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    gw = Gateway(EtcdSettings(f"{dead[0]},{etcd_server.endpoints}"), wire=wire)
    assert gw.kv_get("/calico/gw/k").value == b"v"
    t0 = time.monotonic()
    all_dead = Gateway(EtcdSettings(",".join(dead)), wire=wire)
    line = failure(lambda: all_dead.kv_get("/calico/gw/k"))
    elapsed = time.monotonic() - t0
    assert 2.0 < elapsed < 5.0, elapsed  # tried for the failover window, then one line
    assert line in (f"etcd {dead[0]}: connection refused", f"etcd {dead[1]}: connection refused")


def test_what_etcd_refuses_on_the_grpc_wire_is_its_words_and_not_retried(etcd_server):
    """A gRPC status etcd answers with (here a revision it has not reached) is its own
    message in one line, the member named, at once: another member would say the same."""
    url = etcd_server.endpoints
    members = EtcdSettings(f"{url},{url}")  # a "cluster": one that fails over, if it would
    gw = Gateway(members, wire="grpc")
    t0 = time.monotonic()
    line = failure(lambda: gw._range(b"/calico/", b"/calico0", 1, 10**12))
    assert time.monotonic() - t0 < 1.0
    assert line == f"etcd {url}: mvcc: required revision is a future revision"
    assert gw.kv_get("/calico/absent") is None  # the connection is still good to use
    gw.close()


def test_a_member_without_the_gateway_is_read_over_grpc(tmp_path):
    server = local_etcd(tmp_path, name="nogw")
    server.extra_args = ["--enable-grpc-gateway=false"]
    server.start()
    try:
        ds = Datastore.connect(server.endpoints)
        ds.kv_put(
            "/calico/resources/v3/projectcalico.org/profiles/nogw",
            '{"kind":"Profile","metadata":{"name":"nogw"}}',
        )
        ds.close()
        proc = subprocess.run(
            [CALICOCTL, "get", "profiles"], capture_output=True, text=True, timeout=30,
            env={"PATH": "/usr/bin:/bin", "ETCD_ENDPOINTS": server.endpoints, "CALICOCTL_CONFIG": "/nonexistent"},
        )  # fmt: skip
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "NAME\nnogw\n", "")
    finally:
        server.stop()


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("gw-tls")
    pki = make_pki(base / "pki", [])
    issue(pki, "expired", "calico", days=-1)
    other = make_ca(base / "other")
    issue(other, "client", "calico")
    cluster = EtcdCluster.local(base, 3, name="gw" + secrets.token_hex(2), tls=pki)
    cluster.start()
    try:
        cluster.other = other  # type: ignore[attr-defined]
        yield cluster
    finally:
        cluster.stop()


def tls_settings(c: EtcdCluster, **override) -> EtcdSettings:
    env = {**c.client_env(), **override}
    return EtcdSettings(
        env["ETCD_ENDPOINTS"], env.get("ETCD_CA_CERT_FILE"), env.get("ETCD_CERT_FILE"),
        env.get("ETCD_KEY_FILE"),
        sources=(("ca_cert_file", "ETCD_CA_CERT_FILE"), ("cert_file", "ETCD_CERT_FILE"),
                 ("key_file", "ETCD_KEY_FILE")),
    )  # fmt: skip


@WIRES
def test_tls_reads_and_certificate_problems_are_the_datastores(tls_cluster, wire):
    c, pki, other = tls_cluster, tls_cluster.tls, tls_cluster.other
    ds = Datastore.connect(tls_settings(c))
    ds.kv_put("/calico/gw/tls", "yes")
    ds.close()
    gw = Gateway(tls_settings(c), wire=wire)
    assert gw.kv_get("/calico/gw/tls").value == b"yes"
    gw.close()
    problems = {
        "no client certificate": dict(ETCD_CERT_FILE="", ETCD_KEY_FILE=""),
        "wrong CA": dict(ETCD_CA_CERT_FILE=str(other.ca_cert)),
        "expired client certificate": dict(
            ETCD_CERT_FILE=str(pki.dir / "expired.pem"),
            ETCD_KEY_FILE=str(pki.dir / "expired-key.pem"),
        ),
        "foreign client certificate": dict(
            ETCD_CERT_FILE=str(other.client_cert), ETCD_KEY_FILE=str(other.client_key)
        ),
    }
    for what, override in problems.items():
        s = tls_settings(c, **override)
        t0 = time.monotonic()
        ours = failure(lambda s=s: Gateway(s, wire=wire).kv_list("/calico/"))
        assert time.monotonic() - t0 < 2.0, what  # not retried (the window is 2.5 s)
        theirs = failure(lambda s=s: Datastore.connect(s).kv_list("/calico/"))
        # the same words; the member named may differ (gRPC may start elsewhere)
        assert ours.split(": ", 1)[1] == theirs.split(": ", 1)[1], what
        assert "TLS handshake failed" in ours and "\n" not in ours, what
    plain = tls_settings(c, ETCD_ENDPOINTS=c.endpoints.replace("https:", "http:"))
    assert failure(lambda: Gateway(plain, wire=wire).kv_get("/x")).endswith(
        "the connection was closed (the member stopped, or it serves only TLS: use https:// and"
        " ETCD_CA_CERT_FILE)"
    )


def test_a_certificate_for_another_address_is_said_so(tmp_path):
    pki = make_pki(tmp_path / "pki", [])
    issue(pki, "server", "etcd", ["127.0.0.9"], usage="serverAuth,clientAuth")
    server = local_etcd(tmp_path, name="elsewhere")
    server.tls = pki
    server.client_urls = [u.replace("http://", "https://") for u in server.client_urls]
    server.launch()
    try:
        time.sleep(1)  # it serves no /health we could reach: the name does not match
        env = {"PATH": "/usr/bin:/bin", "ETCD_ENDPOINTS": server.endpoints,
               "CALICOCTL_CONFIG": "/nonexistent", **pki.client_env()}  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            proc = subprocess.run(
                [CALICOCTL, "get", "profiles"], capture_output=True, text=True, timeout=30, env=env
            )
            if "connection refused" not in proc.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # not listening yet
        assert proc.returncode == 1
        assert proc.stderr == (
            f"etcd unavailable at {server.endpoints}: TLS handshake failed: etcd's certificate"
            f" does not name this address (ETCD_CA_CERT_FILE={pki.ca_cert})\n"
        )
    finally:
        server.stop()


def test_calicoctl_get_survives_the_leader_kill(tls_cluster):
    c = tls_cluster
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ETCD_")},
           **c.client_env(), "CALICOCTL_CONFIG": "/nonexistent"}  # fmt: skip
    lead = c.wait_leader()
    c.kill(lead)
    try:
        t0 = time.monotonic()
        proc = subprocess.run(
            [CALICOCTL, "get", "profiles"], capture_output=True, text=True, timeout=30, env=env
        )
        assert proc.returncode == 0 and proc.stdout.startswith("NAME"), proc.stderr
        assert time.monotonic() - t0 < 3.0  # the issue-13 budget for a leader kill
    finally:
        c.restart(lead)
        c.wait_leader()


def test_the_program_prints_everything_before_its_quick_exit(
    datastore, etcd_server, capsys, monkeypatch
):
    """`get` ends with os._exit after flushing: a listing far beyond any buffer arrives
    whole in a file and through a pipe, exactly as the in-process command prints it."""
    prefix = "/calico/resources/v3/projectcalico.org/profiles/"
    ops = datastore.ops
    for start in range(0, 1500, 100):
        datastore.kv_txn([], [
            ops.put(f"{prefix}q{i:05d}", f'{{"kind":"Profile","metadata":{{"name":"q{i:05d}"}},"spec":{{}}}}')
            for i in range(start, start + 100)
        ])  # fmt: skip
    env = {
        "PATH": "/usr/bin:/bin",
        "ETCD_ENDPOINTS": etcd_server.endpoints,
        "CALICOCTL_CONFIG": "/nonexistent",
    }
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd_server.endpoints)
    assert main(["get", "profiles", "-o", "yaml"]) == 0
    want = capsys.readouterr().out
    proc = subprocess.run(
        [CALICOCTL, "get", "profiles", "-o", "yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert (proc.returncode, proc.stderr) == (0, "") and proc.stdout == want
    assert len(want) > 100_000
    head = subprocess.run(
        f"{CALICOCTL} get profiles | head -2",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert head.stdout == "NAME\nq00000\n" and head.stderr == ""


@WIRES
def test_something_else_on_the_port_is_one_line(tmp_path, wire):
    """A web server where etcd was expected (a wrong port): one line saying so."""
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            line = failure(lambda: Gateway(EtcdSettings(url), wire=wire).kv_get("/calico/x"))
            if "connection refused" not in line or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # not listening yet
        said = "HTTP 501, " if wire == "json" else ""  # it answers HTTP/2's preface in HTTP/1
        assert line == f"etcd {url}: {said}not an etcd answer (is this etcd's client URL?)"
    finally:
        web.terminate()
        web.wait(10)


def test_ipam_show_and_check_print_what_the_grpc_path_prints(
    datastore, etcd_server, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd_server.endpoints)
    (tmp_path / "pool.yaml").write_text(SAMPLES["IPPool"])
    assert main(["create", "-f", str(tmp_path / "pool.yaml")]) == 0
    capsys.readouterr()
    cases = [["ipam", "show"], ["ipam", "check"], ["ipam", "show", "--ip", "10.0.0.9"]]

    def outputs() -> list:
        return [(main(argv), *capsys.readouterr()) for argv in cases]

    over_gateway = outputs()
    monkeypatch.setattr(context.Cli, "reader", lambda self: self.datastore())
    assert over_gateway == outputs()
    assert over_gateway[0][0] == 0 and over_gateway[0][1]
