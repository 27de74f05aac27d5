"""`s` on a pod: a shell inside it, through the commands an operator would type.

The shell is `rkt enter UUID [CMD]` run on the pod's node by `calico-lab exec`: the console
suspends (Textual's App.suspend hands the terminal over), the shell runs in the terminal,
and the console resumes when it exits. The console never enters namespaces itself: it
reaches nodes only as programs and through the node API. Before the terminal is handed
over, `rkt enter UUID true` runs the same way with its output captured, so a wrong lab, a
node that is gone or a pod that is not running is one line in the console rather than a
message that flashes past in a suspended terminal.

$CALICO_POD_SHELL picks the command (split as a shell would; default: rkt enter's
/bin/sh), as $EDITOR picks the editor for `e`.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from calico.tools import program

CHECK_TIMEOUT = 20.0  # seconds; `calico-lab exec` + `rkt enter true` take about 0.3 s


def shell_command() -> list[str]:
    return shlex.split(os.environ.get("CALICO_POD_SHELL", ""))


def enter_argv(lab: str, node: str, uuid: str, command: list[str]) -> list[str]:
    """The command line that runs `command` (empty: the pod's /bin/sh) in pod `uuid`."""
    return [program("calico-lab"), "exec", "--name", lab, node, "--", "rkt", "enter", uuid,
            *command]  # fmt: skip


def check_enter(lab: str, node: str, uuid: str) -> str:
    """'' when a shell can be opened in the pod now, else the one line that says why."""
    try:
        proc = subprocess.run(
            enter_argv(lab, node, uuid, ["true"]),
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"rkt enter on {node} did not answer within {CHECK_TIMEOUT:g} s"
    except OSError as exc:
        return f"cannot run calico-lab: {exc}"
    if proc.returncode == 0:
        return ""
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"rkt enter exited with {proc.returncode}"
