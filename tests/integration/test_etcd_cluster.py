"""etcd as a 3-member cluster serving only TLS with client certificates (issue 13 item 5).

A cluster of this module's own (lab.etcd.EtcdCluster on loopback, certificates from
lab.pki in tmp_path): calicoctl, the Datastore, the IPAM plugin and the agent's settings
work with Calico's TLS variables and fail with one clear line without the client
certificate, with a wrong CA, with an expired certificate; killing the leader costs a
read loop and a watch less than 3 s. Then a lab built by `calico-lab up --etcd-members 3
--etcd-tls` runs the seed tutorial and survives its leader's death during pod churn.
Members are stopped by the pid we started; every directory is tmp_path's.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from calico.config import EtcdSettings
from calico.datastore import Change, Datastore, PrefixSyncer
from calico.errors import Unavailable
from calico.resources import IPPool, IPPoolSpec, Metadata
from lab.etcd import EtcdCluster
from lab.pki import issue, make_ca, make_pki
from tests.integration.conftest import dedicated_lab, lab_prerequisites_missing

pytestmark = [pytest.mark.etcd]

BIN = Path(sys.executable).parent
CALICOCTL = str(BIN / "calicoctl")
BUDGET = 3.0  # seconds a leader kill may cost a caller


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("etcd3")
    pki = make_pki(base / "pki", [])
    issue(pki, "expired", "calico", days=-1)
    other = make_ca(base / "other")
    cluster = EtcdCluster.local(base, 3, name="ct" + secrets.token_hex(2), tls=pki)
    cluster.start()
    try:
        cluster.other_ca = other  # type: ignore[attr-defined]
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(tls_cluster):
    """The module's cluster with every member running again after a test killed one."""
    yield tls_cluster
    for m in tls_cluster.members:
        if m.process is None or m.process.poll() is not None:
            tls_cluster.restart(m)
    tls_cluster.wait_leader()


def settings(c: EtcdCluster, **override) -> EtcdSettings:
    env = {**c.client_env(), **override}
    return EtcdSettings(
        env["ETCD_ENDPOINTS"],
        env.get("ETCD_CA_CERT_FILE"),
        env.get("ETCD_CERT_FILE"),
        env.get("ETCD_KEY_FILE"),
    )


