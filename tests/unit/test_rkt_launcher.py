"""rkt/launcher.py: the `rkt` executable setup.sh installs runs rkt.cli under `python -S`,
says and exits what rkt says and exits, and loads nothing from site-packages (no root)."""

from __future__ import annotations

import os
import subprocess

from rkt.launcher import install, launcher_text


def run(exe: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=30, **kw)


def test_the_launcher_pins_the_interpreter_and_skips_site(tmp_path):
    text = launcher_text(python="/opt/py/bin/python", root="/src/calico-rkt")
    assert text.startswith("#!/opt/py/bin/python -S\n")
    assert "sys.path.insert(0, '/src/calico-rkt')" in text


def test_installed_rkt_answers_and_exits_as_rkt_does(tmp_path):
    exe = install(str(tmp_path))
    assert os.access(exe, os.X_OK) and not list(tmp_path.glob("*.tmp"))
    out = run(exe, "version")
    assert out.returncode == 0 and out.stdout == "rkt Version: 1.30.0 (calico-rkt subset)\n"
    # a usage error: one line on stderr, rkt's exit status 254
    bad = run(exe, "--dir", str(tmp_path / "d"), "frobnicate")
    assert bad.returncode == 254 and bad.stderr == "rkt: unknown command: frobnicate\n"
    # stdout through a pipe is flushed before the process ends (os._exit skips teardown)
    listed = run(exe, f"--dir={tmp_path / 'd'}", "list", "--format=json")
    assert listed.returncode == 0 and listed.stdout == "[]\n"


def test_it_runs_without_site_processing(tmp_path):
    """What the interpreter imports, as it reports it (PYTHONPROFILEIMPORTTIME): no `site`,
    no editable-install finder, and no `json`/`re`/`enum` on the way to a command."""
    exe = install(str(tmp_path))
    out = run(exe, "version", env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert out.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()}
    assert "rkt.cli" in imported
    assert not imported & {"site", "json", "re", "enum"}
    assert not [m for m in imported if m.startswith("__editable__")]
