"""Build `kernel/_syscalls.c` into an extension module beside it, for this Python.

    python -m kernel.build_syscalls

kernel/ns.py then makes its namespace syscalls through it instead of ctypes (the reason and
the figures are in the C file). Without a C compiler or the Python headers the build is
skipped with one line on stderr and exit status 0: everything still works through ctypes,
only `rkt run` is ~1.5 ms slower. scripts/setup.sh runs this after the venv is made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "_syscalls.c")


def find_compiler() -> str | None:
    """$CC, else cc or gcc on PATH (plugin/build_launcher.py builds with the same one)."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def target() -> str:
    return os.path.join(HERE, "_syscalls" + sysconfig.get_config_var("EXT_SUFFIX"))


def build(cc: str | None = None) -> str | None:
    """Compile the module; None on success, else why not (nothing is left half-written)."""
    cc = cc or find_compiler()
    if not cc:
        return "no C compiler (cc)"
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        return f"no Python headers ({include}/Python.h)"
    out = target()
    tmp = f"{out}.{os.getpid()}.tmp"
    cmd = [cc, "-O2", "-shared", "-fPIC", f"-I{include}", "-o", tmp, SOURCE]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cc}: {exc}"
    if proc.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        lines = proc.stderr.strip().splitlines()
        return f"{cc} failed: {lines[0] if lines else f'exit status {proc.returncode}'}"
    os.replace(tmp, out)  # a process loading the module sees the old file or the new one
    return None


def main() -> int:
    why = build()
    if why:
        print(f"kernel._syscalls not built ({why}): namespaces go through ctypes", file=sys.stderr)
        return 0
    print(target())
    return 0


if __name__ == "__main__":
    sys.exit(main())
