"""Where etcd is and how to reach it: a flag, else the environment, else calicoctl's config
file, else the default; field by field.

| setting | flag | environment | calicoctl.cfg spec | CNI network config |
|---|---|---|---|---|
| endpoints | `--etcd-endpoints` | `ETCD_ENDPOINTS` | `etcdEndpoints` | `etcd_endpoints` |
| CA bundle | `--etcd-ca-cert-file` | `ETCD_CA_CERT_FILE` | `etcdCACertFile` | `etcd_ca_cert_file` |
| client cert | `--etcd-cert-file` | `ETCD_CERT_FILE` | `etcdCertFile` | `etcd_cert_file` |
| client key | `--etcd-key-file` | `ETCD_KEY_FILE` | `etcdKeyFile` | `etcd_key_file` |

The config file has calicoctl's own shape, so an operator's existing file works:

    apiVersion: projectcalico.org/v3
    kind: CalicoAPIConfig
    spec:
      datastoreType: etcdv3
      etcdEndpoints: https://10.0.0.1:2379,https://10.0.0.2:2379
      etcdCACertFile: /etc/calico/ca.pem
      etcdCertFile: /etc/calico/client.pem
      etcdKeyFile: /etc/calico/client-key.pem

Checked before any connection is made, each failure one line naming what is wrong: an
https endpoint needs a CA; a client certificate needs its key and the other way round;
every file named must be a readable PEM file (the key matching the certificate).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from pathlib import Path

# Immutable records are NamedTuples, not dataclasses, and files are read with os.path and
# open, not pathlib: importing dataclasses (with inspect) and pathlib cost `calicoctl
# get`, whose budget is ~40 ms, 7 ms.

DEFAULT_CONFIG_FILE = "/etc/calico/calicoctl.cfg"
DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"


class ConfigError(ValueError):
    pass


class EtcdEndpoint(NamedTuple):
    host: str
    port: int
    scheme: str = "http"

    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_endpoints(text: str) -> list[EtcdEndpoint]:
    """`http://a:2379,http://b:2379` -> endpoints; a clear error for anything else."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "://" not in item:
            item = "http://" + item
        url = urlsplit(item)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"bad etcd endpoint {item!r}: expected http://HOST:PORT")
        try:
            port = url.port or 2379
        except ValueError:
            raise ConfigError(f"bad etcd endpoint {item!r}: port is not a number") from None
        out.append(EtcdEndpoint(url.hostname, port, url.scheme))
    if not out:
        raise ConfigError("no etcd endpoints given")
    return out


# (EtcdSettings field, environment variable, calicoctl.cfg spec field, flag)
TLS_FIELDS = (
    ("ca_cert_file", "ETCD_CA_CERT_FILE", "etcdCACertFile", "--etcd-ca-cert-file"),
    ("cert_file", "ETCD_CERT_FILE", "etcdCertFile", "--etcd-cert-file"),
    ("key_file", "ETCD_KEY_FILE", "etcdKeyFile", "--etcd-key-file"),
)


