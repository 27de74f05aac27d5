"""A real etcd server as a child process: the datastore for the lab and the tests.

Debian's `etcd-server` (3.4) is started with its own data dir and ports, so several
servers (a user's lab, a test run, a killed run's leftovers) never collide.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ETCD_BINARY = "etcd"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class EtcdProcess:
    """One etcd member we started; only we stop it, by its pid."""

    name: str
    data_dir: Path
    client_urls: list[str]
    peer_url: str
    log_path: Path
    process: subprocess.Popen | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def endpoints(self) -> str:
        """Comma-separated client endpoints, as ETCD_ENDPOINTS takes them."""
        return ",".join(self.client_urls)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 20.0) -> None:
        if shutil.which(ETCD_BINARY) is None:
            raise RuntimeError("etcd is not installed (Debian package etcd-server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            ETCD_BINARY,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", ",".join(self.client_urls),
            "--advertise-client-urls", ",".join(self.client_urls),
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", f"{self.name}={self.peer_url}",
            "--log-level", "warn",
            *self.extra_args,
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        # A new session so a Ctrl-C aimed at a test run does not hit etcd first.
        self.process = subprocess.Popen(
            args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        url = self.client_urls[0] + "/health"
        last = ""
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"etcd exited with {self.process.returncode}: {tail}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if b'"health":"true"' in resp.read():
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise TimeoutError(f"etcd at {url} not healthy after {timeout}s ({last})")

    def stop(self, timeout: float = 10.0) -> None:
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would; the data dir stays for a restart."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def local_etcd(base_dir: Path, name: str = "etcd", host: str = "127.0.0.1") -> EtcdProcess:
    """An etcd on loopback with kernel-chosen ports (not started yet)."""
    client_port, peer_port = free_port(host), free_port(host)
    base_dir.mkdir(parents=True, exist_ok=True)
    return EtcdProcess(
        name=name,
        data_dir=base_dir / f"{name}.data",
        client_urls=[f"http://{host}:{client_port}"],
        peer_url=f"http://{host}:{peer_port}",
        log_path=base_dir / f"{name}.log",
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
