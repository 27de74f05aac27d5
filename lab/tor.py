"""The routed lab's ToR: BIRD in the router namespace, one eBGP session per node.

As in Calico's L3 fabric designs ("AS per compute server"): the ToR has its own AS
(`lab.topology.TOR_AS`), each node its own; the ToR learns every node's blocks, installs
them in the router namespace's kernel (so pod traffic between subnets is routed) and passes
them on to the other nodes with itself as the next hop. The lab stands in for the network,
so it knows the nodes and renders this configuration itself; the Calico side (BGPPeer,
BGPConfiguration) goes through the datastore like any operator's would.

`render_config` is pure (unit tested with `bird -p -c`); `start`/`stop`/`protocols` run
and ask the one BIRD process the lab started, by pid and by its control socket in the
lab's state dir.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from calico.bgp import BirdProtocol, parse_bgp_protocols
from lab import fabric
from lab.fabric import LabError

BIRD = "bird"
BIRDC = "birdc"
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Neighbor:
    name: str  # the node
    address: str  # the node's fabric address
    as_number: int
    local_address: str  # the router's address on the node's subnet


def protocol_name(node: str) -> str:
    """A BIRD protocol name for a node's session (letters, digits, underscores)."""
    return "node_" + re.sub(r"[^A-Za-z0-9_]", "_", node)


def render_config(
    *,
    router_id: str,
    local_as: int,
    neighbors: list[Neighbor],
    fabric_block: str,
    log_file: str | None = None,
) -> str:
    """BIRD 2 configuration of the ToR.

    Imports from a node anything but the fabric's own addresses (a node must not steal
    the lab's subnets) and a default route; exports every BGP route to every node; the
    kernel protocol installs the BGP routes into the router namespace's main table (and
    takes nothing from it: the connected subnets are the kernel's own)."""
    ipaddress.IPv4Address(router_id)
    block = ipaddress.IPv4Network(fabric_block)
    lines = [
        "# calico-lab ToR: rendered by lab/tor.py; `birdc configure` rereads it",
        f'log "{log_file}" all;' if log_file else "log stderr all;",
        f"router id {router_id};",
        "",
        "protocol device {",
        "  scan time 10;",
        "}",
        "",
        "filter from_node {",
        f"  if net ~ [ {block}+ ] then reject;",
        "  if net = 0.0.0.0/0 then reject;",
        "  accept;",
        "}",
        "",
        "protocol kernel {",
        "  ipv4 {",
        "    import none;",
        "    export where source = RTS_BGP;",
        "  };",
        "}",
        "",
        "template bgp node_peer {",
        f"  local as {local_as};",
        "  connect retry time 2;",
        "  error wait time 1, 10;",
        "  ipv4 {",
        "    import filter from_node;",
        "    export where source = RTS_BGP;",
        "  };",
        "}",
    ]
    for n in sorted(neighbors, key=lambda n: n.name):
        ipaddress.IPv4Address(n.address)
        ipaddress.IPv4Address(n.local_address)
        lines += [
            "",
            f"protocol bgp {protocol_name(n.name)} from node_peer {{",
            f'  description "{n.name}";',
            f"  neighbor {n.address} as {n.as_number};",
            f"  source address {n.local_address};",
            "}",
        ]
    return "\n".join(lines) + "\n"


def check_config(path: Path) -> None:
    """`bird -p -c`: parse only; LabError with BIRD's own message if it does not parse."""
    fabric.run([BIRD, "-p", "-c", str(path)])


# --- the process ---------------------------------------------------------------------


def start(netns: str, config: Path, socket: Path, log: Path, record) -> int:
    """Start BIRD in `netns`, in the foreground of its own session; `record(pid)` is
    called as soon as it runs (before waiting for its socket), so `down` can stop it
    after a crash. Returns the pid once `birdc` answers."""
    check_config(config)
    socket.unlink(missing_ok=True)
    argv = [
        "nsenter", f"--net={fabric.netns_path(netns)}", "--",
        BIRD, "-f", "-c", str(config), "-s", str(socket),
    ]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
    record(proc.pid)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise LabError(f"ToR BIRD exited with {proc.returncode}: {' / '.join(tail)}")
        if socket.exists() and _birdc(socket, "show status", timeout=2).returncode == 0:
            return proc.pid
        if time.monotonic() > deadline:
            raise LabError(f"ToR BIRD did not answer on {socket} within {START_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _birdc(socket: Path, command: str, timeout: float = 5.0) -> subprocess.CompletedProcess:
    return fabric.run([BIRDC, "-s", str(socket), *command.split()], check=False, timeout=timeout)


def protocols(socket: Path) -> list[BirdProtocol]:
    """The ToR's sessions now; LabError if its BIRD does not answer."""
    proc = _birdc(socket, "show protocols")
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split()) or f"exit {proc.returncode}"
        raise LabError(f"ToR birdc: {detail}")
    return parse_bgp_protocols(proc.stdout)


def routes(socket: Path) -> list[str]:
    """Networks the ToR has learned over BGP (`show route protocol ...` for all)."""
    proc = _birdc(socket, "show route where source = RTS_BGP")
    if proc.returncode != 0:
        raise LabError(f"ToR birdc: {' '.join((proc.stderr or proc.stdout).split())}")
    nets = []
    for line in proc.stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        try:
            nets.append(str(ipaddress.IPv4Network(first)))
        except ValueError:
            continue
    return nets
