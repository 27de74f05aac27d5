"""CNI errors as the spec defines them.

A plugin reports failure by printing one JSON object on stdout and exiting non-zero. The
runtime (rkt, libcni) decodes `code` to decide what to do next: 11 makes a libcni runtime
retry, 1 tells it to pick another spec version, anything else aborts the pod's network
setup. So the code matters as much as the text, and every failure path in `plugin/` ends in
a `CNIError` with a deliberate code.

Kept stdlib-only (json): the shim imports this on its own error paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Codes reserved by the spec (0.1.0 defined 1-2 and 100+, 0.4.0/1.0.0 the rest, 1.1.0 50-51).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
PLUGIN_NOT_AVAILABLE_LIMITED = 51

# Plugin-defined codes (the spec leaves 100 and above to plugins).
PLUGIN_FAILURE = 100  # generic: dataplane or datastore operation failed
ADDRESS_UNAVAILABLE = 101  # a requested IP is outside every pool or already in use
POOLS_EXHAUSTED = 102  # no free address in any usable pool
NO_POOLS = 103  # no enabled IPPool matches the request
DATASTORE_UNAVAILABLE = 104  # etcd could not be reached (after retries)

# Version put on an error when the request never got far enough to tell us the config's.
FALLBACK_VERSION = "1.1.0"

# Exit status for any error: the spec only asks for non-zero, libcni reads stdout either way.
ERROR_EXIT_CODE = 1


@dataclass
class CNIError(Exception):
    """A failure the runtime should see, with the spec's code and an operator-facing text."""

    code: int
    msg: str
    details: str = ""

    def __post_init__(self) -> None:
        # Exception.__init__ is bypassed by the dataclass; set args so str()/repr and
        # tracebacks show the message.
        Exception.__init__(self, self.code, self.msg, self.details)

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    def to_dict(self, cni_version: str | None = None) -> dict[str, object]:
        # `details` is optional in every spec version; libcni's decoder tags it omitempty.
        out: dict[str, object] = {
            "cniVersion": cni_version or FALLBACK_VERSION,
            "code": self.code,
            "msg": self.msg,
        }
        if self.details:
            out["details"] = self.details
        return out

    def to_json(self, cni_version: str | None = None) -> str:
        return json.dumps(self.to_dict(cni_version), indent=4) + "\n"


def error_reply(err: CNIError, cni_version: str | None = None) -> dict[str, object]:
    """The reply a handler gives the shim for a failure (same shape as a success reply)."""
    return {
        "exit_code": ERROR_EXIT_CODE,
        "stdout": err.to_json(cni_version),
        "stderr": f"{err}\n",
    }