class EtcdSettings(NamedTuple):
    """Everything a client needs to reach etcd: endpoints (comma-separated) and TLS files."""

    endpoints: str = DEFAULT_ENDPOINTS
    ca_cert_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # Where each TLS file was named (ETCD_CA_CERT_FILE, --etcd-cert-file, ...), for errors.
    sources: tuple[tuple[str, str], ...] = ()

    def env(self) -> dict[str, str]:
        """The environment variables that say the same (only the ones set)."""
        out = {"ETCD_ENDPOINTS": self.endpoints}
        for attr, var, _, _ in TLS_FIELDS:
            if getattr(self, attr):
                out[var] = getattr(self, attr)
        return out

    def parsed(self) -> list[EtcdEndpoint]:
        return parse_endpoints(self.endpoints)

    @property
    def secure(self) -> bool:
        return any(ep.scheme == "https" for ep in self.parsed())

    def source_of(self, attr: str) -> str:
        """How the user named a TLS file: `ETCD_CA_CERT_FILE=/x/ca.pem` (or the flag's,
        the config file's or the CNI config's name), for one-line errors."""
        where = dict(self.sources).get(attr)
        var = next(v for a, v, _, _ in TLS_FIELDS if a == attr)
        return f"{where or var}={getattr(self, attr)}"

    def check(self) -> EtcdSettings:
        """Raise ConfigError (one line) unless these settings can make a connection."""
        eps = self.parsed()
        schemes = {ep.scheme for ep in eps}
        if len(schemes) > 1:
            raise ConfigError(f"etcd endpoints {self.endpoints} mix http and https")
        if "https" not in schemes:
            return self  # TLS files are for https endpoints; plain http ignores them
        if not self.ca_cert_file:
            raise ConfigError(
                f"etcd endpoints {self.endpoints} are https but no CA is given"
                " (ETCD_CA_CERT_FILE, etcdCACertFile, --etcd-ca-cert-file)"
            )
        if bool(self.cert_file) != bool(self.key_file):
            have, missing = (
                ("cert_file", "key_file") if self.cert_file else ("key_file", "cert_file")
            )
            need = next(v for a, v, _, _ in TLS_FIELDS if a == missing)
            raise ConfigError(f"{self.source_of(have)} is given without {need}")
        for attr, _, _, _ in TLS_FIELDS:
            if getattr(self, attr):
                _check_pem(getattr(self, attr), attr, self.source_of(attr))
        if self.cert_file:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except (ssl.SSLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or str(exc)
                raise ConfigError(
                    f"{self.source_of('key_file')} does not go with"
                    f" {self.source_of('cert_file')}: {str(reason).lower().replace('_', ' ')}"
                ) from None
        return self

    def tls_files(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(CA, client key, client cert) as bytes, as grpc.ssl_channel_credentials takes them."""

        def read(path: str | None) -> bytes | None:
            return _read_bytes(path) if path else None

        return read(self.ca_cert_file), read(self.key_file), read(self.cert_file)


_PEM_MARKERS = {
    "ca_cert_file": b"-----BEGIN CERTIFICATE-----",
    "cert_file": b"-----BEGIN CERTIFICATE-----",
    "key_file": b"PRIVATE KEY-----",
}


def _check_pem(path: str, attr: str, named: str) -> None:
    try:
        data = _read_bytes(path)
    except FileNotFoundError:
        raise ConfigError(f"{named}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{named}: is a directory, not a PEM file") from None
    except OSError as exc:
        raise ConfigError(f"{named}: cannot read: {exc.strerror or exc}") from None
    if _PEM_MARKERS[attr] not in data:
        what = "private key" if attr == "key_file" else "certificate"
        raise ConfigError(f"{named}: not a PEM {what}")


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def config_file_path(config_file: str | Path | None = None) -> str:
    if config_file:
        return os.fspath(config_file)
    return os.environ.get("CALICOCTL_CONFIG", DEFAULT_CONFIG_FILE)


def config_file_spec(path: str | Path) -> dict:
    """The spec of a calicoctl.cfg ({} when there is no such file)."""
    if not os.path.exists(path):
        return {}
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f.read()) or {}
        spec = data.get("spec") or {}
    except (yaml.YAMLError, AttributeError, OSError) as exc:
        raise ConfigError(f"{path}: not a CalicoAPIConfig: {exc}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: spec is not a mapping")
    store = spec.get("datastoreType", "etcdv3")
    if store != "etcdv3":
        raise ConfigError(f"{path}: datastoreType {store!r} is not supported (etcdv3 only)")
    return spec


def resolve_settings(
    endpoints: str | None = None,
    ca_cert_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    source: str = "flag",
) -> EtcdSettings:
    """The settings to use, field by field: argument (a flag, or a CNI network config's
    field: `source` says which, for errors), else `env` (default os.environ), else the
    calicoctl.cfg, else the default. Checked (ConfigError, one line)."""
    env = os.environ if env is None else env
    spec: dict | None = None

    def from_file(field_name: str) -> str | None:
        nonlocal spec
        if spec is None:
            spec = config_file_spec(config_file_path(config_file))
        value = spec.get(field_name)
        return str(value) if value else None

    given = {"ca_cert_file": ca_cert_file, "cert_file": cert_file, "key_file": key_file}
    values: dict[str, str | None] = {}
    sources = []
    for attr, var, spec_field, flag in TLS_FIELDS:
        if given[attr]:
            values[attr] = given[attr]
            sources.append((attr, flag if source == "flag" else source.format(attr=attr)))
        elif env.get(var):
            values[attr] = env[var]
            sources.append((attr, var))
        else:
            values[attr] = from_file(spec_field)
            if values[attr]:
                sources.append((attr, f"{config_file_path(config_file)} {spec_field}"))
    text = endpoints or env.get("ETCD_ENDPOINTS") or from_file("etcdEndpoints") or DEFAULT_ENDPOINTS
    return EtcdSettings(text, sources=tuple(sources), **values).check()


def endpoints_from_config_file(path: str | Path) -> str | None:
    return config_file_spec(path).get("etcdEndpoints")


def resolve_endpoints(flag: str | None = None, config_file: str | Path | None = None) -> str:
    """The endpoints string to use, by calicoctl's precedence: flag, env, file, default."""
    if flag:
        return flag
    env = os.environ.get("ETCD_ENDPOINTS")
    if env:
        return env
    return endpoints_from_config_file(config_file_path(config_file)) or DEFAULT_ENDPOINTS
