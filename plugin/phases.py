"""Where a CNI request's milliseconds go: named phases with start and end timestamps.

The agent's CNI server starts a `Trace` when it accepts a connection and makes it the
current one for that request; code on the path marks its steps with `phase("name")`
(IPAM claim, endpoint write, veth syscalls, ...). A request whose environment carries
`CALICO_CNI_TRACE=<file>` gets one JSON line appended to that file once its reply is
sent:

    {"command": "ADD", "container": "...", "accept": 1234.5678,
     "spans": [["recv", 0.00001, 0.00009, "cni-request"], ...]}

`accept` is `time.perf_counter()` (CLOCK_MONOTONIC on Linux, the same clock in every
process), so a benchmark that notes the same clock before it execs the plugin can tell
the launcher's start and hand-off from the agent's own work. Span times are seconds
after `accept`; the last field is the thread, since the veth is made on a helper thread
while etcd is talked to.

Untraced requests pay a context-variable lookup and a list append per phase (~1 us
each, ~20 per ADD): nothing next to one etcd round trip (~1 ms).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

TRACE_ENV = "CALICO_CNI_TRACE"

_current: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("cni_trace", default=None)


@dataclass
class Trace:
    """The spans of one request, in seconds of `time.perf_counter()`."""

    origin: float = field(default_factory=time.perf_counter)
    spans: list[tuple[str, float, float, str]] = field(default_factory=list)

    def add(self, name: str, start: float, end: float) -> None:
        # list.append is atomic under the GIL: the helper thread may add concurrently.
        self.spans.append((name, start, end, threading.current_thread().name))

    def record(self, command: str, container: str) -> dict[str, Any]:
        return {
            "command": command,
            "container": container,
            "accept": self.origin,
            "spans": [
                [name, round(s - self.origin, 7), round(e - self.origin, 7), thread]
                for name, s, e, thread in self.spans
            ],
        }


def start(trace: Trace) -> contextvars.Token[Trace | None]:
    """Make `trace` the current request's (this thread and what it runs in a copied
    context)."""
    return _current.set(trace)


def stop(token: contextvars.Token[Trace | None]) -> None:
    _current.reset(token)


def current() -> Trace | None:
    return _current.get()


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as `name` in the current trace; nothing without one."""
    trace = _current.get()
    if trace is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        trace.add(name, t0, time.perf_counter())


def mark(name: str, start: float, end: float | None = None) -> None:
    """A span measured by the caller (e.g. from before the trace existed)."""
    trace = _current.get()
    if trace is not None:
        trace.add(name, start, time.perf_counter() if end is None else end)


def write(trace: Trace, env: Mapping[str, Any], command: str, container: str) -> None:
    """Append the request's record to the file its environment names, if it names one.
    A file that cannot be written loses the record, never the request."""
    path = env.get(TRACE_ENV) if isinstance(env, Mapping) else None
    if not path or not isinstance(path, str):
        return
    line = json.dumps(trace.record(command, container), separators=(",", ":")) + "\n"
    with contextlib.suppress(OSError), open(path, "a") as fh:
        fh.write(line)


# ---- reading traces (the benchmark's table) -------------------------------------------


def durations(record: Mapping[str, Any]) -> dict[str, float]:
    """Seconds per phase name in one record (a phase run twice counts twice)."""
    out: dict[str, float] = {}
    for name, s, e, _thread in record.get("spans", []):
        out[name] = out.get(name, 0.0) + (e - s)
    return out


@dataclass
class PhaseSummary:
    name: str
    thread: str  # the thread it ran on (most often)
    start: float  # median seconds after accept
    p50: float  # median seconds
    count: int  # records that have it


def summarize(records: Iterable[Mapping[str, Any]]) -> list[PhaseSummary]:
    """Each phase's median start and duration over the records that have it, in the order
    the phases start. Pure: the benchmark prints it."""
    import statistics  # only the benchmark reads traces: not on the plugin's import path

    starts: dict[str, list[float]] = {}
    per: dict[str, list[float]] = {}
    threads: dict[str, dict[str, int]] = {}
    for rec in records:
        first: dict[str, float] = {}
        for name, s, _e, thread in rec.get("spans", []):
            first[name] = min(first.get(name, s), s)
            counts = threads.setdefault(name, {})
            counts[thread] = counts.get(thread, 0) + 1
        for name, s in first.items():
            starts.setdefault(name, []).append(s)
        for name, d in durations(rec).items():
            per.setdefault(name, []).append(d)
    out = [
        PhaseSummary(
            name=n,
            thread=max(threads[n], key=threads[n].__getitem__),
            start=statistics.median(starts[n]),
            p50=statistics.median(per[n]),
            count=len(per[n]),
        )
        for n in starts
    ]
    return sorted(out, key=lambda p: p.start)
