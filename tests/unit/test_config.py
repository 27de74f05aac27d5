"""etcd endpoints come from a flag, else ETCD_ENDPOINTS, else calicoctl's config file."""

import pytest

from calico.config import ConfigError, parse_endpoints, resolve_endpoints


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
