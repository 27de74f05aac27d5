"""Pod state: the JSON record in ``<dir>/pods/<uuid>/pod.json`` and the rules for changing it.

Pure data and pure rules (state transitions, UUID generation and prefix resolution) live
here; the only I/O is the atomic read/write of one file, so that every command (run, the
pod supervisor, list, rm, gc) agrees on one format. Stdlib only: this is on `rkt run`'s
hot path.
"""

from __future__ import annotations

import os

from rkt import jsonc
from rkt.record import asdict, factory, record

TYPE_CHECKING = False  # typing costs import time on every `rkt run`
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "pod.json"
LOCK_FILE = "lock"
NETNS_FILE = "netns"
LOG_FILE = "log"

# rkt's pod states (pkg/pod), the subset this runtime goes through:
#   prepared  - pod dir made, networks being (or done being) set up, app not started yet
#   running   - the app runs under its supervisor
#   exited    - the app ended; networks still up (rkt tears them down at gc/rm, not at stop)
#   garbage   - gc tore the networks down; removed once the grace period has passed
#   deleting  - rm/gc is removing the pod directory
PREPARED = "prepared"
RUNNING = "running"
EXITED = "exited"
GARBAGE = "garbage"
DELETING = "deleting"
STATES = (PREPARED, RUNNING, EXITED, GARBAGE, DELETING)

TRANSITIONS: dict[str, frozenset[str]] = {
    PREPARED: frozenset({RUNNING, EXITED, DELETING}),
    RUNNING: frozenset({EXITED}),
    EXITED: frozenset({GARBAGE, DELETING}),
    GARBAGE: frozenset({DELETING}),
    DELETING: frozenset(),
}


class StateError(Exception):
    """A state change or lookup that is not allowed; the message is shown to the user."""


def check_transition(current: str, new: str) -> None:
    if new not in TRANSITIONS.get(current, frozenset()):
        raise StateError(f"pod cannot go from {current!r} to {new!r}")


def effective_state(stored: str, managed: bool) -> str:
    """The state to report, given whether a live rkt process (CLI or supervisor) holds the pod.

    The stored state can lag behind reality when the supervisor was killed: a pod recorded as
    running whose lock nobody holds has in fact exited.
    """
    if stored == RUNNING and not managed:
        return EXITED
    return stored


@record
class NetworkState:
    """One network the pod joined, with everything DEL needs later (the conf may change)."""

    name: str
    ifname: str
    args: str = ""  # CNI_ARGS, verbatim from --net=name:ARGS
    conf: dict[str, Any] = factory(dict)  # the conf or conflist used for ADD
    conf_file: str = ""  # where it came from ("" for the built-in networks)
    result: dict[str, Any] | None = None  # the last plugin's result, as it answered
    ip4: str = ""  # address without prefix, for list/status
    added: bool = False  # ADD succeeded (so DEL is owed)


@record
class AppState:
    name: str
    image_name: str  # display name, as rkt shows it ("registry-1.docker.io/library/busybox:latest")
    image_id: str
    exec: list[str] = factory(list)  # argv
    exit_code: int | None = None


@record
class PodState:
    uuid: str
    state: str
    app: AppState
    created: float  # epoch seconds
    started: float | None = None
    finished: float | None = None
    pid: int | None = None  # the app's pid (its process group id too)
    supervisor_pid: int | None = None
    net_mode: str = "contained"  # contained | host | none
    netns: str = ""  # the pinned netns path ("" with --net=host)
    cni_path: str = ""  # the CNI_PATH used for ADD, reused for DEL
    networks: list[NetworkState] = factory(list)
    gc_marked: float | None = None  # when gc moved it to garbage
    detached: bool = False
    interactive: bool = False

    def to_json(self) -> str:
        return jsonc.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PodState:
        data = dict(data)
        app = AppState(**data.pop("app"))
        nets = [NetworkState(**n) for n in data.pop("networks", [])]
        known = cls.__record_fields__
        return cls(app=app, networks=nets, **{k: v for k, v in data.items() if k in known})

    def set_state(self, new: str) -> None:
        check_transition(self.state, new)
        self.state = new


def read_state(pod_dir: str) -> PodState:
    with open(os.path.join(pod_dir, STATE_FILE), encoding="utf-8") as f:
        return PodState.from_dict(jsonc.loads(f.read()))


def write_state(pod_dir: str, pod: PodState) -> None:
    """Write-then-rename, so a reader (list, status, another node's agent) never sees half a file."""
    path = os.path.join(pod_dir, STATE_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(pod.to_json())
    os.replace(tmp, path)


def new_uuid() -> str:
    """A random (version 4) UUID in the usual 8-4-4-4-12 form, as rkt names pods.

    Built from os.urandom instead of the uuid module, which costs import time on every run.
    """
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_CHARS = frozenset("0123456789abcdef-")


def resolve_uuid(prefix: str, known: list[str]) -> str:
    """The one pod UUID that `prefix` names: an exact UUID or a unique prefix (e.g. the 8 chars
    `rkt list` prints). Unknown or ambiguous prefixes are errors, never a guess."""
    p = prefix.strip().lower()
    if not p or not set(p) <= _UUID_CHARS:
        raise StateError(f"invalid UUID {prefix!r}")
    if p in known:
        return p
    matches = sorted(u for u in known if u.startswith(p))
    if not matches:
        raise StateError(f"no pod found with UUID {prefix!r}")
    if len(matches) > 1:
        raise StateError(
            f"ambiguous UUID prefix {prefix!r}: {len(matches)} pods match "
            f"({', '.join(m[:13] for m in matches[:4])}{', ...' if len(matches) > 4 else ''})"
        )
    return matches[0]
