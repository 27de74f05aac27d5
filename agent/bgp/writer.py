"""Put a rendered bird.conf in place and have BIRD load it (`birdc configure`).

The file is written beside itself and renamed over (BIRD, restarted by its supervisor,
reads a whole file or the previous one), and only when the text changed; BIRD is told to
reconfigure until it has accepted the current text. A BIRD that does not answer, or that
refuses the text, is an error the agent reports in its health (`error`) and retries.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

from calico.tools import program

log = logging.getLogger("calico-agent")

CONFIG_NAME = "bird.conf"
CONTROL_NAME = "bird.ctl"
BIRDC_TIMEOUT = 10.0
STARTUP_GRACE = 3.0  # seconds the first configure waits for BIRD's socket to appear


def birdc_argv(control: Path, *command: str) -> list[str]:
    birdc = os.environ.get("CALICO_BIRDC") or program("birdc")
    return [birdc, "-s", str(control), *command]


def run_birdc(control: Path, *command: str, timeout: float = BIRDC_TIMEOUT) -> tuple[bool, str]:
    """(ok, output) of one birdc command; not ok with one line of why when BIRD is
    unreachable or says no."""
    try:
        proc = subprocess.run(
            birdc_argv(control, *command), capture_output=True, text=True, timeout=timeout
        )
    except FileNotFoundError:
        return False, "birdc not found (install bird2)"
    except subprocess.TimeoutExpired:
        return False, f"birdc {' '.join(command)}: no answer from BIRD in {timeout:.0f} s"
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        lines = [ln for ln in out.splitlines() if ln and not ln.startswith("BIRD ")]
        return False, " ".join(lines[-2:]) or f"birdc exited with status {proc.returncode}"
    return True, out


def write_atomically(path: Path, text: str) -> bool:
    """Write `text` to `path` unless it already holds it; True when written."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


class BirdWriter:
    """The agent's side of BIRD: `update(text)` after every calculation, `check()` on
    every full refresh. `error` is None while BIRD runs the current text."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.config = self.run_dir / CONFIG_NAME
        self.control = self.run_dir / CONTROL_NAME
        self.loaded: str | None = None  # the text BIRD last accepted
        self.error: str | None = None
        self.configures = 0
        self._first = True

    def update(self, text: str) -> bool:
        """Make BIRD run `text`; True when it does."""
        if text == self.loaded and self.error is None:
            return True
        try:
            if write_atomically(self.config, text):
                log.info("BIRD: wrote %s", self.config)
        except OSError as exc:
            return self._fail(f"cannot write {self.config}: {exc}")
        if self._first:
            self._first = False
            deadline = time.monotonic() + STARTUP_GRACE
            while not self.control.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        ok, out = run_birdc(self.control, "configure", f'"{self.config}"')
        if not ok:
            return self._fail(f"BIRD configure failed: {out}")
        if "Reconfigured" not in out and "Reconfiguration" not in out:
            return self._fail(f"BIRD configure: unexpected answer: {' '.join(out.split())}")
        self.configures += 1
        if self.error:
            log.info("BIRD: configured again after: %s", self.error)
        self.loaded, self.error = text, None
        return True

    def check(self) -> bool:
        """Whether BIRD still answers (it may have been restarted: it then read the file
        this writer left, so nothing needs reloading)."""
        if self.loaded is None:
            return self.error is None
        ok, out = run_birdc(self.control, "show", "status")
        if not ok:
            return self._fail(f"BIRD unreachable: {out}")
        if self.error:
            self.loaded = None  # configure again, to be sure it runs the current text
        return True

    def _fail(self, why: str) -> bool:
        if why != self.error:
            log.warning("%s", why)
        self.error = why
        return False
