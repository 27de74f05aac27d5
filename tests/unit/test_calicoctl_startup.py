"""calicoctl imports only what the command given needs: the table of command groups is
what the groups register, the command is found the way argparse finds it, and `get`
imports neither gRPC nor the resource classes (a subprocess: a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from calicoctl import cli


def commands_of(group: str | None, command: str | None = None) -> list[str]:
    parser = cli.build_parser(group, command)
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


def test_the_groups_table_is_what_each_group_registers():
    for group, commands in cli.GROUPS.items():
        assert tuple(commands_of(group)) == commands, group
    assert commands_of(None) == [c for cs in cli.GROUPS.values() for c in cs]


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "wep", "-A", "-o", "wide"],
        ["get", "-f", "x.yaml", "-n", "ns1"],
        ["apply", "-f", "-", "--dry-run"],
        ["create", "-f", "p.yaml", "--skip-exists"],
        ["replace", "-f", "p.yaml", "--skip-not-exists"],
        ["delete", "profile", "a", "b"],
        ["--debug", "version"],
    ],
)
def test_one_command_alone_parses_as_in_the_whole_parser(argv):
    word = cli.command_word(argv)
    assert commands_of("resource_commands", word) == [word]

    def parsed(parser):
        args = vars(parser.parse_args(argv))
        func = args.pop("func")  # the same command (apply's and create's are closures)
        cells = [c.cell_contents for c in func.__closure__ or ()]
        return args, func.__qualname__, cells

    assert parsed(cli.build_parser("resource_commands", word)) == parsed(cli.build_parser())


@pytest.mark.parametrize(
    "argv, group",
    [
        (["get", "profiles"], "resource_commands"),
        (["--etcd-endpoints", "http://x:1", "get"], "resource_commands"),
        (["--etcd-endpoints=http://x:1", "ipam", "show"], "ipam_commands"),
        (["-c", "get", "node", "status"], "node_commands"),  # -c takes "get" as its file
        (["-cfile", "flows"], "flows_commands"),
        (["--etcd-end", "ipam", "label"], "whatif_commands"),  # abbreviated, as argparse allows
        (["--debug", "patch"], "whatif_commands"),
        (["--help", "get"], None),  # the top-level help lists every command
        (["-h"], None),
        (["--he"], None),
        ([], None),
        (["bogus"], None),  # the error lists every command
        (["--", "get"], None),
    ],
)
def test_the_command_is_found_as_argparse_finds_it(argv, group):
    assert cli.command_group(argv) == group


def test_help_and_errors_are_those_of_the_whole_parser(capsys):
    assert cli.main(["bogus"]) == 1
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "'flows'" in err and "'get'" in err


def test_get_imports_neither_grpc_nor_the_resource_classes():
    code = (
        "import sys\n"
        "from calicoctl.cli import main\n"
        "rc = main(['get', 'profiles', '--etcd-endpoints', 'http://127.0.0.1:9'])\n"
        "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('grpc', 'pyetcd', 'google', 'yaml') or m in ('calico.resources', 'calico.datastore')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "1 []", proc.stdout + proc.stderr
    assert proc.stderr == "etcd unavailable at http://127.0.0.1:9: connection refused\n"
