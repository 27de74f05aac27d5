"""`calicoctl node run | status`: make this host a Calico node, and ask how its BGP is doing.

    calicoctl node run --name calico-01 --ip autodetect --as 65001
    calicoctl node status

`node run` starts the node service the way the tutorial's installation did: the rkt pod
`node` on the host network (`rkt run --detach --net=host calico/node --exec=calico-node`),
whose `calico-node --name NAME` does the node's start-up (agent/startup.py: the address,
the Node resource, the CNI plugins) and then supervises the agent, BIRD and calico-tunl.
Before it starts anything it checks what it can check from here (root, etcd reachable, a
usable run dir); what only the node can find out (no address to autodetect, a bad AS)
comes back through the service's state file as one line, and the pod that failed is
removed. It returns once the agent says healthy, so the next command can rely on the node.
Run again while the service runs, it changes nothing and says so (idempotent); a service
that died is replaced.

`node status`: whether the node service and its programs run (the service's state file
and the kernel's pids), then the BGP peers as BIRD reports them through its control socket
(`birdc show protocols`, parsed by calico.bgp), in Calico's table.

Where things are: `$CALICO_RUN_DIR` (default /var/run/calico) holds the service's state
file, the pod's UUID, the agent's sockets and health, bird.conf and bird.ctl. The CNI
plugins go into `--cni-bin-dir`, default the first directory of `$CNI_PATH` (where the
runtime looks), else /opt/cni/bin.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico.tools import program
from calicoctl.context import ArgParser, CliError

DEFAULT_RUN_DIR = "/var/run/calico"
DEFAULT_CNI_BIN_DIR = "/opt/cni/bin"
SERVICE_STATE = "node-service.json"  # calico-node's --state-file
POD_UUID = "node.uuid"  # rkt's --uuid-file-save
HEALTH = "agent-health.json"  # the agent's health file (agent/node_service.agent_argv)
BIRD_CONTROL = "bird.ctl"
DEFAULT_WAIT = 60.0  # seconds for the new node's agent to say healthy
BIRDC_TIMEOUT = 5.0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    node = subparsers.add_parser("node", parents=[common], help="run this host's Calico node")
    sub = node.add_subparsers(dest="node_command", metavar="COMMAND", parser_class=ArgParser)
    node.set_defaults(func=_need_subcommand)

    run = sub.add_parser("run", parents=[common], help="start the node service on this host")
    run.add_argument("--name", help="the node's name (default $CALICO_NODENAME, else hostname)")
    run.add_argument(
        "--ip", default="autodetect", metavar="ADDR/PLEN|autodetect",
        help="this node's BGP address (default autodetect)",
    )  # fmt: skip
    run.add_argument(
        "--ip-autodetection-method", default="first-found", metavar="METHOD",
        help="first-found, can-reach=DEST or interface=REGEX (default first-found)",
    )  # fmt: skip
    run.add_argument("--as", dest="as_number", metavar="ASN", help="this node's AS number")
    run.add_argument(
        "--backend", choices=("bird", "direct"), default="bird",
        help="bird: routes through BGP (default); direct: the agent writes a route to each "
        "remote block via its node (one flat L2 segment only)",
    )  # fmt: skip
    run.add_argument(
        "--cni-bin-dir", metavar="DIR",
        help=f"install the CNI plugins here (default the first of $CNI_PATH, else "
        f"{DEFAULT_CNI_BIN_DIR})",
    )  # fmt: skip
    run.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT, metavar="S",
        help=f"seconds to wait for the node to be healthy (default {DEFAULT_WAIT:g})",
    )  # fmt: skip
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", parents=[common], help="the node service and BGP peers")
    status.set_defaults(func=cmd_status)


def _need_subcommand(cli: Any) -> int:
    raise CliError("calicoctl node: a subcommand is required (run, status)")


# ---------------------------------------------------------------- pure: paths and argv


def run_dir() -> Path:
    return Path(os.environ.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)


def cni_bin_dir(flag: str | None, env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    if flag:
        return flag
    first = (env.get("CNI_PATH") or "").split(os.pathsep)[0]
    return first or DEFAULT_CNI_BIN_DIR


def node_name(flag: str | None) -> str:
    return flag or os.environ.get("CALICO_NODENAME") or socket.gethostname()


@dataclass(frozen=True)
class RunOptions:
    name: str
    ip: str
    method: str
    as_number: str | None
    backend: str
    cni_bin_dir: str
    run_dir: Path


def service_argv(opts: RunOptions, calico_node: str) -> list[str]:
    """rkt's arguments for the one command that starts the node service: the pod `node` on
    the host network, as the tutorial's installation ran calico/node."""
    argv = [
        "run", "--detach", "--net=host",
        f"--uuid-file-save={opts.run_dir / POD_UUID}",
        "calico/node", f"--exec={calico_node}", "--",
        "--name", opts.name,
        "--ip", opts.ip,
        "--ip-autodetection-method", opts.method,
        "--backend", opts.backend,
        "--run-dir", str(opts.run_dir),
        "--cni-bin-dir", opts.cni_bin_dir,
        "--state-file", str(opts.run_dir / SERVICE_STATE),
    ]  # fmt: skip
    if opts.as_number:
        argv += ["--as", opts.as_number]
    return argv


