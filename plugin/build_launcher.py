"""Install `calico` and `calico-ipam` into a CNI bin dir, as fast to exec as this machine allows.

With a C compiler: `launcher.c` compiled into `<bin>/calico` (and the same file as
`<bin>/calico-ipam`; it tells the two apart by argv[0]). It forwards each exec to the node
agent in ~1 ms, where `python -S` needs ~16 ms only to start. Beside it, `.calico-py` and
`.calico-ipam-py` (the `plugin.shim.launcher` scripts): the C launcher execs them whenever
the agent is not listening, so the in-process fallback works exactly as before.

Without one (or if the build fails): the Python launchers themselves become `<bin>/calico`
and `<bin>/calico-ipam`, and one line on stderr says so.

    python -m plugin.build_launcher BIN_DIR
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kernel.build_syscalls import find_compiler
from plugin.shim import launcher

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("launcher.c")
PLUGINS = ("calico", "calico-ipam")


def fallback_name(plugin: str) -> str:
    """The Python launcher's file name beside the C one (launcher.c execs this name)."""
    return f".{plugin}-py"


def compile_launcher(out: Path, cc: str | None = None) -> str | None:
    """Compile launcher.c into `out`; None on success, else why not."""
    cc = cc or find_compiler()
    if not cc:
        return "no C compiler (cc)"
    try:
        proc = subprocess.run(
            [cc, "-O2", "-o", str(out), str(SOURCE)], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cc}: {exc}"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return f"{cc} failed: {lines[0] if lines else f'exit status {proc.returncode}'}"
    return None


def _put(path: Path, write: Callable[[Path], object]) -> None:
    # Written beside the target and renamed over it: a runtime exec'ing the plugin during
    # an install sees the old file or the new one, never half of one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    write(tmp)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def install(
    bin_dir: str | os.PathLike[str],
    python: str | None = None,
    root: str | None = None,
    cc: str | None = None,
    native: bool = True,
) -> bool:
    """Install both plugins into `bin_dir`; True when they are the C launcher."""
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for plugin in PLUGINS:
        text = launcher(plugin, python, root)
        _put(bin_dir / fallback_name(plugin), lambda p, t=text: p.write_text(t))
    if native:
        built = bin_dir / f".calico-c.{os.getpid()}.tmp"  # nodes install side by side
        why = compile_launcher(built, cc)
        if why is None:
            for plugin in PLUGINS:
                _put(bin_dir / plugin, lambda p: shutil.copyfile(built, p))
            built.unlink()
            return True
        built.unlink(missing_ok=True)
        log.warning("CNI plugins: %s, installing the Python launchers in %s", why, bin_dir)
    for plugin in PLUGINS:
        text = launcher(plugin, python, root)
        _put(bin_dir / plugin, lambda p, t=text: p.write_text(t))
    return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    logging.basicConfig(format="%(message)s")
    native = install(args[0])
    print(f"{args[0]}: {'C' if native else 'Python'} launchers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
