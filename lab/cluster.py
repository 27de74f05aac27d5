"""`Lab`: a Calico cluster on one machine — one etcd, N nodes as namespaces, one fabric.

Layout of a lab named LAB (default ``calilab``) with nodes ``calico-01 .. calico-NN``::

    root netns                      LAB-fabric netns                 LAB-calico-01 netns
    ----------                      ----------------                 -------------------
    <short>-fab 10.213.0.1/24 <-veth-> root ─┐                        lo
      (etcd listens here and on              br0 10.213.0.254/24 ─── calico-01 <-veth-> eth0 10.213.0.11/24
       127.0.0.1, same port)                 │  (no forwarding)                        default via .254
                                             └── calico-02 <-veth-> eth0 (LAB-calico-02) ip_forward=1

What is made, and why this way:

- The bridge lives in its own namespace ``LAB-fabric``, never in the root namespace, so lab
  traffic never crosses the root namespace's bridge-netfilter hooks or firewall. The
  fabric namespace has forwarding off and bridge-nf-call-* off: it is a plain switch.
- The root namespace gets exactly one link, ``<short>-fab`` with the fabric's first address
  (.1) and its connected route; IPv6 is disabled on that one link so that it adds no
  link-local address or fe80::/64 route either. Nothing else in the root namespace
  (routes, iptables, sysctls such as ip_forward) is touched.
- Each node's default route points at the bridge's own address (.254) in the fabric
  namespace, which does not forward: a packet for a non-lab destination dies there. The
  route is what makes proxy ARP for 169.254.1.1 (Calico's pod gateway) answer.
- The fabric subnet defaults to 10.213.0.0/24, but when that overlaps anything the root
  namespace already has (another lab, a real network), `up` takes the next free /24 of
  10.213.0.0/16, so a test run's lab and an operator's lab can be up side by side.
  ``subnet=`` / ``--subnet`` pins it (and fails on overlap).
- etcd (Debian's etcd-server) runs in the root namespace and listens on 127.0.0.1:P and on
  the root link's fabric address :P. Nodes get the fabric URL, the root namespace gets the
  loopback URL. ``etcd_members=N`` (``--etcd-members``) makes it an N-member raft cluster,
  member i on its own port P_i (peers on loopback), and every client gets every member's
  URL; ``etcd_tls`` (``--etcd-tls``) makes a CA, a server and a client certificate in
  ``<state>/pki`` (lab.pki) and etcd serves only TLS with client certificates, on the client
  and the peer URLs; root_env/node_env then carry Calico's ETCD_*_FILE variables.
- Each node has a persistent mount namespace and UTS namespace, pinned by bind mounts of
  the namespace files onto ``<state>/ns/<node>.mnt`` / ``.uts`` (``<state>/ns`` is a private
  bind mount of itself, as ``ip netns`` does for /run/netns; ``unshare --mount=FILE
  --propagation slave`` makes the pin). Inside it: an overlayfs over /etc (lower /etc,
  upper ``<state>/nodes/<node>/etc-upper``) so the node has its own ``/etc/rkt/net.d``
  without changing the machine's /etc. Also: a fresh sysfs on /sys made from inside
  the node's netns (as ``ip netns exec`` does, so /sys/class/net shows the node's links;
  /sys/fs/cgroup is carried over); hostname = node name (the CNI plugin and
  calicoctl fall back to the hostname when CALICO_NODENAME is unset); and a tmpfs on
  /run/netns, so that pod namespaces a node's runtime names with `ip netns add` stay that
  node's own (otherwise their empty entry files would show up in the root /run/netns),
  and vanish with the node.
- Sockets and runtime data live under ``<state>/nodes/<node>/`` (outside the overlay, since
  unix sockets do not work through overlay upper paths), visible from both sides.
- ``lab.json`` in the state dir records every namespace, link, mount and pid *before* it is
  made, so `down` after a crash knows what to look for. `down` also sweeps by name
  (``LAB-fabric``, ``LAB-calico-NN``), by namespace identity (any process living in a lab
  namespace: a shell opened with `exec`, a pod started by the runtime) and by etcd's data
  dir (an etcd started just before a crash), so it works whatever state `up` died in.
  Processes are always stopped by pid, after checking the pid's start time.
- ``--topology routed`` (see lab.topology for the address plan): the fabric namespace *is*
  the router — no separate router namespace, so everything `down` sweeps stays the same —
  with ip_forward=1 (redirects and rp_filter off), one bridge per node subnet ``brJ`` with
  the router's address .254 on it (the nodes' default gateway), and the root link's peer
  ``root`` as a routed port (not bridged) with .254 of the block's first /24::

      root netns                 LAB-fabric netns (router)             nodes
      <short>-fab 10.213.0.1/22 <-veth-> root 10.213.0.254/24 (proxy ARP)
                                         br1 10.213.1.254/24 ─── calico-01 .11, calico-03 .13
                                         br2 10.213.2.254/24 ─── calico-02 .12, calico-04 .14
                                         (BIRD: the ToR, with --tor-bgp)

  The root link's /22 makes its connected route cover every node subnet; the router
  answers ARP for them, so the root namespace reaches the nodes (and the nodes etcd,
  through the router) without any other root change. The router knows only its
  connected subnets, so pod traffic between subnets needs ``--tor-bgp`` (BIRD in the
  router namespace peers with every node in its own AS, learns their blocks and installs
  them in the router's kernel; the lab writes BGPConfiguration ``default`` with no mesh
  and a BGPPeer per node) or IPIP (``--ipip-mode CrossSubnet|Always``); `up` refuses a
  routed lab with neither. The bridge guard becomes a forward-hook filter on ``root`` in
  the router namespace (``_guard_routed_root_port``). The ToR's BIRD runs with its config
  and control socket in ``<state>/tor/``, recorded by pid + start time in lab.json before
  `up` waits for it; `status` reports it, `up` restarts it, `down` stops it by that pid.
- The default IPv4 pool is created if absent; then every node joins as a real host does,
  with `calicoctl node run` inside it (its Node resource, the CNI plugins, the rkt pod
  `node` running calico-agent, BIRD and calico-tunl): the lab has no other way in.

State dir: ``state_dir=``, else the registered one (below), else ``$CALICO_LAB_STATE/<lab>``,
else ``/var/lib/calico-lab/<lab>``. Lab names are machine-wide (the namespaces carry them),
so `up` also registers the lab as a symlink ``/run/calico-lab/<lab>`` -> its state dir: ``calico-lab status --name X`` and
`Lab.find_running()` find a lab whatever state dir it was made with (a test run's, say).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from calico.config import EtcdSettings
from calico.datastore import Datastore
from calico.errors import AlreadyExists
from calico.health import assess
from calico.resources import (
    IPPool,
    IPPoolSpec,
    Metadata,
    load,
)
from lab import fabric, tor
from lab.etcd import CLUSTER_ELECTION_MS, CLUSTER_HEARTBEAT_MS, EtcdProcess, free_port, free_ports
from lab.fabric import LabError
from lab.pki import PKI, make_pki
from lab.topology import CLUSTER_AS, TOR_AS, Options, TopologyError, node_as, plan

AGENT_START_TIMEOUT = 30.0  # seconds for every node's agent to answer and say healthy
# One member: no peer to lose, so a short election timeout only makes the first leader
# election (most of etcd's start-up time) quicker.
ETCD_EXTRA_ARGS = ("--heartbeat-interval", "20", "--election-timeout", "200")
NODE_SERVICE_STATE = "node-service.json"  # calico-node's --state-file, in the node's dir
HEALTH_FILE = "agent-health.json"  # calico-agent's --health-file, in the node's dir


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


DEFAULT_LAB = "calilab"
DEFAULT_NODES = 2
MAX_NODES = 99
DEFAULT_SUBNET = "10.213.0.0/24"
SUBNET_RANGE = "10.213.0.0/16"  # where `up` looks for a free /24 when the default is taken
DEFAULT_STATE_BASE = "/var/lib/calico-lab"
LOCK_PATH = "/run/calico-lab.lock"
REGISTRY_DIR = "/run/calico-lab"  # <lab> -> its state dir, for every lab made on this machine
CNI_SYSTEM_DIR = "/usr/lib/cni"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

MAX_ETCD_MEMBERS = 7
ETCD_SETTLE = 2.0  # seconds an alive but unhealthy etcd gets before `up` judges it
DEFAULT_POOL_NAME = "default-ipv4-ippool"
DEFAULT_POOL_CIDR = "192.168.0.0/16"

# Runs inside the new node namespaces (netns entered by nsenter, mount+UTS made by
# unshare, pinned to files). $1 node, $2 overlay upper, $3 overlay work, $4 scratch dir.
NODE_SETUP_SCRIPT = r"""
node=$1 upper=$2 work=$3 scratch=$4
echo 1 > /proc/sys/net/ipv4/ip_forward
echo "$node" > /proc/sys/kernel/hostname
mount -t overlay calico-lab-etc -o "lowerdir=/etc,upperdir=$upper,workdir=$work" /etc
mkdir -p /etc/rkt/net.d
echo "$node" > /etc/hostname
mount -t tmpfs -o mode=0755,size=1m calico-lab-netns /run/netns
mount -t sysfs sysfs "$scratch"
if mountpoint -q /sys/fs/cgroup; then mount --rbind /sys/fs/cgroup "$scratch/fs/cgroup"; fi
umount -l /sys
mount --move "$scratch" /sys
"""


def state_base() -> Path:
    return Path(os.environ.get("CALICO_LAB_STATE") or DEFAULT_STATE_BASE)


def registered_state_dir(name: str) -> Path | None:
    """The state dir a lab of this name was made with on this machine, if any."""
    try:
        target = Path(os.readlink(Path(REGISTRY_DIR) / name))
    except OSError:
        return None
    return target if target.is_dir() else None


def default_lab_name() -> str:
    return os.environ.get("CALICO_LAB") or DEFAULT_LAB


def node_name(index: int) -> str:
    return f"calico-{index:02d}"


def plugin_dir() -> str:
    """Where the `calico` and `calico-ipam` console scripts are: beside this Python."""
    return os.path.dirname(sys.executable)


def short_name(lab: str) -> str:
    """At most 11 characters, unique per lab name, for names in the root namespace."""
    if len(lab) <= 11:
        return lab
    return lab[:6] + hashlib.sha1(lab.encode()).hexdigest()[:5]


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("calico-lab needs root (it makes network namespaces and mounts)")


@contextlib.contextmanager
def _global_lock(timeout: float = 120.0):
    """One `up`/`down` at a time on this machine (they share the root namespace)."""
    with open(LOCK_PATH, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"another calico-lab up/down holds {LOCK_PATH}") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _etcd_healthy(url: str, timeout: float = 1.0, tls: dict | None = None) -> bool:
    ctx = None
    if tls:
        import ssl

        try:
            ctx = ssl.create_default_context(cafile=tls["ca_cert_file"])
            ctx.load_cert_chain(tls["cert_file"], tls["key_file"])
        except (OSError, ssl.SSLError):
            return False
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout, context=ctx) as resp:
            return b'"health":"true"' in resp.read()
    except (urllib.error.URLError, OSError, ValueError):
        return False


def etcd_members(info: dict) -> list[dict]:
    """The members recorded in state["etcd"] (a lab made before clusters: the one)."""
    return info.get("members") or ([info] if info.get("loopback_url") else [])


def _judge_member(member: dict, tls: dict | None, grace: float) -> tuple[bool, bool]:
    deadline = time.monotonic() + grace
    while True:
        alive = fabric.same_process(member.get("pid"), member.get("starttime"))
        if not alive:
            return False, False
        if _etcd_healthy(member["loopback_url"], timeout=0.5, tls=tls):
            return True, True
        if time.monotonic() > deadline:
            return True, False
        time.sleep(0.05)


def _judge_etcd(info: dict, grace: float = ETCD_SETTLE) -> tuple[bool, bool]:
    """(alive, healthy) of the lab's etcd, every member of it, given a moment to settle: a
    process that was just sent SIGKILL still runs for a few milliseconds (`kill -9 <etcd>;
    calico-lab up` from a script saw it alive and unhealthy, so `up` repaired nothing and
    waited for agents that could never sync). An unhealthy member either answers within
    `grace` or is judged by whether its process is still there at the end. Each member's
    verdict is written into its record (`alive`, `healthy`) for status()."""
    members = etcd_members(info)
    if not members:
        return False, False
    results: list[tuple[bool, bool]] = [(False, False)] * len(members)

    def judge(i: int) -> None:
        results[i] = _judge_member(members[i], info.get("tls"), grace)

    if len(members) == 1:
        judge(0)
    else:  # in parallel: three dying members cost one grace, not three
        threads = [threading.Thread(target=judge, args=(i,)) for i in range(len(members))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for m, (alive, healthy) in zip(members, results, strict=True):
        m["alive"], m["healthy"] = alive, healthy
    return all(a for a, _ in results), all(h for _, h in results)


def _joined(info: dict, field: str) -> str:
    """Every member's URL of one kind, comma-separated (ETCD_ENDPOINTS)."""
    return ",".join(m[field] for m in etcd_members(info) if m.get(field))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def tor_peering_documents(state: dict) -> list[dict]:
    """The Calico side of a lab with a ToR, as the resources an operator would apply: the
    cluster's BGPConfiguration `default` (no node-to-node mesh: every route goes through
    the ToR) and one BGPPeer per node (`node:` that node; the router's address on the
    node's own subnet, the ToR's AS). Each node is in an AS of its own (`--as` at
    `calicoctl node run`, from state["nodes"][node]["as_number"])."""
    v3 = "projectcalico.org/v3"
    fab = state["fabric"]
    docs: list[dict] = [
        {
            "apiVersion": v3,
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {
                "asNumber": CLUSTER_AS,
                "nodeToNodeMeshEnabled": False,
                "logSeverityScreen": "Info",
            },
        }
    ]
    for node, info in sorted(state["nodes"].items()):
        docs.append(
            {
                "apiVersion": v3,
                "kind": "BGPPeer",
                "metadata": {"name": f"tor-{node}"},
                "spec": {
                    "node": node,
                    "peerIP": fab["subnets"][info["subnet"]]["router"],
                    "asNumber": TOR_AS,
                },
            }
        )
    return docs


