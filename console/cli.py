"""calico-console: browse a Calico-on-rkt cluster live, from etcd and the node agents.

`calico-console` with no arguments opens the running local lab (and offers to start one if
there is none); `--etcd-endpoints` or `ETCD_ENDPOINTS` opens any cluster, with TLS from
`--etcd-ca-cert-file/--etcd-cert-file/--etcd-key-file` or Calico's ETCD_*_FILE variables.

This module imports no Textual: the console's etcd follower starts (console/sync.py,
console/follower_process.py) before Textual and the app are imported, so the first
listing is read while they load.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

TLS_VARS = ("ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE")


def find_lab_endpoints() -> tuple[str, str] | None:
    """(lab name, etcd endpoints) of a running local lab, asked of the `calico-lab` CLI."""
    from calico.tools import program

    try:
        names = subprocess.run(
            [program("calico-lab"), "list"], capture_output=True, text=True, timeout=10
        )
        # the lab `calico-lab` itself would pick first ($CALICO_LAB, else its default
        # "calilab"), then any other: with test labs about, the console opens the one
        # `calico-lab up` just started
        preferred = os.environ.get("CALICO_LAB") or "calilab"
        for name in sorted(names.stdout.split(), key=lambda n: n != preferred):
            env = subprocess.run(
                [program("calico-lab"), "env", "--name", name],
                capture_output=True,
                text=True,
                timeout=10,
            )
            found = None
            for line in env.stdout.splitlines():
                var, _, value = line.removeprefix("export ").partition("=")
                if var == "ETCD_ENDPOINTS":
                    found = name, shlex.split(value)[0]
                elif var in TLS_VARS:  # a TLS lab: its client certificate, for us and our children
                    os.environ[var] = shlex.split(value)[0]
            if found:
                return found
    except (OSError, subprocess.SubprocessError):
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calico-console", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--etcd-endpoints", help="etcd to open (default: ETCD_ENDPOINTS, else the running lab)"
    )
    for var in TLS_VARS:
        flag = "--" + var.lower().replace("_", "-")
        parser.add_argument(flag, metavar="FILE", help=f"etcd TLS (default: ${var})")
    parser.add_argument(
        "--read-only", action="store_true", help="hide everything that changes the cluster"
    )
    parser.add_argument("--cluster-name", default="", help=argparse.SUPPRESS)  # web sessions
    from console import web

    web.add_arguments(parser)
    args = parser.parse_args(argv)
    # TLS flags become the environment: the console's datastore connections and the
    # calicoctl steps it runs (the tutorial) all read it.
    for var in TLS_VARS:
        value = getattr(args, var.lower())
        if value:
            os.environ[var] = value
    endpoints = args.etcd_endpoints or os.environ.get("ETCD_ENDPOINTS")
    if endpoints:
        from calico.config import ConfigError, resolve_settings

        try:
            resolve_settings(endpoints)
        except ConfigError as exc:
            print(f"calico-console: {exc}", file=sys.stderr)
            return 2
    name = args.cluster_name
    if not endpoints:
        found = find_lab_endpoints()
        if found is None:
            if sys.stdin.isatty():
                answer = input("No local lab is running. Start one now (calico-lab up)? [Y/n] ")
                if answer.strip().lower() in ("", "y", "yes"):
                    subprocess.run(["calico-lab", "up"], check=False)
                    found = find_lab_endpoints()
            if found is None:
                print(
                    "calico-console: no cluster: start a lab (calico-lab up) or pass --etcd-endpoints",
                    file=sys.stderr,
                )
                return 1
        name, endpoints = found
    if args.web:  # every session a console of its own on the cluster resolved here
        return web.serve(
            ["--etcd-endpoints", endpoints, "--cluster-name", name or endpoints],
            cluster=name or endpoints,
            host=args.host,
            port=args.port,
            token=args.token,
            max_sessions=args.max_sessions,
            read_only=args.read_only or not args.allow_changes,
        )
    # The follower's process starts now, before Textual and the app are imported (~250 ms),
    # so the cluster is being read while they load.
    from console.sync import EtcdFollower

    follower = EtcdFollower(endpoints)
    follower.source.start()
    from console.app import CalicoConsole

    CalicoConsole(
        endpoints=endpoints,
        cluster_name=name or endpoints,
        read_only=args.read_only,
        follower=follower,
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