def calicoctl(env: dict[str, str], *argv: str, input: str | None = None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    return subprocess.run(
        [CALICOCTL, *argv], input=input, capture_output=True, text=True, timeout=60,
        env={**clean, "CALICOCTL_CONFIG": "/nonexistent", **env},
    )  # fmt: skip


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- calicoctl and TLS


def test_calicoctl_apply_and_get_over_tls(cluster):
    env = cluster.client_env()
    name = "ct" + secrets.token_hex(3)
    doc = f"apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: {name}\n"
    applied = calicoctl(env, "apply", "-f", "-", input=doc)
    assert applied.returncode == 0, applied.stderr
    got = calicoctl(env, "get", "profile", name, "-o", "json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["metadata"]["name"] == name
    assert calicoctl(env, "delete", "profile", name).returncode == 0
    # the same settings as flags, with nothing in the environment
    pki = cluster.tls
    flags = [
        f"--etcd-endpoints={cluster.endpoints}", f"--etcd-ca-cert-file={pki.ca_cert}",
        f"--etcd-cert-file={pki.client_cert}", f"--etcd-key-file={pki.client_key}",
    ]  # fmt: skip
    assert calicoctl({}, "get", "profiles", *flags).returncode == 0


def test_calicoctl_config_file_fields(cluster, tmp_path):
    pki = cluster.tls
    cfg = tmp_path / "calicoctl.cfg"
    cfg.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n"
        f"  datastoreType: etcdv3\n  etcdEndpoints: {cluster.endpoints}\n"
        f"  etcdCACertFile: {pki.ca_cert}\n  etcdCertFile: {pki.client_cert}\n"
        f"  etcdKeyFile: {pki.client_key}\n"
    )
    proc = calicoctl({"CALICOCTL_CONFIG": str(cfg)}, "get", "profiles")
    assert proc.returncode == 0, proc.stderr


def test_calicoctl_without_client_cert_is_one_clear_line(cluster):
    env = {
        k: v
        for k, v in cluster.client_env().items()
        if k in ("ETCD_ENDPOINTS", "ETCD_CA_CERT_FILE")
    }
    err = one_line(calicoctl(env, "get", "profiles"))
    assert "TLS handshake failed: etcd requires a client certificate" in err, err


def test_calicoctl_with_a_wrong_ca_is_one_clear_line(cluster):
    wrong = str(cluster.other_ca.ca_cert)
    err = one_line(calicoctl({**cluster.client_env(), "ETCD_CA_CERT_FILE": wrong}, "get", "nodes"))
    assert "TLS handshake failed: certificate signed by unknown authority" in err, err
    assert f"ETCD_CA_CERT_FILE={wrong}" in err


def test_an_expired_or_foreign_client_cert_is_one_clear_line(cluster):
    pki = cluster.tls
    expired = {"ETCD_CERT_FILE": str(pki.dir / "expired.pem"),
               "ETCD_KEY_FILE": str(pki.dir / "expired-key.pem")}  # fmt: skip
    err = one_line(calicoctl({**cluster.client_env(), **expired}, "get", "nodes"))
    assert "the client certificate expired on" in err and "expired.pem" in err, err
    cert, key = issue(cluster.other_ca, "foreign", "calico")
    foreign = {"ETCD_CERT_FILE": str(cert), "ETCD_KEY_FILE": str(key)}
    err = one_line(calicoctl({**cluster.client_env(), **foreign}, "get", "nodes"))
    assert "etcd rejected the client certificate" in err, err


def test_settings_that_cannot_work_fail_before_connecting(cluster, tmp_path):
    env = cluster.client_env()
    missing = str(tmp_path / "nope.pem")
    err = one_line(calicoctl({**env, "ETCD_CA_CERT_FILE": missing}, "get", "nodes"))
    assert err == f"Failed to load config: ETCD_CA_CERT_FILE={missing}: no such file"
    no_ca = {k: v for k, v in env.items() if k != "ETCD_CA_CERT_FILE"}
    assert "https but no CA" in one_line(calicoctl(no_ca, "get", "nodes"))
    no_key = {k: v for k, v in env.items() if k != "ETCD_KEY_FILE"}
    assert "without ETCD_KEY_FILE" in one_line(calicoctl(no_key, "get", "nodes"))
    plain = {"ETCD_ENDPOINTS": cluster.endpoints.replace("https://", "http://")}
    assert "serves only TLS" in one_line(calicoctl(plain, "get", "nodes"))


def test_datastore_errors_are_unavailable_with_one_line(cluster):
    wrong = settings(cluster, ETCD_CA_CERT_FILE=str(cluster.other_ca.ca_cert))
    ds = Datastore.connect(wrong, timeout=3)
    try:
        t0 = time.monotonic()
        with pytest.raises(Unavailable) as info:
            ds.revision()
        assert time.monotonic() - t0 < 1.0  # a certificate problem is not retried
        msg = str(info.value)
        assert msg.startswith("etcd https://127.0.0.1:") and "\n" not in msg
        assert "certificate signed by unknown authority" in msg
    finally:
        ds.close()


# ---------------------------------------------------------------- plugin and agent


def test_ipam_plugin_with_tls_from_the_network_config(cluster, tmp_path):
    """calico-ipam in-process, every etcd setting from the CNI network config (none in
    the environment): ADD gets an address, DEL releases it; a missing key file is an
    INVALID_CONFIG naming the config field."""
    ds = Datastore.connect(settings(cluster))
    pool = "ct" + secrets.token_hex(2)
    ds.apply(
        IPPool(metadata=Metadata(name=pool), spec=IPPoolSpec(cidr="10.77.0.0/24", block_size=26))
    )
    pki = cluster.tls
    conf = {
        "cniVersion": "0.4.0", "name": "net" + pool, "type": "calico-ipam",
        "etcd_endpoints": cluster.endpoints, "etcd_ca_cert_file": str(pki.ca_cert),
        "etcd_cert_file": str(pki.client_cert), "etcd_key_file": str(pki.client_key),
        "ipam": {"type": "calico-ipam"},
    }  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}

    def ipam(command: str, netconf: dict) -> subprocess.CompletedProcess:
        env = {
            **clean, "CNI_COMMAND": command, "CNI_CONTAINERID": pool + "c1",
            "CNI_NETNS": "/dev/null", "CNI_IFNAME": "eth0", "CNI_PATH": str(BIN),
            "CALICO_CNI_SOCKET": "", "CALICO_NODENAME": pool + "-node",
            "CALICOCTL_CONFIG": "/nonexistent",
        }  # fmt: skip
        return subprocess.run(
            [str(BIN / "calico-ipam")], input=json.dumps(netconf), env=env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    try:
        add = ipam("ADD", conf)
        assert add.returncode == 0, add.stdout + add.stderr
        assert json.loads(add.stdout)["ips"][0]["address"].startswith("10.77.0.")
        dele = ipam("DEL", conf)
        assert dele.returncode == 0, dele.stdout + dele.stderr
        bad = ipam("ADD", {**conf, "etcd_key_file": str(tmp_path / "none.pem")})
        assert bad.returncode != 0
        err = json.loads(bad.stdout)
        assert err["code"] == 7, err  # INVALID_CONFIG
        assert (
            f"network config etcd_key_file={tmp_path / 'none.pem'}: no such file" in err["details"]
        )
    finally:
        ds.kv_delete_prefix("/calico/ipam/")
        ds.delete(IPPool, pool)
        ds.close()


def test_agent_takes_the_tls_flags_and_refuses_bad_ones(cluster, tmp_path):
    """The agent's settings (the dataplane is exercised by the lab test below): a key
    without its certificate is refused with one line before anything starts."""
    from agent.main import datastore_hosts, parse_args

    pki = cluster.tls
    args = parse_args([
        "--nodename", "n1", "--etcd-endpoints", cluster.endpoints,
        "--etcd-ca-cert-file", str(pki.ca_cert), "--etcd-cert-file", str(pki.client_cert),
        "--etcd-key-file", str(pki.client_key),
    ])  # fmt: skip
    assert args.etcd_ca_cert_file == str(pki.ca_cert)
    multi = EtcdSettings(
        "https://10.9.0.1:2379,https://10.9.0.2:2379,https://127.0.0.1:1", str(pki.ca_cert)
    )
    assert datastore_hosts(multi) == ("10.9.0.1", "10.9.0.2")  # every member, never loopback
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    proc = subprocess.run(
        [str(BIN / "calico-agent"), "--nodename", "n1", "--etcd-endpoints", cluster.endpoints,
         "--etcd-ca-cert-file", str(pki.ca_cert), "--etcd-key-file", str(pki.client_key)],
        env={**clean, "CALICOCTL_CONFIG": "/nonexistent"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"calico-agent: --etcd-key-file={pki.client_key} is given without ETCD_CERT_FILE"
    )


# ---------------------------------------------------------------- the leader dies


@pytest.mark.fault
@pytest.mark.slow
def test_leader_kill_costs_reads_and_a_watch_less_than_3s(cluster):
    lead = cluster.wait_leader()
    prefix = "/calico/ct" + secrets.token_hex(3) + "/"
    reader = Datastore.connect(settings(cluster), timeout=5)
    watcher_ds = Datastore.connect(settings(cluster), timeout=5)
    # Worst case: both on the member about to die.
    label = lead.client_urls[0].split("//", 1)[1]
    reader.client._current_endpoint_label = label
    watcher_ds.client._current_endpoint_label = label
    stop = threading.Event()
    events: queue.Queue = queue.Queue()
    syncer = PrefixSyncer(watcher_ds, prefix, retry_interval=0.1)

    def follow() -> None:
        for u in syncer.updates(stop):
            events.put((time.monotonic(), u))

    gaps: list[float] = []
    errors: list[str] = []

    def read_loop() -> None:
        last = time.monotonic()
        while not stop.is_set():
            try:
                reader.kv_get(prefix + "x")
            except Unavailable as exc:
                errors.append(str(exc))
                continue
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    threads = [threading.Thread(target=follow, daemon=True), threading.Thread(target=read_loop)]
    for t in threads:
        t.start()
    try:
        assert reader.kv_get(prefix + "x") is None
        deadline = time.monotonic() + 10
        while not any(getattr(u, "state", "") == "in-sync" for _, u in list(events.queue)):
            assert time.monotonic() < deadline, "watch never in sync"
            time.sleep(0.02)
        killed_at = time.monotonic()
        cluster.kill(lead)
        # a writer that knows nothing of the kill: every member but the dead one
        writer = Datastore.connect(settings(cluster), timeout=5)
        try:
            t0 = time.monotonic()
            while True:
                try:
                    writer.kv_put(prefix + "after", "1")
                    break
                except Unavailable:
                    assert time.monotonic() - t0 < BUDGET, "writes did not resume"
                    time.sleep(0.05)
        finally:
            writer.close()
        seen_at = None
        while seen_at is None:
            at, u = events.get(timeout=BUDGET + 2)
            if isinstance(u, Change) and u.key == prefix + "after":
                seen_at = at
        time.sleep(0.5)  # reads go on after the election
    finally:
        stop.set()
        for t in threads:  # both out of gRPC before the channels close
            t.join(10)
        reader.close()
        watcher_ds.close()
    assert seen_at - killed_at < BUDGET, f"watch resumed {seen_at - killed_at:.2f}s after the kill"
    assert max(gaps) < BUDGET, f"reads paused {max(gaps):.2f}s ({errors[:2]})"
    assert not errors, errors[:3]  # reads fail over silently within the window
    assert cluster.wait_leader() is not lead


# ---------------------------------------------------------------- a lab on such a cluster


@pytest.fixture(scope="module")
def tls_lab(tmp_path_factory):
    if lab_prerequisites_missing():
        pytest.skip(lab_prerequisites_missing())
    base = tmp_path_factory.mktemp("etcdlab")
    with dedicated_lab(base, 2, etcd_members=3, etcd_tls=True) as cluster:
        yield cluster


@pytest.mark.root
@pytest.mark.slow
def test_lab_with_a_tls_cluster_runs_the_tutorial(tls_lab):
    st = tls_lab.status()
    assert st["state"] == "up" and st["etcd"]["tls"] and len(st["etcd"]["members"]) == 3
    env = tls_lab.root_env()
    assert len(env["ETCD_ENDPOINTS"].split(",")) == 3 and env["ETCD_CERT_FILE"]
    assert len(tls_lab.node_env("calico-01")["ETCD_ENDPOINTS"].split(",")) == 3
    proc = subprocess.run(
        [str(BIN / "calico-lab"), "tutorial", "--name", tls_lab.name],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tutorial isolation: every step passed" in proc.stdout


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.fault
def test_lab_leader_killed_during_pod_churn(tls_lab):
    """20 `rkt run`s across both nodes while the leader is killed: each succeeds or fails
    with one clear line; `up` restarts the member; `calicoctl ipam check` is clean."""
    for node in tls_lab.nodes:
        conf = {"name": "network1", "cniVersion": "0.1.0", "type": "calico",
                "ipam": {"type": "calico-ipam"}}  # fmt: skip
        tls_lab.write_net_conf(node, "10-calico-network1.conf", conf)
    results: list[subprocess.CompletedProcess] = []
    lock = threading.Lock()

    def churn(node: str, n: int) -> None:
        for _ in range(n):
            proc = tls_lab.exec(
                node, ["rkt", "run", "--net=network1", "docker://busybox", "--exec=/bin/true"],
                timeout=120,
            )  # fmt: skip
            with lock:
                results.append(proc)

    info = tls_lab._read_state()["etcd"]
    leader = None
    for m in info["members"]:
        st = _status(tls_lab, m["loopback_url"])
        if st and st["header"]["member_id"] == st["leader"]:
            leader = m
    assert leader is not None
    threads = [threading.Thread(target=churn, args=(n, 10)) for n in tls_lab.nodes]
    for t in threads:
        t.start()
    while len(results) < 4 and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    os.kill(leader["pid"], signal.SIGKILL)  # the pid the lab started, checked just above
    for t in threads:
        t.join(300)
    assert len(results) == 20
    failed = [p for p in results if p.returncode != 0]
    for p in failed:
        err = p.stderr.strip().splitlines()
        assert err and "Traceback" not in p.stderr, p.stderr
    assert len(failed) <= 4, [p.stderr for p in failed]
    st = tls_lab.status()
    assert any("restart etcd member" in r for r in st["repairs"]), st["repairs"]
    up = tls_lab.up(nodes=2, etcd_members=3, etcd_tls=True)
    assert up["state"] == "up", up
    for node in tls_lab.nodes:  # the exited pods go, and with them their addresses
        listing = tls_lab.exec(node, ["rkt", "list", "--format=json"], timeout=60)
        for pod in json.loads(listing.stdout or "[]"):
            if "node" not in pod.get("app_names", []):
                rm = tls_lab.exec(node, ["rkt", "rm", pod["name"]], timeout=120)
                assert rm.returncode == 0, rm.stderr
    env = {**os.environ, **tls_lab.root_env()}
    check = subprocess.run(
        [CALICOCTL, "ipam", "check"], capture_output=True, text=True, timeout=120, env=env
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Check complete; found 0 problems." in check.stdout, check.stdout
    # Isolation is unchanged: the tutorial's network1 reaches its httpd, network2 does not.
    again = subprocess.run(
        [str(BIN / "calico-lab"), "tutorial", "--name", tls_lab.name],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "tutorial isolation: every step passed" in again.stdout


def _status(lab, url: str) -> dict | None:
    import urllib.request

    from lab.etcd import client_ssl_context
    from lab.pki import PKI

    tls = lab._read_state()["etcd"]["tls"]
    ctx = client_ssl_context(PKI(Path(tls["dir"])))
    req = urllib.request.Request(url + "/v3/maintenance/status", data=b"{}")
    try:
        with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def test_an_expired_server_certificate_is_one_clear_line(tmp_path):
    """etcd itself presents an expired certificate: the client says so, naming its CA."""
    from lab.etcd import local_etcd

    pki = make_pki(tmp_path / "pki", [])
    issue(pki, "server", "etcd", ["127.0.0.1", "localhost"], usage="serverAuth,clientAuth", days=-1)
    server = local_etcd(tmp_path, name="expired")
    server.tls = pki
    server.client_urls = [u.replace("http://", "https://") for u in server.client_urls]
    server.launch()
    try:
        s = EtcdSettings(
            server.endpoints, str(pki.ca_cert), str(pki.client_cert), str(pki.client_key)
        )
        deadline = time.monotonic() + 20
        while True:
            ds = Datastore.connect(s, timeout=2)
            try:
                with pytest.raises(Unavailable) as info:
                    ds.revision()
            finally:
                ds.close()
            if "connection refused" not in str(info.value) or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # not listening yet
        assert str(info.value) == (
            f"etcd {server.endpoints}: TLS handshake failed: etcd's certificate has expired"
            f" (ETCD_CA_CERT_FILE={pki.ca_cert})"
        )
    finally:
        server.stop()