def node_health(ndir: Path, service: dict) -> dict:
    """A node's service, agent and health as `status` reports them, read from the kernel
    (pids with their start times), the service's state file and the agent's health file.

    `state`: "running", "restarting" (dead, its supervisor will start it again), "dead"
    (its supervisor is gone too) or "not started"; `health`: "fresh", "stale" or
    "missing"; `healthy` only for a running agent whose own fresh record says healthy."""
    service_alive = fabric.same_process(service.get("pid"), service.get("starttime"))
    supervised = _read_json(ndir / NODE_SERVICE_STATE).get("programs", {}).get("calico-agent", {})
    agent_pid = supervised.get("pid")
    alive = service_alive and fabric.same_process(agent_pid, supervised.get("starttime"))
    if not service.get("pid"):
        state = "not started"
    elif alive:
        state = "running"
    elif service_alive:
        state = "restarting"
    else:
        state = "dead"
    record = _read_json(ndir / HEALTH_FILE)
    verdict = assess(record, writer_alive=alive)
    if record and alive and record.get("pid") != agent_pid:
        why, healthy = f"no health yet from agent pid {agent_pid} (file from a previous one)", False
    elif not service_alive and service.get("pid"):
        why, healthy = f"node service pid {service.get('pid')} is dead", False
    elif state == "restarting":
        last = supervised.get("last_exit") or "exited"
        why, healthy = f"calico-agent {last}; calico-node restarts it", False
    else:
        why, healthy = verdict.reason, verdict.healthy
    return {
        "pid": agent_pid if alive else None,
        "alive": alive,
        "state": state,
        "restarts": int(supervised.get("restarts") or 0),
        "last_exit": supervised.get("last_exit"),
        "service_pid": service.get("pid"),
        "service_alive": service_alive,
        "pod": service.get("uuid"),
        "socket": str(ndir / "agent.sock"),
        "socket_present": (ndir / "agent.sock").exists(),
        "health": "missing" if not record else verdict.freshness,
        "health_age": None if verdict.age is None else round(verdict.age, 1),
        "healthy": healthy,
        "why": why,
        "rejected": verdict.rejected,
    }


