"""`rkt enter`'s decisions (rkt/enter.py's plan_enter) and its command line, without root."""

from __future__ import annotations

import pytest

from rkt.cli import parse_argv
from rkt.enter import plan_enter
from rkt.state import EXITED, RUNNING, AppState, PodState, StateError

OURS = {"ipc": 1, "uts": 2, "net": 3, "pid": 4, "mnt": 5}


def pod(pid: int | None = 99) -> PodState:
    return PodState(
        uuid="0123abcd-0000-4000-8000-000000000000",
        state=RUNNING,
        app=AppState(name="busybox", image_name="busybox", image_id="sha512-x"),
        created=0.0,
        pid=pid,
    )


def test_joins_only_the_namespaces_the_pod_has_of_its_own():
    image_pod = {**OURS, "net": 30, "mnt": 50}
    plan = plan_enter(pod(), RUNNING, None, [], OURS, image_pod)
    assert plan.namespaces == ["net", "mnt"]  # mnt last: /proc changes with it
    assert plan.argv == ["/bin/sh"] and plan.pid == 99
    host_root_on_a_network = {**OURS, "net": 30}
    assert plan_enter(
        pod(), RUNNING, None, ["ip", "a"], OURS, host_root_on_a_network
    ).namespaces == ["net"]
    every = {"ipc": 10, "uts": 20, "net": 30, "pid": 40, "mnt": 50}
    assert plan_enter(pod(), RUNNING, "busybox", ["id"], OURS, every).namespaces == [
        "ipc", "uts", "net", "pid", "mnt",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("state", "app", "theirs", "says"),
    [
        (EXITED, None, OURS, "is not running (state exited): there is nothing to enter"),
        (RUNNING, "nginx", OURS, "has no app 'nginx' (its app is 'busybox')"),
        (RUNNING, None, {}, "its app (pid 99) is gone"),
    ],
)
def test_refusals_say_why(state, app, theirs, says):
    with pytest.raises(StateError, match=None) as exc:
        plan_enter(pod(), state, app, [], OURS, theirs)
    assert says in str(exc.value)


def test_a_pod_without_a_recorded_app_pid_is_not_running():
    with pytest.raises(StateError, match="is not running"):
        plan_enter(pod(pid=None), RUNNING, None, [], OURS, OURS)


def test_command_line_flags_stop_at_the_uuid():
    p = parse_argv(["enter", "--app=busybox", "0123abcd", "sh", "-c", "ls --all"])
    assert p.command == "enter"
    assert p.get("app") == "busybox"
    assert p.positionals == ["0123abcd", "sh", "-c", "ls --all"]
    p = parse_argv(["--dir=/d", "enter", "0123abcd", "--", "ls", "-l"])
    assert p.positionals == ["0123abcd", "ls", "-l"] and p.get("dir") == "/d"
