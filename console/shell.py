"""Run commands "on" a lab node the way an operator would: through `calico-lab exec`.

The console's tutorial uses this CLI boundary rather than importing the lab, so what it
shows is exactly what a person typing the same command sees.
"""

from __future__ import annotations

import os
import subprocess

from calico.tools import program


class LabShell:
    """A tutorial Shell: node=None runs in the operator's namespace with the lab's env."""

    def __init__(self, lab: str | None = None, env: dict[str, str] | None = None):
        self.lab = lab
        self.env = {**os.environ, **(env or {})}
        if lab:
            self.env["CALICO_LAB"] = lab

    def __call__(
        self, node: str | None, argv: list[str], input: str | None = None, timeout: float = 30.0
    ) -> tuple[int, str]:
        if node is None:
            cmd = [program(argv[0]), *argv[1:]]
        else:
            cmd = [program("calico-lab"), "exec", node, "--", *argv]
        try:
            proc = subprocess.run(
                cmd,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or "") if isinstance(exc.stdout, str) else ""
            return 124, out + f"\n(timed out after {timeout:.0f} s)"
        except OSError as exc:
            return 127, str(exc)
        return proc.returncode, proc.stdout + proc.stderr
