"""`calico-lab`: a Calico cluster on one machine (see lab.cluster for what it makes).

    calico-lab up [--nodes N] [--name LAB] [--subnet CIDR] [--topology flat|routed]
                  [--subnets K] [--tor-bgp] [--ipip-mode Never|Always|CrossSubnet]
                  [--backend bird|direct]
                  [--etcd-members N] [--etcd-tls]
    calico-lab down [--name LAB]
    calico-lab status [--name LAB] [--json]
    calico-lab exec [--name LAB] NODE -- CMD...
    calico-lab env [--name LAB] [--node NODE]
    calico-lab list
    calico-lab tutorial [NAME] [--list] [--step KEY]

The lab name comes from --name, else $CALICO_LAB, else "calilab"; a new lab's state goes to
$CALICO_LAB_STATE/<lab> (default /var/lib/calico-lab/<lab>), and an existing lab is found
through /run/calico-lab/<lab> wherever its state is. Errors are one line on stderr
and a non-zero exit; `status` exits 3 when the lab is not up (as LSB init scripts do).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys

from calico.tools import program
from calico.tutorial import DEFAULT_TUTORIAL, TUTORIALS, Tutorial
from lab.cluster import DEFAULT_NODES, MAX_NODES, Lab, default_lab_name
from lab.fabric import LabError
from lab.topology import (
    BACKENDS,
    DEFAULT_SUBNETS,
    IPIP_MODES,
    MAX_SUBNETS,
    MIN_SUBNETS,
    TOPOLOGIES,
)

EXIT_NOT_RUNNING = 3


def _add_name(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        "-n",
        default=None,
        help="lab name (default: $CALICO_LAB or calilab)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calico-lab",
        description="A local Calico cluster: etcd, a fabric and N nodes as namespaces.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("up", help="make the lab, or repair its dead parts (a no-op if it is up)")
    _add_name(p)
    p.add_argument(
        "--nodes", type=int, default=DEFAULT_NODES, help=f"number of nodes (2; at most {MAX_NODES})"
    )
    p.add_argument(
        "--subnet",
        default=None,
        help="fabric subnet (default 10.213.0.0/24, or the next free /24 of 10.213.0.0/16);"
        " routed: the block its subnets are cut from",
    )
    p.add_argument(
        "--topology",
        choices=TOPOLOGIES,
        default="flat",
        help="flat: one L2 segment (default); routed: the nodes on several subnets behind a"
        " router that knows no pod routes (needs --tor-bgp or an --ipip-mode)",
    )
    p.add_argument(
        "--subnets",
        type=int,
        default=DEFAULT_SUBNETS,
        help=f"routed: how many node subnets ({MIN_SUBNETS}-{MAX_SUBNETS}, default"
        f" {DEFAULT_SUBNETS}); nodes are dealt round robin",
    )
    p.add_argument(
        "--tor-bgp",
        action="store_true",
        help="routed: the router runs BIRD as a BGP peer (ToR) of every node; no node mesh",
    )
    p.add_argument(
        "--ipip-mode",
        choices=IPIP_MODES,
        default="Never",
        help="the default IP pool's ipipMode (Never)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="bird",
        help="each node's routing: bird (BGP, default) or direct (the agent routes each"
        " remote block via its node; flat only)",
    )
    p.add_argument(
        "--etcd-members",
        type=int,
        default=1,
        metavar="N",
        help="etcd cluster members, each on its own port (1)",
    )
    p.add_argument(
        "--etcd-tls",
        action="store_true",
        help="make a CA, server and client certificates; etcd serves only TLS with client certs",
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")

    p = sub.add_parser("down", help="remove everything the lab made")
    _add_name(p)

    p = sub.add_parser("status", help="etcd health and each node's state")
    _add_name(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("exec", help="run a command on a node: calico-lab exec NODE -- CMD")
    _add_name(p)
    p.add_argument("node", help="node name (calico-01) or its number (1)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")

    p = sub.add_parser("env", help="print export lines for a shell (root namespace)")
    _add_name(p)
    p.add_argument("--node", default=None, help="print a node's environment instead")

    sub.add_parser("list", help="labs that are up")

    p = sub.add_parser("tutorial", help="run a guided walkthrough against the lab, checked")
    _add_name(p)
    p.add_argument(
        "tutorial", nargs="?", default=DEFAULT_TUTORIAL,
        help=f"which walkthrough (default {DEFAULT_TUTORIAL}; --list names them)",
    )  # fmt: skip
    p.add_argument("--list", action="store_true", help="name the walkthroughs and stop")
    p.add_argument("--step", action="append", help="run only these steps (by key), in order")
    return parser


def _print_status(st: dict) -> None:
    print(f"lab {st['name']}: {st['state']}  (state {st['state_dir']})")
    if st["state"] == "down":
        return
    e = st["etcd"]
    members = e.get("members") or []
    tls = "  TLS (client certificates)" if e.get("tls") else ""
    if len(members) <= 1:
        health = "healthy" if e["healthy"] else ("running, not healthy" if e["alive"] else "dead")
        print(
            f"etcd: {e['endpoints']}  nodes use {e['node_endpoints']}  pid {e['pid']}  {health}{tls}"
        )
    else:
        print(f"etcd: {len(members)} members{tls}  nodes use {e['node_endpoints']}")
        for m in members:
            health = (
                "healthy" if m["healthy"] else ("running, not healthy" if m["alive"] else "dead")
            )
            print(f"  {m['name']}: {m['endpoint']}  pid {m['pid']}  {health}")
    fab = st.get("fabric") or {}
    if fab.get("topology") == "routed":
        print(
            f"fabric: routed {fab['subnet']}, router netns {fab['netns']};"
            f" root link {fab['root_link']} {fab['root_address']}/{fab['root_prefixlen']}"
            f" via {fab['router_address']}; pool ipipMode {fab.get('ipip_mode', 'Never')}"
            + ("; ToR BGP peer" if fab.get("tor_bgp") else "")
        )
        for i, sub in enumerate(fab["subnets"]):
            members = [n for n, p in sorted(fab.get("nodes", {}).items()) if p["subnet"] == i]
            print(f"  subnet {sub['cidr']} {sub['bridge']} router {sub['router']}: "
                  + (", ".join(members) or "no nodes"))  # fmt: skip
    elif fab:
        print(
            f"fabric: {fab['subnet']}  bridge {fab['bridge_address']} in netns {fab['netns']}"
            f"  root link {fab['root_link']} {fab['root_address']}"
        )
        if fab.get("ipip_mode", "Never") != "Never":
            print(f"pool ipipMode {fab['ipip_mode']}")
    if st["nodes"]:
        rows = [("NODE", "NETNS", "ADDRESS", "NS", "SERVICE", "AGENT", "HEALTH")]
        for n in st["nodes"]:
            ns = "ok" if n["netns_present"] and n["mntns_present"] else "MISSING"
            a = n["agent"]
            if a["service_pid"] is None:
                service = "not started"
            else:
                service = f"pid {a['service_pid']} " + ("alive" if a["service_alive"] else "dead")
            agent = a["state"] + (f" pid {a['pid']}" if a["pid"] else "")
            if a["restarts"]:
                agent += f" ({a['restarts']} restarts)"
            health = a["health"]
            if a["health_age"] is not None:
                health += f" {a['health_age']:.0f}s"
            health += ", healthy" if a["healthy"] else ", UNHEALTHY"
            if a.get("rejected"):
                health += f", {a['rejected']} rejected"
            rows.append((n["name"], n["netns"], n["address"], ns, service, agent, health))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for line in st.get("why", []):
        print(f"unhealthy: {line}")
    if st["state"] == "broken":
        name = st["name"]
        print(f"calico-lab up --name {name} will: " + "; ".join(st.get("repairs") or ["rebuild"]))
        print(f"(or calico-lab down --name {name} removes it)")
    elif st["state"] == "degraded":
        print("nothing for calico-lab up to repair: the node services restart their agents")


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]


def bgp_lines(bgp: dict) -> list[str]:
    """Each node's BGP peers as its agent reports them (`GET /v1/bgp`), then the ToR's
    sessions (its birdc): what `calico-lab status` prints under the node table."""
    lines = []
    for node, info in sorted(bgp.get("nodes", {}).items()):
        if info.get("error") and "peers" not in info:
            lines.append(f"{node}: bgp: {info['error']}")
            continue
        backend = info.get("backend") or "?"
        running = "running" if info.get("running") else "NOT RUNNING"
        head = f"{node}: bgp backend {backend}"
        if backend != "direct":
            head += f", {running}"
            if info.get("router_id"):
                head += f", router id {info['router_id']}"
        peers = info.get("peers") or []
        up = sum(1 for p in peers if p.get("state") == "up")
        head += f", {up}/{len(peers)} peers up"
        if info.get("error"):
            head += f" ({info['error']})"
        lines.append(head)
        if peers:
            rows = [("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO")]
            rows += [
                (
                    str(p.get("peer_address", "")),
                    str(p.get("peer_type", "")),
                    str(p.get("state", "")),
                    str(p.get("since", "")),
                    str(p.get("info", "")),
                )
                for p in peers
            ]
            lines += _table(rows)
    t = bgp.get("tor")
    if t:
        if t.get("error"):
            lines.append(f"ToR (AS {t.get('as_number')}): {t['error']}")
        else:
            sessions = t.get("sessions") or []
            up = sum(1 for s in sessions if s["state"] == "up")
            lines.append(
                f"ToR (AS {t.get('as_number')}): {up}/{len(sessions)} sessions up,"
                f" {len(t.get('routes') or [])} routes learned"
            )
            if sessions:
                rows = [("SESSION", "NODE", "STATE", "SINCE", "INFO")]
                rows += [
                    (s["name"], s["node"], s["state"], s["since"], s["info"]) for s in sessions
                ]
                lines += _table(rows)
    return lines


def _exports(env: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def cmd_up(args) -> int:
    lab = Lab(args.name)
    st = lab.up(
        nodes=args.nodes,
        subnet=args.subnet,
        etcd_members=args.etcd_members,
        etcd_tls=args.etcd_tls,
        topology=args.topology,
        subnets=args.subnets,
        tor_bgp=args.tor_bgp,
        ipip_mode=args.ipip_mode,
        backend=args.backend,
    )
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    _print_status(st)
    if st["already_up"]:
        print(f"lab {lab.name} was already up")
    elif st.get("repaired"):
        print(f"repaired in {st['seconds']:.2f}s: " + "; ".join(st["repaired"]))
    else:
        print(f"up in {st['seconds']:.2f}s")
    name = "" if lab.name == default_lab_name() else f" --name {lab.name}"
    print(f'next: calico-lab exec{name} calico-01 -- ip addr;  eval "$(calico-lab env{name})"')
    return 0


def cmd_down(args) -> int:
    lab = Lab(args.name)
    res = lab.down()
    if res["removed"]:
        print(f"lab {lab.name} removed in {res['seconds']:.2f}s")
    else:
        print(f"lab {lab.name} was not there")
    return 0


def cmd_status(args) -> int:
    lab = Lab(args.name)
    st = lab.status()
    if st["state"] != "down":
        st["bgp"] = lab.bgp()
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        _print_status(st)
        for line in bgp_lines(st.get("bgp") or {}):
            print(line)
    return 0 if st["state"] == "up" else EXIT_NOT_RUNNING


def cmd_exec(args) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise LabError("usage: calico-lab exec NODE -- CMD...")
    lab = Lab(args.name)
    argv = lab.exec_argv(args.node, cmd)
    env = {**os.environ, **lab.node_env(args.node)}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]}: {exc}") from exc
    return 127  # not reached


def cmd_env(args) -> int:
    lab = Lab(args.name)
    env = lab.node_env(args.node) if args.node else lab.root_env()
    sys.stdout.write(_exports(env))
    return 0


def cmd_list(args) -> int:
    for name in Lab.find_running():
        print(name)
    return 0


def cmd_tutorial(args) -> int:
    """Each step: its title, the commands, what was seen; stop at the first failure."""
    if args.list:
        for name, spec in TUTORIALS.items():
            print(f"{name:<14}{spec.title} ({len(spec.steps)} steps)")
        return 0
    if args.tutorial not in TUTORIALS:
        raise LabError(f"unknown tutorial {args.tutorial!r} (tutorials: {', '.join(TUTORIALS)})")
    lab = Lab(args.name)
    if lab.status()["state"] != "up":
        raise LabError(f"lab {lab.name} is not up (calico-lab up --name {lab.name})")
    nodes = tuple(lab.nodes)
    if len(nodes) < 2:
        raise LabError("the walkthrough needs two nodes (calico-lab up --nodes 2)")

    def shell(node, argv, input=None, timeout=30.0):
        if node is None:
            env = {**os.environ, **lab.root_env()}
            argv = [program(argv[0]), *argv[1:]]  # calicoctl & co., from the venv
            proc = subprocess.run(
                argv, input=input, capture_output=True, text=True, timeout=timeout, env=env
            )
        else:
            proc = lab.exec(node, argv, input=input, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr

    tut = Tutorial.named(args.tutorial, nodes[:2])
    print(f"tutorial {tut.name}: {tut.spec.title}")
    keys = [s.key for s in tut.steps]
    wanted = args.step or keys
    unknown = [k for k in wanted if k not in keys]
    if unknown:
        raise LabError(f"unknown step {unknown[0]!r} (steps: {', '.join(keys)})")
    for key in wanted:
        i = keys.index(key)
        step = tut.steps[i]
        print(f"== {i + 1}. {step.title}")
        for cmd in step.commands:
            print(f"   $ {cmd}")
        sys.stdout.flush()
        result = tut.run_step(i, shell)
        for line in result.seen.splitlines():
            print(f"   | {line}")
        print(f"   {'PASS' if result.ok else 'FAIL'} ({result.seconds:.1f} s)")
        sys.stdout.flush()
        if not result.ok:
            print(f"calico-lab: tutorial step {key!r} failed", file=sys.stderr)
            return 1
    print(f"tutorial {tut.name}: every step passed")
    return 0


COMMANDS = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "exec": cmd_exec,
    "env": cmd_env,
    "list": cmd_list,
    "tutorial": cmd_tutorial,
}


def _terminate(signum, frame):
    # SIGTERM during `up` or `down` unwinds like Ctrl-C, so `up` removes what it made.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        # `calico-lab status | head -1`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except LabError as exc:
        print(f"calico-lab: {exc}", file=sys.stderr)
        return 1
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"calico-lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("calico-lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
