"""Where etcd is: a flag, else ETCD_ENDPOINTS, else calicoctl's config file.

The config file has calicoctl's own shape, so an operator's existing file works:

    apiVersion: projectcalico.org/v3
    kind: CalicoAPIConfig
    spec:
      datastoreType: etcdv3
      etcdEndpoints: http://127.0.0.1:2379
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_CONFIG_FILE = Path("/etc/calico/calicoctl.cfg")
DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class EtcdEndpoint:
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


def endpoints_from_config_file(path: Path) -> str | None:
    if not path.exists():
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
        spec = data.get("spec") or {}
    except (yaml.YAMLError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a CalicoAPIConfig: {exc}") from None
    store = spec.get("datastoreType", "etcdv3")
    if store != "etcdv3":
        raise ConfigError(f"{path}: datastoreType {store!r} is not supported (etcdv3 only)")
    return spec.get("etcdEndpoints")


def resolve_endpoints(flag: str | None = None, config_file: str | Path | None = None) -> str:
    """The endpoints string to use, by calicoctl's precedence: flag, env, file, default."""
    if flag:
        return flag
    env = os.environ.get("ETCD_ENDPOINTS")
    if env:
        return env
    path = (
        Path(config_file)
        if config_file
        else Path(os.environ.get("CALICOCTL_CONFIG", DEFAULT_CONFIG_FILE))
    )
    from_file = endpoints_from_config_file(path)
    return from_file or DEFAULT_ENDPOINTS