@dataclass(frozen=True)
class Progress:
    """How far a starting node service got: `done` (healthy), `error` (give up with this
    line), or neither (keep waiting; `why` says for what)."""

    done: bool
    error: str | None
    why: str


def judge_start(
    state: dict[str, Any], service_alive: bool, agent_alive: bool, health_verdict: Any
) -> Progress:
    """From the service's state file, whether its pids live, and the agent's health."""
    if state.get("phase") == "failed":
        return Progress(False, state.get("error") or "calico-node's start-up failed", "failed")
    if state and not service_alive:
        return Progress(False, "calico-node exited during start-up (see rkt status)", "exited")
    if not state:
        return Progress(False, None, "calico-node has not written its state yet")
    if state.get("phase") != "running":
        return Progress(False, None, f"start-up: {state.get('phase') or 'starting'}")
    if not agent_alive:
        return Progress(False, None, "calico-agent is starting")
    if health_verdict is None or not health_verdict.healthy:
        return Progress(False, None, getattr(health_verdict, "reason", "no health yet"))
    return Progress(True, None, "healthy")


def render_peers(peers: Sequence[Any]) -> str:
    """Calico's boxed BGP peers table (calico.bgp.PeerStatus rows)."""
    head = ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]
    rows = [[p.peer_address, p.peer_type, p.state, p.since, p.info] for p in peers]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str], centre: bool = False) -> str:
        fit = [c.center(w) if centre else c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        return "| " + " | ".join(fit) + " |"

    return "\n".join([rule, line(head, centre=True), rule, *(line(r) for r in rows), rule])


def render_programs(state: dict[str, Any], alive: dict[str, bool]) -> str:
    """One line per supervised program: `calico-agent  running (pid 123, 0 restarts)`."""
    out = []
    for name, rec in sorted((state.get("programs") or {}).items()):
        if alive.get(name):
            what = f"running (pid {rec.get('pid')}, {int(rec.get('restarts') or 0)} restarts)"
        else:
            last = rec.get("last_exit")
            what = f"{rec.get('state') or 'not running'}" + (f": {last}" if last else "")
        out.append(f"  {name:<14}{what}")
    return "\n".join(out)


# ---------------------------------------------------------------- the host


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(record: dict[str, Any]) -> bool:
    from kernel.proc import same_process

    return same_process(record.get("pid"), record.get("starttime"))


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise CliError(f"calicoctl node {what} must be run as root")


def _progress(rdir: Path) -> Progress:
    from calico.health import assess

    state = _read_json(rdir / SERVICE_STATE)
    agent = (state.get("programs") or {}).get("calico-agent") or {}
    agent_alive = _alive(agent)
    verdict = assess(_read_json(rdir / HEALTH), writer_alive=agent_alive) if agent_alive else None
    return judge_start(state, _alive(state), agent_alive, verdict)


def _rkt(
    argv: list[str], env: dict[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [program("rkt"), *argv], capture_output=True, text=True, env=env, timeout=timeout
        )
    except FileNotFoundError:
        raise CliError("calicoctl node run: rkt not found") from None
    except subprocess.TimeoutExpired:
        raise CliError(
            f"calicoctl node run: rkt {argv[0]} did not answer in {timeout:.0f} s"
        ) from None


def _remove_exited_node_pods(env: dict[str, str]) -> None:
    """An exited `node` pod of a service that died: removed, so the new one is the only
    one `rkt list` shows."""
    listing = _rkt(["list", "--format=json"], env)
    try:
        pods = json.loads(listing.stdout or "[]")
    except ValueError:
        return
    for pod in pods:
        if pod.get("app_names") == ["node"] and pod.get("state") in ("exited", "garbage"):
            _rkt(["rm", pod["name"]], env)


def cmd_run(cli: Any) -> int:
    from calico.errors import NotFound, Unavailable
    from calico.resources import Node

    a = cli.args
    _require_root("run")
    rdir = run_dir()
    opts = RunOptions(
        name=node_name(a.name),
        ip=a.ip,
        method=a.ip_autodetection_method,
        as_number=a.as_number,
        backend=a.backend,
        cni_bin_dir=cni_bin_dir(a.cni_bin_dir),
        run_dir=rdir,
    )
    state = _read_json(rdir / SERVICE_STATE)
    if state and _alive(state) and not state.get("stopping"):
        if state.get("node") != opts.name:
            raise CliError(
                f"calicoctl node run: this host already runs calico-node as "
                f"{state.get('node')!r} (pid {state['pid']}); stop it first"
            )
        uuid = (rdir / POD_UUID).read_text().strip() if (rdir / POD_UUID).exists() else "?"
        cli.out(
            f"calico-node is already running on {opts.name} (pid {state['pid']}, pod {uuid});"
            f" nothing changed\n"
        )
        return 0
    try:
        rdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"calicoctl node run: cannot make {rdir}: {exc.strerror}") from None

    # etcd reachable, and the settings it was reached with passed on to the service.
    try:
        cli.datastore().get(Node, opts.name)
    except NotFound:
        pass
    except Unavailable as exc:
        raise cli.unavailable(exc) from None
    env = {**os.environ, **cli.settings().env()}

    _remove_exited_node_pods(env)
    for stale in (SERVICE_STATE, POD_UUID):
        (rdir / stale).unlink(missing_ok=True)
    started = _rkt(service_argv(opts, program("calico-node")), env)
    if started.returncode != 0:
        why = (started.stderr or started.stdout).strip().splitlines()
        raise CliError(f"calicoctl node run: rkt run failed: {why[-1] if why else '?'}")
    uuid = (rdir / POD_UUID).read_text().strip() if (rdir / POD_UUID).exists() else ""

    deadline = time.monotonic() + a.wait
    while True:
        p = _progress(rdir)
        if p.done:
            break
        if p.error or time.monotonic() > deadline:
            why = p.error or f"not healthy within {a.wait:g} s ({p.why})"
            if p.error and uuid:  # nothing left behind by a start-up that failed
                _rkt(["stop", "--force", uuid], env)
                _rkt(["rm", "--force", uuid], env)
            raise CliError(f"calicoctl node run: {opts.name}: {why}")
        time.sleep(0.05)
    state = _read_json(rdir / SERVICE_STATE)
    asn = f", AS {opts.as_number}" if opts.as_number else ""
    cli.out(
        f"calico-node started on {opts.name}: address {state.get('address')}{asn}, backend "
        f"{opts.backend}, pod {uuid}\n"
    )
    return 0


def cmd_status(cli: Any) -> int:
    from calico.bgp import parse_birdc_protocols

    _require_root("status")
    rdir = run_dir()
    state = _read_json(rdir / SERVICE_STATE)
    if not state or not _alive(state):
        cli.out("calico-node is not running on this host.\n")
        return 1
    programs = state.get("programs") or {}
    alive = {name: _alive(rec) for name, rec in programs.items()}
    cli.out(f"calico-node is running on {state.get('node') or '?'} (pid {state['pid']}).\n")
    cli.out(render_programs(state, alive) + "\n\n")
    backend = state.get("backend") or "direct"
    if backend != "bird":
        cli.out(f"BGP is off (backend {backend}: the agent routes to each remote block).\n")
        return 0
    birdc = os.environ.get("CALICO_BIRDC") or program("birdc")
    try:
        proc = subprocess.run(
            [birdc, "-s", str(rdir / BIRD_CONTROL), "show", "protocols"],
            capture_output=True, text=True, timeout=BIRDC_TIMEOUT,
        )  # fmt: skip
    except FileNotFoundError:
        raise CliError("calicoctl node status: birdc not found (install bird2)") from None
    except subprocess.TimeoutExpired:
        raise CliError(
            f"calicoctl node status: BIRD did not answer in {BIRDC_TIMEOUT:g} s"
        ) from None
    if proc.returncode != 0 or "Unable to connect" in proc.stdout:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise CliError(
            f"calicoctl node status: BIRD is not answering on {rdir / BIRD_CONTROL}: "
            f"{why[-1] if why else 'birdc failed'}"
        )
    peers = parse_birdc_protocols(proc.stdout)
    cli.out("IPv4 BGP status\n")
    cli.out((render_peers(peers) if peers else "No IPv4 peers found.") + "\n\n")
    cli.out("IPv6 BGP status\nNo IPv6 peers found.\n")
    return 0
