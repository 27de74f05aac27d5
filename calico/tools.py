"""Where this project's own programs are: beside the running Python (the venv), which need
not be on PATH (CI runs `.venv/bin/python -m pytest`), else wherever PATH finds them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def program(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)
