"""`rkt enter [--app=NAME] UUID [CMD...]`: run a command inside a running pod, as rkt did.

The command joins the namespaces the pod's app lives in (those that differ from the
caller's: net and mnt for an image pod, net alone for a host-root pod on a pod network,
uts/ipc/pid too should a pod ever have its own), takes the app's root and working directory
and the app's environment (read from /proc/<app>/environ, so it is exactly what the app
got), then execs CMD (default /bin/sh). The namespaces, root and cwd are opened as fds from
/proc/<app> *before* the first setns: after the mount namespace changes, the caller's /proc
paths may name something else.

rkt's exit code is the command's: exec replaces this process, so nothing stands between the
terminal and the shell. Only a pid namespace needs a fork (setns(CLONE_NEWPID) moves the
children, not the caller); then rkt waits and passes the child's status on.

The decisions (is there a running pod, which app, which namespaces to join) are pure and
tested without root (`plan_enter`); `enter` is the thin edge that does the syscalls.
"""

from __future__ import annotations

import os
import sys

from kernel import ns as kns
from rkt.record import record
from rkt.state import RUNNING, PodState, StateError

# Joined in this order; mnt last, because after it /proc may be another /proc.
NS_ORDER = ("ipc", "uts", "net", "pid", "mnt")
NS_FLAGS = {
    "ipc": 0x08000000,  # CLONE_NEWIPC
    "uts": 0x04000000,  # CLONE_NEWUTS
    "net": kns.CLONE_NEWNET,
    "pid": 0x20000000,  # CLONE_NEWPID
    "mnt": kns.CLONE_NEWNS,
}
DEFAULT_CMD = ["/bin/sh"]


@record
class EnterPlan:
    pid: int  # the app's pid: where the namespaces, root, cwd and environment come from
    argv: list[str]
    namespaces: list[str]  # kinds to join, in NS_ORDER


def plan_enter(
    pod: PodState,
    state: str,
    app: str | None,
    cmd: list[str],
    ours: dict[str, int],
    theirs: dict[str, int],
) -> EnterPlan:
    """What `rkt enter` does for `pod` in effective `state`, given the namespace inodes of
    the caller (`ours`) and of the app (`theirs`). StateError, in words, when it cannot."""
    if state != RUNNING or pod.pid is None:
        raise StateError(
            f"pod {pod.uuid} is not running (state {state}): there is nothing to enter"
        )
    if app is not None and app != pod.app.name:
        raise StateError(f"pod {pod.uuid} has no app {app!r} (its app is {pod.app.name!r})")
    if not theirs:
        raise StateError(f"pod {pod.uuid}: its app (pid {pod.pid}) is gone")
    kinds = [k for k in NS_ORDER if k in theirs and theirs[k] != ours.get(k)]
    return EnterPlan(pid=pod.pid, argv=list(cmd) or list(DEFAULT_CMD), namespaces=kinds)


def namespace_inodes(pid: int | str) -> dict[str, int]:
    """kind -> inode of the namespaces of `pid` ({} when the process is gone)."""
    out: dict[str, int] = {}
    for kind in NS_ORDER:
        try:
            out[kind] = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        except FileNotFoundError:
            if kind == "mnt":
                return {}
        except PermissionError as exc:
            raise StateError(
                f"cannot look into process {pid}: {exc.strerror} (run as root)"
            ) from None
    return out


def app_environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        raw = f.read()
    env = {}
    for item in raw.split(b"\0"):
        k, eq, v = item.partition(b"=")
        if eq and k:
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env


def enter(plan: EnterPlan) -> int:
    """Join the app's namespaces, root and cwd; exec the command (returns only for a pid
    namespace, with the command's exit code, or on a failure: 127 and one line)."""
    # os.execvpe imports `warnings` to search PATH (os.get_exec_path): after the chroot the
    # standard library is out of reach, so it is loaded while it still can be.
    import warnings  # noqa: F401

    pid = plan.pid
    fds = {k: os.open(f"/proc/{pid}/ns/{k}", os.O_RDONLY | os.O_CLOEXEC) for k in plan.namespaces}
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cwd = os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    env = app_environ(pid)
    if "TERM" in os.environ:
        env["TERM"] = os.environ["TERM"]
    for kind in plan.namespaces:
        try:
            kns.setns(fds[kind], NS_FLAGS[kind])
        except OSError as exc:
            raise StateError(f"cannot enter the pod's {kind} namespace: {exc.strerror}") from None
        os.close(fds[kind])
    os.fchdir(root)
    os.chroot(".")
    os.fchdir(cwd)
    os.close(root)
    os.close(cwd)
    sys.stdout.flush()
    sys.stderr.flush()
    if "pid" in plan.namespaces:
        child = os.fork()
        if child == 0:
            _exec(plan.argv, env)
        _, status = os.waitpid(child, 0)
        return (
            os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        )
    return _exec(plan.argv, env)


def _exec(argv: list[str], env: dict[str, str]) -> int:
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        why = (
            "no such file or directory in the pod"
            if isinstance(exc, FileNotFoundError)
            else exc.strerror
        )
        sys.stderr.write(f"rkt: enter: cannot run {argv[0]!r}: {why}\n")
        sys.stderr.flush()
        os._exit(127)
    return 127  # not reached
