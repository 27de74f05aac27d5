"""rkt's command line: flags, the app part of `run`, durations, one-line errors; no root."""

from __future__ import annotations

import os

import pytest

from rkt.cli import UsageError, main, parse_argv, parse_duration, parse_wait


def test_tutorial_run_line():
    p = parse_argv(["run", "--net=network1:IP=192.168.0.0", "docker://busybox", "--exec", "httpd",
                    "--", "-f", "-h", "/"])  # fmt: skip
    assert p.command == "run"
    assert p.flags["net"] == ["network1:IP=192.168.0.0"]
    assert p.positionals == ["docker://busybox"]
    assert p.app_flags == {"exec": "httpd"}
    assert p.app_args == ["-f", "-h", "/"]


def test_wget_line_with_equals_exec_and_global_flags():
    p = parse_argv(["--dir=/d", "run", "--local-config", "/c", "--net=network2", "--net", "docker://busybox",
                    "--exec=/bin/wget", "--", "-T", "3", "http://x/etc/passwd"])  # fmt: skip
    assert p.flags["dir"] == "/d" and p.flags["local-config"] == "/c"
    assert p.flags["net"] == ["network2", ""]  # a bare --net stands for "default"
    assert p.positionals == ["docker://busybox"]
    assert p.app_args == ["-T", "3", "http://x/etc/passwd"]


def test_bare_net_does_not_take_the_next_word():
    p = parse_argv(["run", "--net", "docker://busybox"])
    assert p.flags["net"] == [""] and p.positionals == ["docker://busybox"]


def test_bool_flags_and_lists():
    p = parse_argv(["list", "--no-legend", "--full=false", "--format=json"])
    assert p.flags == {"no-legend": True, "full": False, "format": "json"}
    p = parse_argv(["stop", "--force", "abc", "def"])
    assert p.flags["force"] is True and p.positionals == ["abc", "def"]
    assert parse_argv(["image", "list"]).command == "image list"
    assert parse_argv(["status", "--wait", "abc"]).flags["wait"] == "true"


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],
        ["run", "--nope", "img"],
        ["run", "img", "--bogus-app-flag"],
        ["run", "img", "second-image"],
        ["list", "--full=maybe"],
        ["image", "frob"],
        ["run", "img", "--exec"],
    ],
)
def test_usage_errors(argv):
    with pytest.raises(UsageError):
        parse_argv(argv)


@pytest.mark.parametrize(
    ("text", "secs"),
    [
        ("0", 0),
        ("0s", 0),
        ("30m", 1800),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("10s", 10),
        ("250ms", 0.25),
    ],
)
def test_durations(text, secs):
    assert parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("text", ["10", "m", "1x", ""])
def test_bad_durations(text):
    with pytest.raises(UsageError):
        parse_duration(text)


def test_wait_values():
    assert parse_wait("true") is None and parse_wait("false") == 0.0 and parse_wait("2s") == 2.0


def run_main(tmp_path, capsys, *argv):
    rc = main([f"--dir={tmp_path / 'dir'}", f"--local-config={tmp_path / 'cfg'}", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_errors_are_one_line_and_leave_nothing(tmp_path, capsys):
    for argv in (
        ["run", "docker://nosuchimage"],
        ["run", "--net=a:b:c", "docker://busybox"],
        ["run", "--net=nosuchnet", "docker://busybox"],
        ["status", "0123abcd"],
        ["rm", "0123abcd"],
        ["stop", "--force", "0123abcd"],
        ["run", "--insecure-options=bogus", "docker://busybox"],
    ):
        rc, out, err = run_main(tmp_path, capsys, *argv)
        assert rc != 0, argv
        assert out == "", argv
        assert len(err.strip().splitlines()) == 1 and err.startswith("rkt: "), (argv, err)
    pods = tmp_path / "dir" / "pods"
    assert not pods.exists() or os.listdir(pods) == []


def test_list_of_nothing(tmp_path, capsys):
    rc, out, _ = run_main(tmp_path, capsys, "list")
    assert rc == 0 and out.split() == [
        "UUID",
        "APP",
        "IMAGE",
        "NAME",
        "STATE",
        "CREATED",
        "STARTED",
        "NETWORKS",
    ]
    rc, out, _ = run_main(tmp_path, capsys, "list", "--no-legend")
    assert rc == 0 and out == ""
    rc, out, _ = run_main(tmp_path, capsys, "list", "--format=json")
    assert rc == 0 and out.strip() == "[]"


def test_run_takes_the_image_after_double_dash_even_if_it_looks_like_a_flag():
    from rkt.cli import parse_argv

    p = parse_argv(["run", "--detach", "--", "--help", "--exec=/bin/true", "--", "a", "-b"])
    assert p.positionals == ["--help"] and p.flags["detach"] is True
    assert p.app_flags == {"exec": "/bin/true"} and p.app_args == ["a", "-b"]


def test_rm_takes_force_and_double_dash():
    from rkt.cli import parse_argv

    p = parse_argv(["rm", "--force", "--", "abc"])
    assert p.flags["force"] is True and p.positionals == ["abc"]
