"""Where an agent's cold start went: process start to its first complete apply, by phase.

A cold start at 10,000 endpoints is a handful of phases of a few hundred milliseconds each
(the interpreter and its imports, the etcd connection, reading and folding the snapshot,
the calculation, the kernel's restores), and which one grew is the first question when it
is slow. The agent marks each phase's end here and logs one line at its first apply:

    cold start 2.31 s to the first apply: imports 0.41, connect 0.12, snapshot 0.85,
    calc 0.52, kernel 0.41

`bench/bench_agent.py` reads that line for its breakdown row. The marks are monotonic
times; the process's own start comes from /proc (clock ticks since boot, so to 10 ms).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from kernel.proc import stat_fields

PHASES = ("imports", "connect", "snapshot", "calc", "kernel")


def process_started() -> float:
    """This process's start as a time.monotonic() value (both count from boot on Linux;
    CLOCK_MONOTONIC stops while suspended, so fall back to "now" if it looks wrong)."""
    now = time.monotonic()
    try:
        fields = stat_fields()
        if fields is None:
            return now
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        boot_offset = time.clock_gettime(time.CLOCK_BOOTTIME) - now
        started -= boot_offset
    except (OSError, ValueError, IndexError):
        return now
    return started if 0 <= now - started < 3600 else now


@dataclass
class Timeline:
    """Phase ends, in order, from the process's start."""

    started: float = field(default_factory=process_started)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, phase: str, at: float | None = None) -> None:
        """The end of `phase` (the first call wins: a later reconnect is not a cold start)."""
        self.marks.setdefault(phase, time.monotonic() if at is None else at)

    def durations(self) -> dict[str, float]:
        """Seconds per phase, each from the end of the one before (absent ones skipped)."""
        out, last = {}, self.started
        for phase in PHASES:
            if phase in self.marks:
                out[phase] = max(0.0, self.marks[phase] - last)
                last = self.marks[phase]
        return out

    def total(self) -> float:
        ends = [self.marks[p] for p in PHASES if p in self.marks]
        return (max(ends) - self.started) if ends else 0.0

    def line(self) -> str:
        parts = ", ".join(f"{p} {s:.2f}" for p, s in self.durations().items())
        return f"cold start {self.total():.2f} s to the first apply: {parts}"


def parse_line(text: str) -> dict[str, float] | None:
    """The phases (and "total") of the last cold-start line in a log, for the bench."""
    for line in reversed(text.splitlines()):
        at = line.find("cold start ")
        if at < 0 or "to the first apply:" not in line:
            continue
        head, _, tail = line[at + len("cold start ") :].partition(" s to the first apply:")
        try:
            out = {"total": float(head)}
            for part in tail.split(","):
                name, value = part.split()
                out[name] = float(value)
        except ValueError:
            return None
        return out
    return None
