"""A pod's output as the node API serves it: `GET /v1/pods/{uuid}/logs?follow=1&tail=N`.

rkt keeps every non-interactive app's output in `<dir>/pods/<uuid>/log` (rkt/pods.py). The
answer is a stream of JSON lines, as /v1/flows is:

    {"type": "line", "line": "..."}                      one line of output, without its newline
    {"type": "keepalive", "time": t}                     follow: after 15 s of silence
    {"type": "end", "state": "exited", "exit_code": 3}   the pod ended, or (no follow) its state now

`tail=N` starts N lines before the end (default: the whole log); `follow=1` then waits for
more until the pod has ended and everything it wrote was sent, or the client goes away.

Waiting is inotify on the log file (IN_MODIFY): a line reaches the client about as soon as
`tail -F` would see it (bench/bench_logs.py measures both). Where inotify is not available
the file is polled every 50 ms, which keeps the added latency at 25 ms on average, far
inside the console's 300 ms budget. A line without its newline is held until the newline,
the end of the pod, or 16 KiB of it (a longer line is sent in 16 KiB pieces).

The line splitting and the backwards search for the last N lines are plain functions on
bytes (tested without files); `follow_log` is the thin loop around the file.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from agent.api.server import APIError
from rkt.pods import Runtime
from rkt.state import LOG_FILE, StateError, read_state

MAX_LINE = 16384  # bytes: a longer line goes out in pieces of this size
BLOCK = 65536  # read size, forwards and (for tail) backwards
POLL = 0.05  # seconds between looks at the file when inotify is not there
HEARTBEAT = 15.0  # seconds of silence before a keepalive (a gone client is noticed then)

LIVE = ("prepared", "running")  # pod states in which the app may still write

IN_MODIFY = 0x2
IN_CLOSE_WRITE = 0x8
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000


def split_lines(buf: bytes, final: bool = False) -> tuple[list[str], bytes]:
    """Complete lines of `buf` (decoded, newline and a CR before it dropped) and what is
    left over. `final`: the leftover is a line too. Lines over MAX_LINE are cut."""
    lines: list[str] = []
    start = 0
    while True:
        nl = buf.find(b"\n", start)
        if nl < 0:
            break
        lines.extend(_pieces(buf[start:nl].removesuffix(b"\r")))
        start = nl + 1
    rest = buf[start:]
    while len(rest) > MAX_LINE:
        lines.append(rest[:MAX_LINE].decode(errors="replace"))
        rest = rest[MAX_LINE:]
    if final and rest:
        lines.append(rest.decode(errors="replace"))
        rest = b""
    return lines, rest


def _pieces(raw: bytes) -> list[str]:
    if len(raw) <= MAX_LINE:
        return [raw.decode(errors="replace")]
    return [raw[i : i + MAX_LINE].decode(errors="replace") for i in range(0, len(raw), MAX_LINE)]


def tail_offset(read_at: Callable[[int, int], bytes], size: int, n: int) -> int:
    """Where the last `n` lines of a file of `size` bytes start (read_at(offset, length)
    reads it): just after the n-th newline back from the end, the last line's own newline
    not counted. A final line without its newline counts as a line, as `tail -n` counts it.
    Reads backwards BLOCK bytes at a time, so a long log costs what its tail costs."""
    if n <= 0:
        return size
    pos = size - 1 if size and read_at(size - 1, 1) == b"\n" else size
    seen = 0
    while pos > 0:
        start = max(0, pos - BLOCK)
        block = read_at(start, pos - start)
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) >= 0:
            seen += 1
            if seen == n:
                return start + i + 1
        pos = start
    return 0


def follow_log(
    path: str,
    tail: int | None,
    follow: bool,
    status: Callable[[], dict[str, Any]],
    heartbeat: float = HEARTBEAT,
) -> Iterator[dict[str, Any]]:
    """The stream described above. `status()` is the pod's {"state", "exit_code"} now; a
    state in LIVE means more may come. It is asked *before* each read, so nothing the app
    wrote before it ended is missed."""
    f: BinaryIO | None = None
    watch = _Inotify()
    try:
        f = _open(path)
        if f is not None:
            watch.add(path)
            if tail is not None:
                size = os.fstat(f.fileno()).st_size
                f.seek(tail_offset(lambda off, n: os.pread(f.fileno(), n, off), size, tail))
        rest = b""
        quiet_since = time.monotonic()
        while True:
            now = status()
            end = now if not follow or now.get("state") not in LIVE else None
            if f is None:
                f = _open(path)
                if f is not None:
                    watch.add(path)
            if f is not None:
                while chunk := f.read(BLOCK):
                    lines, rest = split_lines(rest + chunk)
                    for line in lines:
                        yield {"type": "line", "line": line}
                    if lines:
                        quiet_since = time.monotonic()
            if end is not None:
                lines, rest = split_lines(rest, final=True)
                for line in lines:
                    yield {"type": "line", "line": line}
                yield {"type": "end", **end}
                return
            if time.monotonic() - quiet_since >= heartbeat:
                yield {"type": "keepalive", "time": time.time()}
                quiet_since = time.monotonic()
            watch.wait(1.0 if f is not None and watch.fd is not None else POLL)
    finally:
        if f is not None:
            f.close()
        watch.close()


def _open(path: str) -> BinaryIO | None:
    try:
        return open(path, "rb", buffering=0)  # noqa: SIM115 - closed by follow_log
    except FileNotFoundError:
        return None


class _Inotify:
    """IN_MODIFY on one file through libc (no package), or nothing: wait() then sleeps POLL."""

    def __init__(self) -> None:
        self.fd: int | None = None
        try:
            from kernel.ns import libc

            fd = libc().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            self.fd = fd if fd >= 0 else None
        except (OSError, AttributeError):
            self.fd = None

    def add(self, path: str) -> None:
        if self.fd is None:
            return
        from kernel.ns import libc

        if libc().inotify_add_watch(self.fd, path.encode(), IN_MODIFY | IN_CLOSE_WRITE) < 0:
            self.close()

    def wait(self, timeout: float) -> None:
        if self.fd is None:
            time.sleep(min(timeout, POLL))
            return
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                os.read(self.fd, 4096)  # the events themselves say nothing more
            except BlockingIOError:
                pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def pod_log_stream(
    runtime: Runtime, uuid: str, query: dict[str, list[str]]
) -> Iterator[dict[str, Any]]:
    """The route's work for one resolved pod: check the query and that the pod keeps its
    output (APIError, before any byte is streamed), then the stream."""
    follow = (query.get("follow") or [""])[-1] in ("1", "true", "yes")
    tail_text = (query.get("tail") or [""])[-1]
    tail: int | None = None
    if tail_text not in ("", "-1", "all"):
        if not tail_text.isdigit():
            raise APIError(400, f"tail must be a number of lines (or all), not {tail_text[:20]!r}")
        tail = int(tail_text)
    pdir = runtime.pod_dir(uuid)
    try:
        pod = read_state(pdir)
    except (OSError, ValueError) as exc:
        raise APIError(404, f"cannot read pod {uuid}: {exc}") from None
    path = os.path.join(pdir, LOG_FILE)
    if pod.interactive and not os.path.exists(path):
        raise APIError(
            404,
            f"pod {uuid} runs interactively (rkt run --interactive): its output goes to its "
            "terminal and is not kept",
        )

    def status() -> dict[str, Any]:
        try:
            now, state = runtime.get(uuid)
        except StateError:
            return {"state": "removed", "exit_code": None}
        return {"state": state, "exit_code": now.app.exit_code}

    return follow_log(path, tail, follow, status)
