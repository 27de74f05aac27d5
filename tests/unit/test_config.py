"""etcd endpoints come from a flag, else ETCD_ENDPOINTS, else calicoctl's config file."""

import pytest

from calico.config import ConfigError, parse_endpoints, resolve_endpoints, resolve_settings


def test_precedence_flag_env_file(tmp_path, monkeypatch):
    cfg = tmp_path / "calicoctl.cfg"
    cfg.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\n"
        "spec:\n  datastoreType: etcdv3\n  etcdEndpoints: http://10.0.0.1:2379\n"
    )
    monkeypatch.delenv("ETCD_ENDPOINTS", raising=False)
    assert resolve_endpoints(None, cfg) == "http://10.0.0.1:2379"
    monkeypatch.setenv("ETCD_ENDPOINTS", "http://127.0.0.1:4001")
    assert resolve_endpoints(None, cfg) == "http://127.0.0.1:4001"
    assert resolve_endpoints("http://h:1", cfg) == "http://h:1"


def test_kubernetes_datastore_is_refused(tmp_path, monkeypatch):
    cfg = tmp_path / "c.cfg"
    cfg.write_text("spec:\n  datastoreType: kubernetes\n")
    monkeypatch.delenv("ETCD_ENDPOINTS", raising=False)
    with pytest.raises(ConfigError, match="kubernetes"):
        resolve_endpoints(None, cfg)


def test_parse_endpoints():
    eps = parse_endpoints("http://a:1, b:2,https://c")
    assert [(e.host, e.port, e.scheme) for e in eps] == [
        ("a", 1, "http"),
        ("b", 2, "http"),
        ("c", 2379, "https"),
    ]
    for bad in ("", "ftp://x:1", "http://x:port"):
        with pytest.raises(ConfigError):
            parse_endpoints(bad)


# ---------------------------------------------------------------- TLS settings

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("ETCD_ENDPOINTS", "ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CALICOCTL_CONFIG", str(tmp_path / "absent.cfg"))
    return monkeypatch


def files(tmp_path, **texts):
    out = {}
    for name, text in texts.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(text)
        out[name] = str(path)
    return out


def test_settings_precedence_field_by_field(clean_env, tmp_path):
    f = files(tmp_path, ca=CERT, ca2=CERT, ca3=CERT)
    cfg = tmp_path / "calicoctl.cfg"
    cfg.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n"
        f"  etcdEndpoints: https://10.0.0.1:2379\n  etcdCACertFile: {f['ca3']}\n"
    )
    s = resolve_settings(config_file=cfg)
    assert (s.endpoints, s.ca_cert_file) == ("https://10.0.0.1:2379", f["ca3"])
    clean_env.setenv("ETCD_CA_CERT_FILE", f["ca2"])
    assert resolve_settings(config_file=cfg).ca_cert_file == f["ca2"]
    assert resolve_settings(ca_cert_file=f["ca"], config_file=cfg).ca_cert_file == f["ca"]
    clean_env.setenv("ETCD_ENDPOINTS", "https://a:1,https://b:2")
    s = resolve_settings(config_file=cfg)
    assert [e.url() for e in s.parsed()] == ["https://a:1", "https://b:2"]
    assert s.env() == {"ETCD_ENDPOINTS": "https://a:1,https://b:2", "ETCD_CA_CERT_FILE": f["ca2"]}
    # a request's environment (the plugin's), not the process's
    assert resolve_settings(env={"ETCD_ENDPOINTS": "http://x:1"}).endpoints == "http://x:1"


def test_default_is_plain_loopback_and_ignores_no_file(clean_env):
    s = resolve_settings()
    assert s.endpoints == "http://127.0.0.1:2379" and not s.secure
    assert s.env() == {"ETCD_ENDPOINTS": "http://127.0.0.1:2379"}


@pytest.mark.parametrize(
    "given, message",
    [
        ({"endpoints": "https://a:1"}, "https but no CA is given"),
        ({"endpoints": "https://a:1,http://b:2", "ca": "ca"}, "mix http and https"),
        (
            {"endpoints": "https://a:1", "ca": "ca", "cert": "cert"},
            "is given without ETCD_KEY_FILE",
        ),
        ({"endpoints": "https://a:1", "ca": "ca", "key": "key"}, "is given without ETCD_CERT_FILE"),
        ({"endpoints": "https://a:1", "ca": "missing"}, "missing.pem: no such file"),
        ({"endpoints": "https://a:1", "ca": "key"}, "not a PEM certificate"),
        (
            {"endpoints": "https://a:1", "ca": "ca", "cert": "cert", "key": "cert"},
            "not a PEM private key",
        ),
        ({"endpoints": "https://a:1", "ca": "dir"}, "is a directory"),
    ],
)
def test_settings_that_cannot_work_are_one_line(clean_env, tmp_path, given, message):
    f = files(tmp_path, ca=CERT, cert=CERT, key=KEY)
    f["missing"] = str(tmp_path / "missing.pem")
    f["dir"] = str(tmp_path)
    with pytest.raises(ConfigError) as info:
        resolve_settings(
            given["endpoints"],
            f.get(given.get("ca", ""), None),
            f.get(given.get("cert", ""), None),
            f.get(given.get("key", ""), None),
        )
    assert message in str(info.value) and "\n" not in str(info.value)


def test_errors_name_where_the_file_was_given(clean_env, tmp_path):
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=rf"^--etcd-ca-cert-file={missing}: no such file$"):
        resolve_settings("https://a:1", ca_cert_file=missing)
    clean_env.setenv("ETCD_CA_CERT_FILE", missing)
    with pytest.raises(ConfigError, match=rf"^ETCD_CA_CERT_FILE={missing}: no such file$"):
        resolve_settings("https://a:1")
    with pytest.raises(ConfigError, match=rf"^network config etcd_ca_cert_file={missing}"):
        resolve_settings("https://a:1", ca_cert_file=missing, source="network config etcd_{attr}")


def test_http_endpoints_ignore_tls_files(clean_env):
    s = resolve_settings("http://a:1", ca_cert_file="/nonexistent")
    assert not s.secure  # checked only when used: plain http never reads them


def test_a_key_that_does_not_match_its_certificate(clean_env, tmp_path):
    from lab.pki import issue, make_pki

    pki = make_pki(tmp_path / "pki", [])
    other, other_key = issue(pki, "other", "x")
    with pytest.raises(ConfigError, match="does not go with"):
        resolve_settings("https://a:1", str(pki.ca_cert), str(pki.client_cert), str(other_key))
    ok = resolve_settings("https://a:1", str(pki.ca_cert), str(other), str(other_key))
    assert ok.secure and ok.tls_files()[0] == pki.ca_cert.read_bytes()
