"""Real etcd servers as child processes: the datastore for the lab and the tests.

Debian's `etcd-server` (3.4) is started with its own data dir and ports, so several
servers (a user's lab, a test run, a killed run's leftovers) never collide. `EtcdProcess`
is one member; `EtcdCluster` is N members on loopback (and any other address given), each
with its own client and peer port, optionally serving only TLS with client certificates
(`lab.pki`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lab.pki import PKI

ETCD_BINARY = "etcd"
# A cluster's raft timing (ms). etcd's defaults are 100/1000; half of that elects a new
# leader within about a second of a leader's death and still tolerates a busy 2-core box.
CLUSTER_HEARTBEAT_MS = 50
CLUSTER_ELECTION_MS = 500


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
    # "name=peer_url,..." of every member (default: this one alone)
    initial_cluster: str | None = None
    tls: PKI | None = None  # serve only TLS (client certs required), peers too

    @property
    def endpoints(self) -> str:
        """Comma-separated client endpoints, as ETCD_ENDPOINTS takes them."""
        return ",".join(self.client_urls)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def argv(self) -> list[str]:
        args = [
            ETCD_BINARY,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", ",".join(self.client_urls),
            "--advertise-client-urls", ",".join(self.client_urls),
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
            "--log-level", "warn",
            *self.extra_args,
        ]  # fmt: skip
        if self.tls:
            args += self.tls.etcd_args(peer=self.peer_url.startswith("https"))
        return args

    def launch(self) -> None:
        """Start the process, do not wait (a cluster's members wait for each other)."""
        if shutil.which(ETCD_BINARY) is None:
            raise RuntimeError("etcd is not installed (Debian package etcd-server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        # A new session so a Ctrl-C aimed at a test run does not hit etcd first.
        self.process = subprocess.Popen(
            self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()

    def start(self, timeout: float = 20.0) -> None:
        self.launch()
        self.wait_healthy(timeout)

    def ssl_context(self) -> ssl.SSLContext | None:
        """How this test harness itself talks to a TLS member (the client certificate)."""
        return client_ssl_context(self.tls) if self.tls else None

    def request(self, path: str, body: dict | None = None, timeout: float = 1.0) -> dict:
        """One call of etcd's HTTP API (the v3 JSON gateway for POSTs) on the first URL."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.client_urls[0] + path, data=data)
        with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as resp:
            return json.loads(resp.read())

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            return self.request("/health", timeout=timeout).get("health") == "true"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def status(self, timeout: float = 1.0) -> dict | None:
        """/v3/maintenance/status: {"header": {"member_id"...}, "leader": ...}, or None."""
        try:
            return self.request("/v3/maintenance/status", {}, timeout=timeout)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        url = self.client_urls[0] + "/health"
        last = ""
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"etcd exited with {self.process.returncode}: {tail}")
            try:
                if self.request("/health").get("health") == "true":
                    return
            except (urllib.error.URLError, OSError, ValueError) as exc:
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


def client_ssl_context(pki: PKI) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


def free_ports(hosts: list[str], count: int, taken: set[int] | None = None) -> list[int]:
    """`count` distinct ports free on every one of `hosts` right now."""
    taken = set(taken or ())
    out: list[int] = []
    for _ in range(50 * count):
        if len(out) == count:
            return out
        port = free_port(hosts[0])
        if port in taken:
            continue
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        taken.add(port)
        out.append(port)
    raise RuntimeError(f"no {count} free ports on {', '.join(hosts)}")


@dataclass
class EtcdCluster:
    """N etcd members we started, one raft cluster; only we stop them, by pid.

    Member i listens for clients on every host of `hosts` at its own port (the first
    host's URL first), and for peers on the first host."""

    members: list[EtcdProcess]
    tls: PKI | None = None

    @classmethod
    def local(
        cls,
        base_dir: Path,
        size: int = 3,
        name: str = "etcd",
        hosts: tuple[str, ...] = ("127.0.0.1",),
        tls: PKI | None = None,
        heartbeat_ms: int = CLUSTER_HEARTBEAT_MS,
        election_ms: int = CLUSTER_ELECTION_MS,
        extra_args: tuple[str, ...] = (),
    ) -> EtcdCluster:
        """Members `<name>-1..N` with data dirs and logs in `base_dir` (not started)."""
        base_dir.mkdir(parents=True, exist_ok=True)
        scheme = "https" if tls else "http"
        client_ports = free_ports(list(hosts), size)
        peer_ports = free_ports([hosts[0]], size, taken=set(client_ports))
        names = [f"{name}-{i}" for i in range(1, size + 1)]
        peers = [f"{scheme}://{hosts[0]}:{p}" for p in peer_ports]
        initial = ",".join(f"{n}={u}" for n, u in zip(names, peers, strict=True))
        timing = ["--heartbeat-interval", str(heartbeat_ms), "--election-timeout", str(election_ms)]
        members = [
            EtcdProcess(
                name=n,
                data_dir=base_dir / f"{n}.data",
                client_urls=[f"{scheme}://{h}:{port}" for h in hosts],
                peer_url=peer,
                log_path=base_dir / f"{n}.log",
                extra_args=[*timing, "--initial-cluster-token", name, *extra_args],
                initial_cluster=initial,
                tls=tls,
            )
            for n, port, peer in zip(names, client_ports, peers, strict=True)
        ]
        return cls(members, tls)

    @property
    def endpoints(self) -> str:
        """Every member's first client URL, comma-separated (ETCD_ENDPOINTS)."""
        return ",".join(m.client_urls[0] for m in self.members)

    def endpoints_on(self, index: int) -> str:
        """Every member's client URL on hosts[index]."""
        return ",".join(m.client_urls[index] for m in self.members)

    def client_env(self) -> dict[str, str]:
        env = {"ETCD_ENDPOINTS": self.endpoints}
        if self.tls:
            env.update(self.tls.client_env())
        return env

    def start(self, timeout: float = 30.0) -> None:
        """Start every member, then wait until each one is healthy (has a leader)."""
        try:
            for m in self.members:
                m.launch()
            deadline = time.monotonic() + timeout
            for m in self.members:
                m.wait_healthy(max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def running(self) -> list[EtcdProcess]:
        return [m for m in self.members if m.process and m.process.poll() is None]

    def leader(self, timeout: float = 1.0) -> EtcdProcess | None:
        """The member that every running member's status names as leader (None while
        they disagree or have none: during an election)."""
        ids: dict[str, EtcdProcess] = {}
        leaders = set()
        for m in self.running():
            st = m.status(timeout=timeout)
            if st is None:
                return None
            ids[str(st["header"]["member_id"])] = m
            leaders.add(str(st.get("leader", "0")))
        if len(leaders) != 1:
            return None
        return ids.get(leaders.pop())

    def wait_leader(self, timeout: float = 20.0, not_: EtcdProcess | None = None) -> EtcdProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lead = self.leader(timeout=0.5)
            if lead is not None and lead is not not_:
                return lead
            time.sleep(0.02)
        raise TimeoutError(f"no etcd leader agreed on within {timeout}s")

    def kill(self, member: EtcdProcess) -> None:
        member.kill()

    def restart(self, member: EtcdProcess, timeout: float = 20.0) -> None:
        """The member again on its data dir, name and ports."""
        member.start(timeout)

    def stop(self) -> None:
        for m in self.members:
            m.stop()


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
