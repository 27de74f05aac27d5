"""calicoctl: manage Calico v3 resources and IPAM in etcd.

    calicoctl get profiles
    calicoctl get wep -A -o wide
    calicoctl get profile network1 -o yaml > p.yaml
    calicoctl apply -f p.yaml
    calicoctl create -f pools.yaml --skip-exists
    calicoctl delete profile network1
    calicoctl ipam show | check | release
    calicoctl node run --name calico-01 | status
    calicoctl label wep NAME team=red      calicoctl patch profile P -p '{...}'
    calicoctl apply --dry-run -f p.yaml    (what-if: the pairs whose verdict would change)
    calicoctl flows -f --verdict DENIED --not --to-port 53 -o json | jq .dst

This file builds the argument parser from each command group's `register(sub, common)`
(calicoctl/*_commands.py: resource, ipam, node, whatif, flows) and runs the chosen command.
Every failure is one line on stderr and exit status 1; `--debug` adds the traceback of an
unexpected error.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from calico.errors import Unavailable
from calicoctl.context import ArgParser, Cli, CliError

# The command groups, in the order --help lists them, and the commands each registers.
# Only the group of the command given is imported and registered: importing all of them
# (datetime, threading, dataclasses, subprocess, ...) cost `calicoctl get` ~20 ms. No
# command, --help before it, or a word not listed here builds the whole parser, so a
# stale table costs speed, never behaviour (tests/unit/test_calicoctl_startup.py checks
# it against what the groups register).
GROUPS: dict[str, tuple[str, ...]] = {
    "resource_commands": ("get", "create", "apply", "replace", "delete", "version"),
    "ipam_commands": ("ipam",),
    "node_commands": ("node",),
    "whatif_commands": ("label", "patch"),
    "flows_commands": ("flows",),
}
_GROUP_OF = {command: group for group, commands in GROUPS.items() for command in commands}
# Top-level options that take a value (the word after them is not the command).
_VALUE_OPTIONS = (
    "-c",
    "--config",
    "--etcd-endpoints",
    "--etcd-ca-cert-file",
    "--etcd-cert-file",
    "--etcd-key-file",
)


# Commands that, run as the program, leave without the interpreter's teardown once their
# output is flushed: freeing every module and object cost `get` ~5 ms of a ~40 ms budget.
# Only commands that leave no thread, child process or open file behind.
QUICK_EXIT = ("get",)


def command_group(argv: list[str]) -> str | None:
    """The group registering the command in `argv` (None: build every group)."""
    return _GROUP_OF.get(command_word(argv) or "")


def command_word(argv: list[str]) -> str | None:
    """The command in `argv`, found the way argparse will: options before it, with their
    values (abbreviated too), skipped; None when there is none or help comes first."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if (
            arg == "--"
            or arg in ("-h", "--help")
            or (arg.startswith("--h") and "--help".startswith(arg))
        ):
            return None
        if arg.startswith("--"):
            name = arg.split("=", 1)[0]
            skip = "=" not in arg and any(o.startswith(name) for o in _VALUE_OPTIONS[1:])
            continue
        if arg.startswith("-") and arg != "-":
            if arg[1:2] == "h":
                return None  # -h, alone or first in a cluster of short options
            skip = arg == "-c"  # -cFILE carries its value
            continue
        return arg
    return None


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options accepted before and after the command; `suppress` keeps a subcommand from
    resetting what was given before it."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-c", "--config", default=default, metavar="FILE",
        help="calicoctl config file (default /etc/calico/calicoctl.cfg, or $CALICOCTL_CONFIG)",
    )  # fmt: skip
    parser.add_argument(
        "--etcd-endpoints", default=default, metavar="URLS",
        help="etcd endpoints, e.g. http://127.0.0.1:2379 (default $ETCD_ENDPOINTS, then the config file)",
    )  # fmt: skip
    for flag, var in (
        ("--etcd-ca-cert-file", "ETCD_CA_CERT_FILE"),
        ("--etcd-cert-file", "ETCD_CERT_FILE"),
        ("--etcd-key-file", "ETCD_KEY_FILE"),
    ):
        parser.add_argument(
            flag, default=default, metavar="FILE",
            help=f"etcd TLS: default ${var}, then the config file",
        )  # fmt: skip
    parser.add_argument(
        "--debug", action="store_true", default=default,
        help="show the traceback of an unexpected error",
    )  # fmt: skip


def build_parser(group: str | None = None, command: str | None = None) -> argparse.ArgumentParser:
    """calicoctl's parser: every command group, or only `group` (see GROUPS), or only
    `command` of it when the group can build one alone."""
    parser = ArgParser(
        prog="calicoctl",
        description="Manage Calico v3 resources in etcd.",
        epilog="Kinds: profile, ippool, node, workloadendpoint (wep), networkpolicy, "
        "globalnetworkpolicy (gnp); any case, singular or plural.",
    )
    _common_options(parser, suppress=False)
    common = ArgParser(add_help=False)
    _common_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgParser)
    for name in [group] if group else GROUPS:
        module = import_module(f"calicoctl.{name}")
        # A group may build one command's parser alone (register_one): only that one runs.
        one = getattr(module, "register_one", None)
        if group and command and one is not None:
            one(sub, common, command)
        else:
            module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """calicoctl with `argv` (default: the program's arguments); the exit status."""
    code = _main(argv)
    if argv is None and command_word(sys.argv[1:]) in QUICK_EXIT:
        _quick_exit(code)
    return code


def _quick_exit(code: int) -> None:
    """Flush what was printed, then end the process at once (os._exit)."""
    import os

    try:
        sys.stdout.flush()
    except BrokenPipeError:  # `calicoctl get ... | head`
        code = code or 1
    except OSError as exc:  # a full disk, say: not silently
        Cli.err(f"calicoctl: cannot write the output: {exc.strerror or exc}")
        code = code or 1
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    cli: Cli | None = None
    words = sys.argv[1:] if argv is None else argv
    debug = "--debug" in words
    try:
        word = command_word(words)
        parser = build_parser(_GROUP_OF.get(word or ""), word)
        args = parser.parse_args(argv)
        debug = bool(getattr(args, "debug", False))
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 1
        cli = Cli(args)
        return args.func(cli)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except CliError as exc:
        Cli.err(exc.message)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `calicoctl get ... | head`
        try:
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - silence the final flush
        except OSError:
            pass
        return 1
    except Exception as exc:
        if isinstance(exc, Unavailable) and cli is not None:
            Cli.err(cli.unavailable(exc).message)
            return 1
        if debug:
            import traceback

            traceback.print_exc()
        Cli.err(f"calicoctl: unexpected error: {type(exc).__name__}: {exc} (rerun with --debug)")
        return 1
    finally:
        if cli is not None:
            cli.close()


if __name__ == "__main__":
    sys.exit(main())
