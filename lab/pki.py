"""A small PKI for etcd with TLS: a CA, a server certificate, a client certificate.

Made with Debian's `openssl` command line, ECDSA P-256 keys (milliseconds to make, where
RSA-2048 takes a noticeable fraction of a second on a loaded 2-core machine). Every file is
mode 0600 in the directory given (a lab's state dir), so only root reads the keys.

- ``ca.pem`` / ``ca-key.pem``: the CA, trusted by etcd for client certificates and by
  every client for etcd's server certificate.
- ``server.pem`` / ``server-key.pem``: etcd's certificate, with a SAN for every address it
  listens on (127.0.0.1, the lab's fabric address, ...) and ``localhost``; usable as a
  server and as a client certificate, because etcd members present it to each other on
  the peer URLs too.
- ``client.pem`` / ``client-key.pem``: what calicoctl, the agent and the plugins present.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "openssl"
DAYS = 825
CURVE = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


class PKIError(RuntimeError):
    pass


@dataclass(frozen=True)
class PKI:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.dir / "client-key.pem"

    def client_env(self) -> dict[str, str]:
        """Calico's variables for a client presenting the client certificate."""
        return {
            "ETCD_CA_CERT_FILE": str(self.ca_cert),
            "ETCD_CERT_FILE": str(self.client_cert),
            "ETCD_KEY_FILE": str(self.client_key),
        }

    def etcd_args(self, peer: bool = True) -> list[str]:
        """etcd flags: serve only TLS on the client URLs, and require a client certificate
        signed by the CA; the same on the peer URLs when `peer`."""
        args = [
            "--cert-file", str(self.server_cert),
            "--key-file", str(self.server_key),
            "--trusted-ca-file", str(self.ca_cert),
            "--client-cert-auth",
        ]  # fmt: skip
        if peer:
            args += [
                "--peer-cert-file", str(self.server_cert),
                "--peer-key-file", str(self.server_key),
                "--peer-trusted-ca-file", str(self.ca_cert),
                "--peer-client-cert-auth",
            ]  # fmt: skip
        return args


def _openssl(*args: str, cwd: Path) -> None:
    try:
        proc = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise PKIError("openssl is not installed (Debian package openssl)") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise PKIError(f"openssl {args[0]}: {last}")


def _private(*paths: Path) -> None:
    for p in paths:
        os.chmod(p, 0o600)


def make_ca(dir: Path, name: str = "calico-lab etcd CA") -> PKI:
    """A new CA in `dir` (made 0700 if new)."""
    dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = PKI(dir)
    old = os.umask(0o077)
    try:
        _openssl(
            "req", "-x509", *CURVE, "-nodes",
            "-keyout", pki.ca_key.name, "-out", pki.ca_cert.name,
            "-days", str(DAYS * 4), "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=dir,
        )  # fmt: skip
    finally:
        os.umask(old)
    _private(pki.ca_key, pki.ca_cert)
    return pki


def issue(
    pki: PKI,
    stem: str,
    common_name: str,
    sans: list[str] | None = None,
    usage: str = "clientAuth",
    days: int = DAYS,
) -> tuple[Path, Path]:
    """A certificate `<stem>.pem` + key `<stem>-key.pem` signed by the CA; `sans` are IP
    addresses or DNS names; `days=-1` makes one that has already expired (for tests)."""
    cert, key, csr = pki.dir / f"{stem}.pem", pki.dir / f"{stem}-key.pem", pki.dir / f"{stem}.csr"
    ext = pki.dir / f"{stem}.ext"
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if sans:
        kinds = []
        for s in sans:
            try:
                ipaddress.ip_address(s)
                kinds.append(f"IP:{s}")
            except ValueError:
                kinds.append(f"DNS:{s}")
        lines.append("subjectAltName=" + ",".join(kinds))
    old = os.umask(0o077)
    try:
        ext.write_text("\n".join(lines) + "\n")
        _openssl(
            "req", "-new", *CURVE, "-nodes", "-keyout", key.name, "-out", csr.name,
            "-subj", f"/CN={common_name}",
            cwd=pki.dir,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", csr.name, "-CA", pki.ca_cert.name, "-CAkey", pki.ca_key.name,
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
            "-days", str(days), "-extfile", ext.name, "-out", cert.name,
            cwd=pki.dir,
        )  # fmt: skip
    finally:
        os.umask(old)
        for tmp in (csr, ext):
            tmp.unlink(missing_ok=True)
    _private(cert, key)
    return cert, key


def make_pki(dir: Path, server_addresses: list[str]) -> PKI:
    """CA, server certificate (SANs: every address given, 127.0.0.1 and localhost) and
    client certificate, all in `dir`."""
    pki = make_ca(dir)
    sans = list(dict.fromkeys(["127.0.0.1", *server_addresses, "localhost"]))
    issue(pki, "server", "etcd", sans, usage="serverAuth,clientAuth")
    issue(pki, "client", "calico", usage="clientAuth")
    return pki