class Lab:
    """One lab cluster, identified by name; its state lives in `state_dir`.

    Cheap to construct: nothing is read or made until a method is called, and every
    method reads `lab.json` afresh, so several `Lab` objects (or processes) can look at
    the same lab."""

    def __init__(self, name: str | None = None, state_dir: str | os.PathLike | None = None):
        name = name or default_lab_name()
        if not NAME_RE.match(name):
            raise LabError(
                f"bad lab name {name!r}: lowercase letters, digits, '-' and '_', at most 32"
            )
        self.name = name
        if state_dir is None:
            # Lab names are machine-wide (namespace names carry them), so the registry
            # finds a lab made with any state dir, e.g. by a test run.
            state_dir = registered_state_dir(name) or state_base() / name
        self.state_dir = Path(state_dir)
        self.state_dir = self.state_dir.absolute()
        self.state_file = self.state_dir / "lab.json"

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, state_dir={str(self.state_dir)!r})"

    # --- names ------------------------------------------------------------------

    @property
    def fabric_netns(self) -> str:
        return f"{self.name}-fabric"

    @property
    def root_link(self) -> str:
        return fabric.check_ifname(short_name(self.name) + "-fab")

    def node_netns(self, node: str) -> str:
        return f"{self.name}-{node}"

    @property
    def _ns_dir(self) -> Path:
        return self.state_dir / "ns"

    def node_dir(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    @property
    def cni_bin_dir(self) -> Path:
        """The lab's CNI plugin dir: `calico` and `calico-ipam` as `python -S` launchers."""
        return self.state_dir / "cni-bin"

    def _node_netns_re(self) -> re.Pattern:
        return re.compile(rf"^{re.escape(self.name)}-calico-\d+$")

    # --- state ------------------------------------------------------------------

    def _read_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read {self.state_file}: {exc}") from exc

    def _save(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    def _up_state(self) -> dict:
        state = self._read_state()
        if state.get("phase") != "up":
            raise LabError(f"lab {self.name} is not up (calico-lab up --name {self.name})")
        return state

    @property
    def nodes(self) -> list[str]:
        return sorted(self._read_state().get("nodes", {}))

    def _node(self, state: dict, node: str) -> dict:
        if node.isdigit():
            node = node_name(int(node))
        try:
            return state["nodes"][node]
        except KeyError:
            known = ", ".join(sorted(state.get("nodes", {}))) or "none"
            raise LabError(f"no node {node!r} in lab {self.name} (nodes: {known})") from None

    def node_address(self, node: str) -> str:
        return self._node(self._up_state(), node)["address"]

    @property
    def etcd_endpoints(self) -> str:
        """etcd as the root namespace reaches it (every member's loopback URL)."""
        return _joined(self._up_state()["etcd"], "loopback_url")

    @property
    def fabric_etcd_endpoints(self) -> str:
        """etcd as the nodes reach it (every member on the root link's fabric address)."""
        return _joined(self._up_state()["etcd"], "fabric_url")

    def etcd_settings(self, fabric_side: bool = False) -> EtcdSettings:
        """Endpoints and TLS files for a client in the root namespace (or on a node)."""
        return self._settings_of(self._up_state(), fabric_side)

    @staticmethod
    def _settings_of(state: dict, fabric_side: bool = False) -> EtcdSettings:
        info = state["etcd"]
        tls = info.get("tls") or {}
        urls = _joined(info, "fabric_url" if fabric_side else "loopback_url")
        return EtcdSettings(
            urls, tls.get("ca_cert_file"), tls.get("cert_file"), tls.get("key_file")
        )

    def root_env(self) -> dict[str, str]:
        """Variables for a shell in the root namespace (calicoctl against this lab)."""
        return {
            **self.etcd_settings().env(),
            "DATASTORE_TYPE": "etcdv3",
            "CALICO_LAB": self.name,
        }

    def node_env(self, node: str) -> dict[str, str]:
        """Variables a command run on `node` sees (on top of the caller's environment)."""
        state = self._up_state()
        info = self._node(state, node)
        ndir = Path(info["dir"])
        bindir = plugin_dir()
        path = os.environ.get(
            "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
        if bindir not in path.split(os.pathsep):
            path = bindir + os.pathsep + path
        return {
            **self.etcd_settings(fabric_side=True).env(),
            "DATASTORE_TYPE": "etcdv3",
            "CALICO_NODENAME": info["name"],
            "CALICO_RUN_DIR": str(ndir),  # calicoctl node run/status, calico-node, calico-tunl
            "CALICO_LAB": self.name,
            "RKT_DIR": str(ndir / "rkt"),
            "CALICO_AGENT_SOCKET": str(ndir / "agent.sock"),
            "CALICO_CNI_SOCKET": str(ndir / "cni.sock"),
            # The fast launchers first, then the console scripts, then the reference plugins.
            "CNI_PATH": os.pathsep.join([str(self.cni_bin_dir), bindir, CNI_SYSTEM_DIR]),
            "PATH": path,
        }

    # --- running commands on a node ---------------------------------------------

    def exec_argv(self, node: str, argv: list[str]) -> list[str]:
        """The command line that runs `argv` on `node` (its netns, mount and UTS ns)."""
        if not argv:
            raise LabError("no command given")
        info = self._node(self._up_state(), node)
        netns = fabric.netns_path(info["netns"])
        if not netns.exists() or not fabric.is_mountpoint(Path(info["mntns"])):
            raise LabError(f"node {info['name']} of lab {self.name} is gone (run calico-lab up)")
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = "/"
        # The working directory is kept, resolved in the node's mount namespace (`env -C`
        # runs after the switch; nsenter's --wd opens it before, in the root's view).
        return [
            "nsenter",
            f"--net={netns}",
            f"--mount={info['mntns']}",
            f"--uts={info['utsns']}",
            "--",
            "env",
            "-C",
            cwd,
            "--",
            *argv,
        ]

    def exec(
        self,
        node: str,
        argv: list[str],
        input: str | bytes | None = None,
        timeout: float | None = None,
        text: bool | None = None,
        check: bool = False,
    ):
        """Run `argv` on `node`, capture its output; a subprocess.CompletedProcess."""
        if text is None:
            text = not isinstance(input, bytes)
        env = {**os.environ, **self.node_env(node)}
        return subprocess.run(
            self.exec_argv(node, argv),
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            env=env,
            check=check,
        )

    def write_net_conf(self, node: str, filename: str, conf: dict | str) -> str:
        """Write a CNI network file into the node's own /etc/rkt/net.d; returns its path."""
        if not filename or "/" in filename or filename.startswith("."):
            raise LabError(f"bad network file name {filename!r}")
        text = conf if isinstance(conf, str) else json.dumps(conf, indent=2) + "\n"
        path = f"/etc/rkt/net.d/{filename}"
        proc = self.exec(node, ["sh", "-c", 'cat > "$1"', "sh", path], input=text)
        if proc.returncode != 0:
            raise LabError(f"writing {path} on {node}: {proc.stderr.strip()}")
        return path

    # --- up -----------------------------------------------------------------------

    def up(
        self,
        nodes: int = DEFAULT_NODES,
        subnet: str | None = None,
        etcd_members: int = 1,
        etcd_tls: bool = False,
        *,
        topology: str = "flat",
        subnets: int = 2,
        tor_bgp: bool = False,
        ipip_mode: str = "Never",
        backend: str = "bird",
    ) -> dict:
        """Make the lab; a no-op if it is up. `backend`: each node's `calicoctl node run
        --backend` (bird, or direct on a flat lab). `etcd_members`/`etcd_tls`: an etcd cluster,
        TLS only. `topology`, `subnets`, `tor_bgp` and
        `ipip_mode`: see lab.topology (a routed lab that could not carry pod traffic between
        its subnets is refused before anything is made). A lab with a dead part gets that part
        repaired and keeps the rest (pods, etcd data, net.d): a dead etcd is restarted on
        its data dir and port, a dead node service started again. Only a lab whose
        namespaces are missing (or a half-made one) is torn down and rebuilt. `status()`
        lists exactly these repairs as `repairs`.

        Returns `status()` plus `already_up`, `repaired` and `seconds`."""
        require_root()
        if not 1 <= nodes <= MAX_NODES:
            raise LabError(f"--nodes must be between 1 and {MAX_NODES}")
        if not 1 <= etcd_members <= MAX_ETCD_MEMBERS:
            raise LabError(f"--etcd-members must be between 1 and {MAX_ETCD_MEMBERS}")
        options = Options(topology, subnets, tor_bgp, ipip_mode, backend)
        try:
            options.check(nodes)
        except TopologyError as exc:
            raise LabError(str(exc)) from None
        t0 = time.monotonic()
        with _global_lock():
            current = self.status()
            if current["state"] != "down" and current.get("fabric"):
                self._check_same_topology(current["fabric"], options)
            if current["state"] != "down" and current["etcd"].get("members"):
                have = (len(current["etcd"]["members"]), bool(current["etcd"].get("tls")))
                if have != (etcd_members, etcd_tls) and not any(
                    r.startswith("rebuild") for r in current["repairs"]
                ):
                    raise LabError(
                        f"lab {self.name} has {have[0]} etcd member(s)"
                        f"{' with TLS' if have[1] else ''};"
                        f" run calico-lab down --name {self.name} first"
                    )
            if current["state"] == "up":
                if len(current["nodes"]) != nodes:
                    raise LabError(
                        f"lab {self.name} is already up with {len(current['nodes'])} nodes;"
                        f" run calico-lab down --name {self.name} first"
                    )
                return {
                    **current, "already_up": True, "repaired": [], "seconds": time.monotonic() - t0
                }  # fmt: skip
            if current["state"] in ("broken", "degraded") and not any(
                r.startswith("rebuild") for r in current["repairs"]
            ):
                if len(current["nodes"]) != nodes:
                    raise LabError(
                        f"lab {self.name} has {len(current['nodes'])} nodes;"
                        f" run calico-lab down --name {self.name} first"
                    )
                self._repair(current)
                return {
                    **self.status(),
                    "already_up": False,
                    "repaired": current["repairs"],
                    "seconds": time.monotonic() - t0,
                }
            elsewhere = registered_state_dir(self.name)
            if elsewhere and elsewhere != self.state_dir:
                raise LabError(
                    f"a lab named {self.name} already exists with state in {elsewhere};"
                    f" run calico-lab down --name {self.name} first"
                )
            self._teardown()
            try:
                self._build(nodes, subnet, options, etcd_members, etcd_tls)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._teardown()
                raise
        return {
            **self.status(),
            "already_up": False,
            "repaired": current["repairs"] if current["state"] != "down" else [],
            "seconds": time.monotonic() - t0,
        }

    def _check_same_topology(self, fab: dict, options: Options) -> None:
        """A lab that exists keeps its shape: `up` with other options is an error."""
        have = Options(
            fab.get("topology", "flat"),
            len(fab.get("subnets") or []) if fab.get("topology") == "routed" else options.subnets,
            bool(fab.get("tor_bgp")),
            fab.get("ipip_mode", "Never"),
            fab.get("backend", "bird"),
        )
        if have != options:
            shape = have.topology
            if have.topology == "routed":
                shape += f" ({have.subnets} subnets)"
            raise LabError(
                f"lab {self.name} exists as {shape}, tor-bgp {'on' if have.tor_bgp else 'off'},"
                f" ipip-mode {have.ipip_mode}, backend {have.backend};"
                f" run calico-lab down --name {self.name} first"
            )

    def _repair(self, current: dict) -> None:
        """Do what `current["repairs"]` says (never a rebuild), then wait for every agent."""
        state = self._up_state()
        if not current["etcd"]["alive"]:
            self._restart_etcd(state)
        if current["tor"]["wanted"] and not current["tor"]["alive"]:
            self._start_tor(state)
        dead = [n["name"] for n in current["nodes"] if not n["agent"]["service_alive"]]
        if dead:
            self._start_agents(state, only=dead)
        # An agent reconnects to a restarted etcd by itself; one restarting under its
        # supervisor comes back by itself: wait for both.
        self._wait_agents_healthy(state)

    def _restart_etcd(self, state: dict) -> None:
        """Every dead etcd member again on its own data dir, ports and name: every key
        survives (a cluster's member catches up from the others)."""
        info = state["etcd"]
        members = etcd_members(info)
        dead = [m for m in members if not fabric.same_process(m.get("pid"), m.get("starttime"))]
        procs = []
        for m in dead:
            ports = {m["loopback_url"].rsplit(":", 1)[-1], m["fabric_url"].rsplit(":", 1)[-1]}
            if len(ports) != 1:
                raise LabError(f"etcd client URLs of lab {self.name} disagree on the port")
            m.setdefault("peer_url", f"http://127.0.0.1:{free_port('127.0.0.1')}")
            procs.append((m, self._member_process(info, m)))
        # Recorded as soon as each runs (then wait for health), so `down` finds it.
        try:
            for m, etcd in procs:
                etcd.launch()
                m.update(pid=etcd.pid, starttime=fabric.proc_starttime(etcd.pid))
            self._save(state)
            for _, etcd in procs:
                etcd.wait_healthy()
        except (RuntimeError, TimeoutError) as exc:
            raise LabError(f"etcd did not restart: {exc}") from None
        finally:
            if members and members[0] is not info:  # the first member mirrors the top level
                info.update(pid=members[0].get("pid"), starttime=members[0].get("starttime"))
            self._save(state)

    def _member_process(self, info: dict, m: dict) -> EtcdProcess:
        """An EtcdProcess for a recorded member (its name, data dir, URLs and flags)."""
        tls = info.get("tls")
        return EtcdProcess(
            name=m.get("name") or f"{self.name}-etcd",
            data_dir=Path(m["data_dir"]),
            client_urls=[m["loopback_url"], m["fabric_url"]],
            peer_url=m["peer_url"],
            log_path=Path(m.get("log") or self.state_dir / "etcd.log"),
            extra_args=list(m.get("args") or ETCD_EXTRA_ARGS),
            initial_cluster=info.get("initial_cluster"),
            tls=PKI(Path(tls["dir"])) if tls else None,
        )

    def _choose_subnet(self, wanted: str | None, prefixlen: int = 24) -> ipaddress.IPv4Network:
        """The lab's address block: `wanted`, or the first free /`prefixlen` of SUBNET_RANGE
        (the default subnet's first). Free: overlapping nothing the root namespace has an
        address or a route in, so another lab's block (its root link's connected route
        covers all of it) is never taken twice."""
        taken = fabric.root_ipv4_networks()
        if wanted:
            try:
                net = ipaddress.IPv4Network(wanted)
            except ValueError as exc:
                raise LabError(f"bad subnet {wanted!r}: {exc}") from None
            if not 16 <= net.prefixlen <= prefixlen:
                raise LabError(f"subnet {net} must be between /16 and /{prefixlen}")
            clash = [t for t in taken if t.overlaps(net)]
            if clash:
                raise LabError(f"subnet {net} overlaps {clash[0]} in the root namespace")
            return net
        default = ipaddress.IPv4Network(DEFAULT_SUBNET).supernet(new_prefix=prefixlen)
        candidates = [default] + [
            n
            for n in ipaddress.IPv4Network(SUBNET_RANGE).subnets(new_prefix=prefixlen)
            if n != default
        ]
        for net in candidates:
            if not any(t.overlaps(net) for t in taken):
                return net
        raise LabError(f"no free /{prefixlen} in {SUBNET_RANGE} for the fabric; pass --subnet")

    @property
    def _registry_entry(self) -> Path:
        return Path(REGISTRY_DIR) / self.name

    def _register_lab(self) -> None:
        entry = self._registry_entry
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f".{self.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.state_dir)
        os.replace(tmp, entry)

    def _unregister_lab(self) -> None:
        entry = self._registry_entry
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry)) == self.state_dir:
                entry.unlink()

    def _build(
        self,
        count: int,
        subnet: str | None,
        options: Options,
        etcd_count: int = 1,
        etcd_tls: bool = False,
    ) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._register_lab()
        state: dict = {
            "name": self.name,
            "state_dir": str(self.state_dir),
            "phase": "starting",
            "created": time.time(),
            "netns": [],
            "links": [],
            "mounts": [],
            "nodes": {},
            "etcd": {},
            "agents": {},
        }
        self._save(state)

        net = self._choose_subnet(subnet, options.block_prefixlen)
        root_addr = self._make_fabric(state, net, count, options)

        # etcd boots (about 0.2 s) while the nodes are made.
        tls = None
        if etcd_tls:
            try:
                tls = make_pki(self.state_dir / "pki", [str(root_addr)])
            except RuntimeError as exc:
                raise LabError(f"etcd certificates: {exc}") from None
        members = self._etcd_processes(str(root_addr), etcd_count, tls)
        state["etcd"] = self._etcd_record(members, tls)
        self._save(state)
        failure: list[BaseException] = []

        def start_etcd() -> None:
            try:
                for etcd in members:
                    etcd.launch()
                for etcd in members:
                    etcd.wait_healthy()
                import pyetcd  # noqa: F401 - warm the import (0.1-0.2 s) off the main path
            except BaseException as exc:  # reported by the main thread
                failure.append(exc)

        starter = threading.Thread(target=start_etcd, name="etcd-start", daemon=True)
        starter.start()
        try:
            for i in range(1, count + 1):
                self._make_node(state, i, net)
        finally:
            starter.join()
            recs = etcd_members(state["etcd"])
            for etcd, m in zip(members, recs, strict=True):
                if etcd.pid:
                    m["pid"] = etcd.pid
                    m["starttime"] = fabric.proc_starttime(etcd.pid)
            state["etcd"].update(pid=recs[0]["pid"], starttime=recs[0]["starttime"])
            self._save(state)
        if failure:
            raise LabError(f"etcd did not start: {failure[0]}")

        self._register(state)
        self._peer_with_tor(state)

        # The nodes start through `exec` (`calicoctl node run` inside each), which needs the
        # lab marked up: it is, but for them.
        state["phase"] = "up"
        self._save(state)
        self._start_agents(state)

        state["phase"] = "up"
        state["up_since"] = time.time()
        self._save(state)

    def _make_fabric(
        self, state: dict, net: ipaddress.IPv4Network, count: int, options: Options
    ) -> ipaddress.IPv4Address:
        """The fabric namespace, its bridges and the root link, as `lab.topology.plan`
        says; returns the root link's address (etcd listens there). Flat: one bridge, a
        plain switch. Routed: one bridge per subnet and the namespace routes between them
        (and to the root link), knowing only its connected subnets and what its ToR BIRD
        learns."""
        try:
            layout = plan(options, net, count)
        except TopologyError as exc:
            raise LabError(str(exc)) from None
        routed = layout.topology == "routed"
        root_addr = ipaddress.IPv4Address(layout.root_address)
        state["fabric"] = {
            "topology": layout.topology,
            "subnet": layout.block,
            "root_address": layout.root_address,
            "root_prefixlen": layout.root_prefixlen,
            "netns": self.fabric_netns,
            "root_link": self.root_link,
            "subnets": [
                {"cidr": sub.cidr, "bridge": sub.bridge, "router": sub.router}
                for sub in layout.subnets
            ],
            "nodes": {
                node_name(n.index): {
                    "address": n.address,
                    "prefixlen": n.prefixlen,
                    "subnet": n.subnet,
                }
                for n in layout.nodes
            },  # fmt: skip
            "tor_bgp": options.tor_bgp,
            "ipip_mode": options.ipip_mode,
            "backend": options.backend,
        }
        if routed:
            state["fabric"]["router_address"] = layout.root_peer_address
        else:
            state["fabric"]["bridge_address"] = layout.subnets[0].router
            state["fabric"]["bridge"] = layout.subnets[0].bridge
        state["mounts"].append(str(self._ns_dir))
        self._save(state)
        fabric.make_private_bind(self._ns_dir)

        # The fabric namespace: a plain switch (flat) or the router (routed).
        fab = self.fabric_netns
        state["netns"].append(fab)
        self._save(state)
        fabric.netns_add(fab)
        fabric.ip(fab, "link", "set", "lo", "up")
        sysctls = {"net.ipv4.ip_forward": "1" if routed else "0"}
        if routed:
            # A dumb router: no redirects (nodes of one subnet may send via it before their
            # routes converge) and no reverse-path filter (a pod source before the ToR
            # learned its block); the nodes' own settings decide.
            sysctls |= {
                "net.ipv4.conf.all.send_redirects": "0",
                "net.ipv4.conf.default.send_redirects": "0",
                "net.ipv4.conf.all.rp_filter": "0",
                "net.ipv4.conf.default.rp_filter": "0",
            }
        for key in ("iptables", "ip6tables", "arptables"):
            if os.path.exists(f"/proc/sys/net/bridge/bridge-nf-call-{key}"):
                sysctls[f"net.bridge.bridge-nf-call-{key}"] = "0"
        fabric.sysctl_in_netns(fab, sysctls)
        for sub in layout.subnets:
            plen = ipaddress.IPv4Network(sub.cidr).prefixlen
            fabric.ip(fab, "link", "add", sub.bridge, "type", "bridge")
            fabric.ip(fab, "addr", "add", f"{sub.router}/{plen}", "dev", sub.bridge)
            fabric.ip(fab, "link", "set", sub.bridge, "up")

        # The one link in the root namespace.
        link = self.root_link
        if fabric.link_exists(link):
            raise LabError(f"interface {link} already exists in the root namespace, not ours")
        state["links"].append(link)
        self._save(state)
        fabric.ip(None, "link", "add", link, "type", "veth", "peer", "name", "root", "netns", fab)
        ipv6_off = Path(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6")
        if ipv6_off.exists():
            ipv6_off.write_text("1\n")
        fabric.ip(None, "addr", "add", f"{root_addr}/{layout.root_prefixlen}", "dev", link)
        if routed:
            # The root link's prefix covers every node subnet; the router answers ARP for
            # them, so the root reaches the nodes (and they etcd) with no route of its own.
            fabric.ip(fab, "addr", "add", f"{layout.root_peer_address}/24", "dev", "root")
            fabric.sysctl_in_netns(fab, {"net.ipv4.conf.root.proxy_arp": "1"})
            fabric.ip(fab, "link", "set", "root", "up")
            self._guard_routed_root_port(fab, net)
        else:
            fabric.ip(fab, "link", "set", "root", "master", "br0", "up")
            self._guard_root_port(fab, net)
        fabric.ip(None, "link", "set", link, "up")
        return root_addr

    def _guard_routed_root_port(self, fab: str, net: ipaddress.IPv4Network) -> None:
        """`_guard_root_port` for a routed lab: the root link is a routed port of the
        router namespace, not a bridge port, so the same rule sits on the router's forward
        hook: only the lab's own fabric addresses are forwarded to the root namespace
        (never a pod address, never IPv6)."""
        rules = (
            "table inet calilab_guard {\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f'    oifname "root" meta nfproto ipv4 ip saddr != {net} counter drop\n'
            '    oifname "root" meta nfproto ipv6 counter drop\n'
            "  }\n"
            "}\n"
        )
        fabric.run(["nsenter", f"--net={fabric.netns_path(fab)}", "nft", "-f", "-"], input=rules)

    # --- the ToR ----------------------------------------------------------------

    @property
    def _tor_dir(self) -> Path:
        return self.state_dir / "tor"

    def _tor_neighbors(self, state: dict) -> list[tor.Neighbor]:
        fab = state["fabric"]
        return [
            tor.Neighbor(
                name=node,
                address=info["address"],
                as_number=info["as_number"],
                local_address=fab["subnets"][info["subnet"]]["router"],
            )
            for node, info in sorted(state["nodes"].items())
        ]

    def _start_tor(self, state: dict) -> None:
        """The ToR's BIRD in the router namespace (config rendered afresh from lab.json),
        recorded by pid + start time before waiting for its control socket."""
        fab = state["fabric"]
        d = self._tor_dir
        d.mkdir(parents=True, exist_ok=True)
        info = state.setdefault("tor", {})
        info.update(
            as_number=TOR_AS,
            config=str(d / "bird.conf"),
            socket=str(d / "bird.ctl"),
            log=str(d / "bird.log"),
        )
        config = tor.render_config(
            router_id=fab["router_address"],
            local_as=TOR_AS,
            neighbors=self._tor_neighbors(state),
            fabric_block=fab["subnet"],
            log_file=info["log"],
        )
        Path(info["config"]).write_text(config)

        def record(pid: int) -> None:
            info.update(pid=pid, starttime=fabric.proc_starttime(pid))
            self._save(state)

        tor.start(fab["netns"], Path(info["config"]), Path(info["socket"]),
                  d / "bird.out", record)  # fmt: skip

    def _peer_with_tor(self, state: dict) -> None:
        """A lab with a ToR: start its BIRD, then tell Calico through the datastore, as an
        operator would: no node-to-node mesh (BGPConfiguration default) and, per node, a
        BGPPeer with the router's address on the node's own subnet."""
        if not state["fabric"].get("tor_bgp"):
            return
        self._start_tor(state)
        store = Datastore.connect(self._settings_of(state), timeout=10)
        try:
            for doc in tor_peering_documents(state):
                store.apply(load(doc))
        finally:
            store.close()

    def _guard_root_port(self, fab: str, net) -> None:
        """Only the nodes' own fabric addresses may send to the root namespace's port.

        Pod traffic to a root-namespace address (etcd listens there) would be answered by the
        root namespace through its own default route, that is, out of the lab. The agents
        drop workload traffic to the datastore hosts; this bridge filter in the lab's own
        fabric namespace makes sure nothing else from a pod address gets there either."""
        rules = (
            "table bridge calilab_guard {\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f'    oifname "root" ether type ip ip saddr != {net} counter drop\n'
            '    oifname "root" ether type ip6 counter drop\n'
            "  }\n"
            "}\n"
        )
        fabric.run(["nsenter", f"--net={fabric.netns_path(fab)}", "nft", "-f", "-"], input=rules)

    def _etcd_processes(self, fabric_addr: str, count: int, tls: PKI | None) -> list[EtcdProcess]:
        """The lab's etcd members (not started): each listens for clients on loopback and
        on the fabric address at one port of its own, and for peers on loopback. One
        member is named, stored and timed as it always was."""
        scheme = "https" if tls else "http"
        try:
            ports = free_ports(["127.0.0.1", fabric_addr], count)
            peers = free_ports(["127.0.0.1"], count, taken=set(ports))
        except RuntimeError:
            raise LabError("no free port for etcd on both loopback and the fabric") from None
        if count == 1:
            names, args = [f"{self.name}-etcd"], list(ETCD_EXTRA_ARGS)
            stems = ["etcd"]
        else:
            names = [f"{self.name}-etcd-{i}" for i in range(1, count + 1)]
            stems = [f"etcd-{i}" for i in range(1, count + 1)]
            args = [
                "--heartbeat-interval", str(CLUSTER_HEARTBEAT_MS),
                "--election-timeout", str(CLUSTER_ELECTION_MS),
                "--initial-cluster-token", f"{self.name}-etcd",
            ]  # fmt: skip
        peer_urls = [f"{scheme}://127.0.0.1:{p}" for p in peers]
        initial = ",".join(f"{n}={u}" for n, u in zip(names, peer_urls, strict=True))
        return [
            EtcdProcess(
                name=name,
                data_dir=self.state_dir / f"{stem}.data",
                client_urls=[f"{scheme}://127.0.0.1:{port}", f"{scheme}://{fabric_addr}:{port}"],
                peer_url=peer,
                log_path=self.state_dir / f"{stem}.log",
                extra_args=list(args),
                initial_cluster=initial if count > 1 else None,
                tls=tls,
            )
            for name, stem, port, peer in zip(names, stems, ports, peer_urls, strict=True)
        ]

    @staticmethod
    def _etcd_record(members: list[EtcdProcess], tls: PKI | None) -> dict:
        """state["etcd"]: every member (pid + start time, URLs, data dir, log, flags), the
        TLS files, and the first member's fields at the top level as before clusters."""
        recs = [
            {
                "name": m.name,
                "data_dir": str(m.data_dir),
                "log": str(m.log_path),
                "loopback_url": m.client_urls[0],
                "fabric_url": m.client_urls[1],
                "peer_url": m.peer_url,
                "args": list(m.extra_args),
                "pid": None,
                "starttime": None,
            }
            for m in members
        ]
        info = {k: v for k, v in recs[0].items() if k != "args"}
        if len(recs) > 1:  # one member keeps the shape it always had (no member list)
            info["members"] = recs
            info["initial_cluster"] = members[0].initial_cluster
        info["tls"] = (
            {
                "dir": str(tls.dir),
                "ca_cert_file": str(tls.ca_cert),
                "cert_file": str(tls.client_cert),
                "key_file": str(tls.client_key),
            }
            if tls
            else None
        )
        return info

    def _make_node(self, state: dict, index: int, net: ipaddress.IPv4Network) -> None:
        """Node `index` on its subnet of the plan in state["fabric"] (`net`: the lab's
        whole block), its default route via the subnet's bridge/router address."""
        node = node_name(index)
        netns = self.node_netns(node)
        ndir = self.node_dir(node)
        fab_info = state["fabric"]
        where = fab_info["nodes"][node]
        seg = fab_info["subnets"][where["subnet"]]
        address = ipaddress.IPv4Address(where["address"])
        net = ipaddress.IPv4Network(seg["cidr"])
        pin_mnt, pin_uts = self._ns_dir / f"{node}.mnt", self._ns_dir / f"{node}.uts"
        scratch = ndir / ".sys"
        for sub in ("rkt", "etc-upper", "etc-work", ".sys"):
            (ndir / sub).mkdir(parents=True, exist_ok=True)
        state["nodes"][node] = {
            "name": node,
            "index": index,
            "netns": netns,
            "address": str(address),
            "prefixlen": net.prefixlen,
            "dir": str(ndir),
            "mntns": str(pin_mnt),
            "utsns": str(pin_uts),
            "fabric_port": node,
            "subnet": where["subnet"],
            "bridge": seg["bridge"],
            "gateway": seg["router"],
        }
        if fab_info.get("tor_bgp"):
            state["nodes"][node]["as_number"] = node_as(index)
        state["netns"].append(netns)
        state["mounts"] += [str(pin_mnt), str(pin_uts)]
        self._save(state)

        fab = self.fabric_netns
        fabric.netns_add(netns)
        # Both ends are made directly in their namespaces: nothing appears in the root one.
        fabric.ip(
            None, "link", "add", "name", "eth0", "netns", netns,
            "type", "veth", "peer", "name", node, "netns", fab,
        )  # fmt: skip
        fabric.ip(fab, "link", "set", node, "master", seg["bridge"], "up")
        fabric.ip(netns, "link", "set", "lo", "up")
        fabric.ip(netns, "addr", "add", f"{address}/{net.prefixlen}", "dev", "eth0")
        fabric.ip(netns, "link", "set", "eth0", "up")
        fabric.ip(netns, "route", "add", "default", "via", seg["router"], "dev", "eth0")

        pin_mnt.touch()
        pin_uts.touch()
        fabric.run(
            [
                "nsenter", f"--net={fabric.netns_path(netns)}",
                "unshare", f"--mount={pin_mnt}", f"--uts={pin_uts}", "--propagation", "slave",
                "sh", "-ec", NODE_SETUP_SCRIPT, "sh",
                node, str(ndir / "etc-upper"), str(ndir / "etc-work"), str(scratch),
            ]
        )  # fmt: skip

    def _register(self, state: dict) -> None:
        """The default IPv4 pool in etcd (only if absent). The nodes register themselves:
        `calicoctl node run` on each writes its Node resource."""
        store = Datastore.connect(self._settings_of(state), timeout=10)
        try:
            pool = IPPool(
                metadata=Metadata(name=DEFAULT_POOL_NAME),
                spec=IPPoolSpec(
                    cidr=DEFAULT_POOL_CIDR,
                    block_size=26,
                    ipip_mode=state["fabric"].get("ipip_mode", "Never"),
                    vxlan_mode="Never",
                    nat_outgoing=False,
                    node_selector="all()",
                ),
            )
            with contextlib.suppress(AlreadyExists):
                store.create(pool)
        finally:
            store.close()

    def _start_agents(self, state: dict, only: list[str] | None = None) -> None:
        """Each node becomes a Calico node the way a real host does: `calicoctl node run
        --name NODE --ip autodetect [--as ASN]`, run inside the node (its environment has
        the etcd settings, CALICO_RUN_DIR = the node's dir and CNI_PATH, so the plugins go
        where its rkt looks). That starts the rkt pod `node` (calico-node: start-up, then
        the agent, BIRD and calico-tunl) and returns once the agent is healthy. The nodes
        start side by side. `only`: these nodes (a repair); a node whose service runs
        keeps it. Then, with BIRD, until every node's BGP sessions are Established."""
        agents = state.setdefault("agents", {})
        calicoctl = str(Path(plugin_dir()) / "calicoctl")
        starting: dict[str, subprocess.Popen] = {}
        for node in sorted(only if only is not None else state["nodes"]):
            known = agents.get(node, {})
            if fabric.same_process(known.get("pid"), known.get("starttime")):
                continue  # `up` on a running lab: keep the service it has
            argv = [calicoctl, "node", "run", "--name", node, "--ip", "autodetect"]
            if state["nodes"][node].get("as_number"):
                argv += ["--as", str(state["nodes"][node]["as_number"])]
            if state["fabric"].get("backend", "bird") != "bird":
                argv += ["--backend", state["fabric"]["backend"]]
            starting[node] = subprocess.Popen(
                self.exec_argv(node, argv),
                env={**os.environ, **self.node_env(node)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        failures = []
        for node, proc in starting.items():
            try:
                out, err = proc.communicate(timeout=AGENT_START_TIMEOUT * 2)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                err = f"calicoctl node run did not return in {AGENT_START_TIMEOUT * 2:.0f} s"
            ndir = Path(state["nodes"][node]["dir"])
            service = _read_json(ndir / NODE_SERVICE_STATE)
            uuid_file = ndir / "node.uuid"
            agents[node] = {
                "uuid": uuid_file.read_text().strip() if uuid_file.exists() else None,
                "pid": service.get("pid"),
                "starttime": service.get("starttime"),
            }
            if proc.returncode != 0:
                failures.append(f"{node}: {(err or out).strip() or 'calicoctl node run failed'}")
        self._save(state)
        if failures:
            raise LabError("; ".join(failures))
        self._wait_agents_healthy(state, only)
        self._wait_bgp_established(state, only)

    def _wait_bgp_established(
        self, state: dict, only: list[str] | None = None, timeout: float = AGENT_START_TIMEOUT
    ) -> None:
        """Until each BIRD node has at least one BGP session and all of them Established
        (the mesh, or the ToR), as its agent reports them (`GET /v1/bgp`): pods started
        next are routed at once. Sessions come up about 1 s after both ends run BIRD."""
        from calico.nodeapi import NodeAPIError, NodeClient

        wanted = len(state["nodes"]) > 1 or bool(state.get("fabric", {}).get("tor_bgp"))
        if not wanted:
            return
        deadline = time.monotonic() + timeout
        for node in sorted(only if only is not None else state["nodes"]):
            sock = Path(state["nodes"][node]["dir"]) / "agent.sock"
            why = "no answer"
            while True:
                try:
                    with NodeClient(f"unix://{sock}", timeout=3) as client:
                        bgp = client.bgp()
                except NodeAPIError as exc:
                    bgp, why = {}, str(exc)
                if bgp and bgp.get("backend") != "bird":
                    break  # the direct backend: no sessions to wait for
                peers = bgp.get("peers") or []
                if peers and all(str(p.get("info", "")).startswith("Established") for p in peers):
                    break
                if bgp:
                    why = (
                        bgp.get("error")
                        or ", ".join(
                            f"{p.get('peer_address')} {p.get('info') or p.get('state')}"
                            for p in peers
                        )
                        or "no BGP peers"
                    )
                if time.monotonic() > deadline:
                    raise LabError(
                        f"{node}: BGP not Established within {timeout:.0f} s ({why}); "
                        f"see: calico-lab exec {node} -- calicoctl node status"
                    )
                time.sleep(0.1)

    def _wait_agents_healthy(
        self, state: dict, only: list[str] | None = None, timeout: float = AGENT_START_TIMEOUT
    ) -> None:
        """Until every node's agent answers on its socket and its own health says healthy."""
        deadline = time.monotonic() + timeout
        agents = state.get("agents", {})
        for node in sorted(only if only is not None else state["nodes"]):
            ndir = Path(state["nodes"][node]["dir"])
            sock = ndir / "agent.sock"
            while True:
                h = node_health(ndir, agents.get(node, {}))
                if h["healthy"] and _socket_answers(sock):
                    break
                if time.monotonic() > deadline:
                    raise LabError(
                        f"{node}: calico-agent not healthy within {timeout:.0f} s ({h['why']});"
                        f" see its log: rkt status {agents.get(node, {}).get('uuid')}"
                    )
                if not h["service_alive"]:
                    raise LabError(
                        f"{node}: calico-node exited; see its log: "
                        f"rkt status {agents.get(node, {}).get('uuid')}"
                    )
                time.sleep(0.05)

    def _stop_agents(self, state: dict) -> list[str]:
        """Stop the node services this lab recorded, by pid + start time only."""
        stopped = []
        for node, agent in sorted(state.get("agents", {}).items()):
            if fabric.stop_process(agent.get("pid") or 0, agent.get("starttime")):
                stopped.append(node)
        return stopped

    # --- down -----------------------------------------------------------------------

    def down(self) -> dict:
        """Remove everything the lab made, whatever state `up` left it in."""
        require_root()
        t0 = time.monotonic()
        with _global_lock():
            existed = self._teardown()
        return {"name": self.name, "removed": existed, "seconds": time.monotonic() - t0}

    def _leftover_netns(self, state: dict) -> list[str]:
        """Lab namespaces that exist: recorded ones and ones named like ours. Nodes first."""
        names = set(state.get("netns", []))
        pattern = self._node_netns_re()
        names |= {n for n in fabric.netns_list() if n == self.fabric_netns or pattern.match(n)}
        present = [n for n in names if fabric.netns_exists(n)]
        return sorted(present, key=lambda n: (n == self.fabric_netns, n))

    def _teardown(self) -> bool:
        """Remove what is there; returns whether there was anything. Collects errors and
        carries on, so one stuck piece does not leave the rest behind."""
        state = self._read_state()
        errors: list[str] = []
        netnses = self._leftover_netns(state)
        pins = {Path(p) for p in state.get("mounts", []) if p != str(self._ns_dir)}
        if self._ns_dir.is_dir():
            pins |= {p for p in self._ns_dir.iterdir() if p.suffix in (".mnt", ".uts")}
        pinned = [p for p in pins if fabric.is_mountpoint(p)]
        existed = bool(state or netnses or pinned or self.state_dir.exists())

        def attempt(what, *args):
            try:
                what(*args)
            except (LabError, OSError) as exc:
                errors.append(str(exc))

        # 1. Agents and the ToR's BIRD (recorded pids only).
        attempt(self._stop_agents, state)
        tor_info = state.get("tor", {})
        if tor_info.get("pid"):
            attempt(fabric.stop_process, tor_info["pid"], tor_info.get("starttime"))

        # 2. Anything else living in the lab's namespaces: shells from `exec`, pods.
        ids = {fabric.ns_id(fabric.netns_path(n)) for n in netnses}
        ids |= {fabric.ns_id(p) for p in pinned}
        ids.discard(None)
        mine = fabric.own_lineage()
        inside = [p for p in fabric.pids_in_namespaces(ids) if p not in mine]
        attempt(self._stop_all, inside)

        # 3. etcd: the recorded pid, or one started on our data dir just before a crash.
        etcd = state.get("etcd", {})
        members = etcd_members(etcd) or [{"data_dir": str(self.state_dir / "etcd.data")}]
        for m in members:
            if m.get("pid"):
                attempt(fabric.stop_process, m["pid"], m.get("starttime"))
        for m in members:
            data_dir = m.get("data_dir") or str(self.state_dir / "etcd.data")
            attempt(self._stop_all, fabric.pids_with_argument(data_dir, "etcd"))

        # 4. Mount and UTS namespace pins (the overlay and sysfs die with the namespace).
        for pin in sorted(pinned):
            attempt(fabric.umount, pin)

        # 5. Network namespaces, nodes first; the veths go with them.
        for n in netnses:
            attempt(fabric.netns_delete, n)

        # 6. The root link, if it outlived its peer's namespace.
        for link in state.get("links", []):
            attempt(fabric.link_delete, link)

        # 7. Whatever is still mounted under the state dir (the private ns dir last).
        for mnt in fabric.mountpoints_under(self.state_dir):
            attempt(fabric.umount, Path(mnt))

        # 8. Files.
        if self.state_dir.exists():
            if fabric.mountpoints_under(self.state_dir):
                errors.append(f"mounts remain under {self.state_dir}; not removing it")
            else:
                attempt(shutil.rmtree, self.state_dir)
        if not self.state_dir.exists():
            self._unregister_lab()
            with contextlib.suppress(OSError):
                os.rmdir(REGISTRY_DIR)  # only if no other lab is registered

        if errors:
            raise LabError(f"lab {self.name}: teardown incomplete: " + "; ".join(errors))
        return existed

    @staticmethod
    def _stop_all(pids: list[int]) -> None:
        procs = [(p, fabric.proc_starttime(p)) for p in pids]
        threads = [
            threading.Thread(target=fabric.stop_process, args=(p, st)) for p, st in procs if st
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # --- status ---------------------------------------------------------------------

    def status(self) -> dict:
        """What is there now, checked against the kernel, not just the state file.

        `state` is "up" (everything present, etcd healthy, every agent running with fresh,
        healthy health), "down" (nothing at all), "broken" (a piece is missing or dead:
        `repairs` lists what `up` will do about it, in order) or "degraded" (everything
        runs but something is unhealthy: an agent restarting under its supervisor, stale
        or not in sync; `why` says what; `up` waits for it, and repairs nothing)."""
        state = self._read_state()
        etcd = state.get("etcd", {})
        etcd_alive, healthy = _judge_etcd(etcd) if etcd else (False, False)
        fab = state.get("fabric", {})
        nodes = []
        for node, info in sorted(state.get("nodes", {}).items()):
            service = state.get("agents", {}).get(node, {})
            nodes.append(
                {
                    "name": node,
                    "netns": info["netns"],
                    "netns_present": fabric.netns_exists(info["netns"]),
                    "mntns_present": fabric.is_mountpoint(Path(info["mntns"])),
                    "address": info["address"],
                    "agent": node_health(Path(info["dir"]), service),
                }
            )
        leftovers = self._leftover_netns(state)
        fabric_ok = bool(fab) and fabric.netns_exists(fab.get("netns", ""))
        tor_status = self._tor_status(state)
        missing = []
        if state.get("phase") != "up":
            missing.append(f"phase {state.get('phase')!r}")
        if not fabric_ok:
            missing.append("fabric namespace")
        elif not fabric.link_exists(fab["root_link"]):
            missing.append(f"root link {fab['root_link']}")
        missing += [
            f"{n['name']} namespaces"
            for n in nodes
            if not (n["netns_present"] and n["mntns_present"])
        ]
        repairs: list[str] = []
        why: list[str] = []
        if missing:
            repairs.append(f"rebuild the lab ({', '.join(missing)} missing): pods and etcd data go")
        else:
            members = etcd_members(etcd)
            for m in members or [etcd]:
                if not m.get("alive"):
                    port = (m.get("loopback_url") or "").rsplit(":", 1)[-1]
                    who = f"etcd member {m['name']}" if len(members) > 1 else "etcd"
                    repairs.append(f"restart {who} on its data dir and port {port}")
            if etcd_alive and not healthy:
                sick = [m["name"] for m in members if not m.get("healthy")]
                why.append(
                    "etcd runs but does not answer /health"
                    + (f" ({', '.join(sick)})" if len(members) > 1 else "")
                )
            if tor_status["wanted"] and not tor_status["alive"]:
                repairs.append("restart the ToR's BIRD in the router namespace")
            for n in nodes:
                agent = n["agent"]
                if not agent["service_alive"]:
                    repairs.append(f"start the node service on {n['name']}")
                elif not agent["healthy"]:
                    why.append(f"{n['name']}: {agent['why']}")
        if not state and not leftovers and not self.state_dir.exists():
            overall, repairs = "down", []
        elif repairs:
            overall = "broken"
        elif why:
            overall = "degraded"
        else:
            overall = "up"
        return {
            "name": self.name,
            "state": overall,
            "phase": state.get("phase"),
            "state_dir": str(self.state_dir),
            "repairs": repairs,
            "why": why,
            "etcd": {
                "endpoints": _joined(etcd, "loopback_url") or None,
                "node_endpoints": _joined(etcd, "fabric_url") or None,
                "pid": etcd.get("pid"),
                "alive": etcd_alive,
                "healthy": healthy,
                "tls": bool(etcd.get("tls")),
                "members": [
                    {
                        "name": m.get("name"),
                        "pid": m.get("pid"),
                        "endpoint": m.get("loopback_url"),
                        "data_dir": m.get("data_dir"),
                        "alive": bool(m.get("alive")),
                        "healthy": bool(m.get("healthy")),
                    }
                    for m in etcd_members(etcd)
                ],
            },
            "fabric": fab,
            "tor": tor_status,
            "nodes": nodes,
        }

    def _tor_status(self, state: dict) -> dict:
        """Whether the lab wants a ToR and whether its BIRD (the recorded pid) runs."""
        info = state.get("tor", {})
        wanted = bool(state.get("fabric", {}).get("tor_bgp"))
        alive = wanted and fabric.same_process(info.get("pid"), info.get("starttime"))
        return {
            "wanted": wanted,
            "pid": info.get("pid"),
            "alive": alive,
            "as_number": info.get("as_number"),
            "socket": info.get("socket"),
        }

    def bgp(self) -> dict:
        """BGP as each node's agent reports it (`GET /v1/bgp`) and the ToR's sessions (its
        birdc), for `calico-lab status`. Never raises for a node or ToR that does not
        answer: each entry says why instead."""
        from calico.nodeapi import NodeAPIError, NodeClient  # httpx: only when asked

        state = self._read_state()
        nodes: dict[str, dict] = {}
        for node, info in sorted(state.get("nodes", {}).items()):
            sock = Path(info["dir"]) / "agent.sock"
            if not sock.exists():
                nodes[node] = {"error": "agent socket missing"}
                continue
            try:
                with NodeClient(f"unix://{sock}", timeout=3) as client:
                    nodes[node] = client.bgp()
            except NodeAPIError as exc:
                if exc.status == 404:
                    nodes[node] = {"error": "not served by this agent"}
                else:
                    nodes[node] = {"error": str(exc)}
        out: dict = {"nodes": nodes, "tor": None}
        status = self._tor_status(state)
        if status["wanted"]:
            entry: dict = {"as_number": status["as_number"], "alive": status["alive"]}
            if status["alive"]:
                try:
                    entry["sessions"] = [
                        {
                            "name": s.name,
                            "node": next(
                                (n for n in state["nodes"] if tor.protocol_name(n) == s.name), ""
                            ),
                            "state": s.state,
                            "since": s.since,
                            "info": s.info,
                        }
                        for s in tor.protocols(Path(status["socket"]))
                    ]
                    entry["routes"] = tor.routes(Path(status["socket"]))
                except LabError as exc:
                    entry["error"] = str(exc)
            else:
                entry["error"] = f"ToR BIRD pid {status['pid']} is not running"
            out["tor"] = entry
        return out

    @classmethod
    def find_running(cls, base: str | os.PathLike | None = None) -> list[str]:
        """Names of labs whose state says up and whose etcd runs: every lab registered on
        this machine, plus any under the state base dir."""
        dirs: set[Path] = set()
        for where in (Path(REGISTRY_DIR), Path(base) if base else state_base()):
            with contextlib.suppress(OSError):
                dirs |= {p.resolve() for p in where.iterdir() if not p.name.startswith(".")}
        found = set()
        for entry in dirs:
            try:
                state = json.loads((entry / "lab.json").read_text())
            except (OSError, ValueError):
                continue
            etcd = state.get("etcd", {})
            if state.get("phase") == "up" and any(
                fabric.same_process(m.get("pid"), m.get("starttime")) for m in etcd_members(etcd)
            ):
                found.add(state.get("name", entry.name))
        return sorted(found)
