"""The console follows etcd from a process of its own. The child reads its first listing
over calico.etcd_h2 (etcd's gRPC service without grpc's import), then runs the
PrefixSyncer from that listing's revision (connect, watch, fail over, resync), and writes
each update as a frame on a pipe; `FollowerProcess.updates()` reads them back as the same
Snapshot, Change and SyncStatus values the syncer yields in-process.

Why a process: the console's event loop and the etcd client shared one GIL. At 10,000
endpoints, importing gRPC (45-65 ms), the Python side of 20 range reads (50-100 ms) and
Textual starting all queued for it while the second core sat idle; the view was fully
loaded in 0.40-0.47 s. Here the reads run on that core, the console's process decodes
each page while the next one is read, and it never imports gRPC to follow (its writes
still connect in-process, on first use).

How the child starts: forked, when the console's process has one thread and no gRPC (as
`calico-console` has when it builds its app): the child then starts with the interpreter
and the modules already loaded, its first range read ~75 ms sooner. Otherwise (gRPC's
threads do not survive a fork, nor do other threads' locks; the tests run many consoles
in one process) it is spawned as `python -m console.follower_process`. Both run `run()`.

A frame is a 4-byte big-endian length and a pickle (both ends are this module):
    ("page", [(key, value, mod_revision, create_revision), ...], [fields or None, ...])
                                          a listing's page, with the table's fields
    ("snapshot", revision)                the pages since the last snapshot, complete
    ("relist",)                           those pages are void: a listing failed half-way
    ("change", key, (key, value, mod_revision, create_revision) or None, revision)
    ("status", state, error)              a SyncStatus; also a failed connect
The child exits when its stdin closes (the console stopped or died), so it never outlives
the console; a child that exits is reported and started again.
"""

from __future__ import annotations

import collections
import fcntl
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from calico import heap
from calico.datastore import KV, Change, Snapshot, SyncStatus, SyncUpdate

HEADER = struct.Struct(">I")
RESTART_DELAY = 1.0  # seconds before a follower that exited is started again
CONNECT_RETRY = 1.0  # seconds between the child's attempts to connect
# Keys per range read of the child's listings, not the in-process 500: no event loop
# shares the child, and at 10,000 endpoints the listing took 62-70 ms, not 83-135 ms.
CHILD_PAGE = 2000


class Child:
    """A follower process: its pid (and a pidfd where the kernel has them, so it is
    signalled only while it is this console's child), the end of its stdin the console
    holds (closing it ends the child), its frames and its stderr."""

    def __init__(self, pid: int, stdin: int, frames: int, stderr: int, how: str) -> None:
        self.pid = pid
        self.how = how  # "forked" or "spawned"
        self.pidfd = _pidfd(pid)  # before anyone reaps it: we are its only reaper
        self.stdin = os.fdopen(stdin, "wb")
        self.frames = os.fdopen(frames, "rb")
        self.stderr = os.fdopen(stderr, "rb")
        self.returncode: int | None = None
        self._reaping = threading.Lock()  # one waitpid at a time
        self._fds = threading.Lock()  # the pidfd is not closed under a signal

    @classmethod
    def start(cls, endpoints: str | None) -> Child:
        # Every end above fd 3, so the dup2s below always copy (a dup2 onto itself would
        # leave the end close-on-exec) and fd 3 is free for the frames.
        stdin_r, stdin_w, frames_r, frames_w, err_r, err_w = (
            _above_std(fd) for fd in (*os.pipe(), *os.pipe(), *os.pipe())
        )
        _widen(frames_w)
        if threading.active_count() == 1 and "grpc" not in sys.modules:
            pid, how = os.fork(), "forked"
            if pid == 0:
                _forked_child(endpoints, stdin_r, frames_w, err_w)  # never returns
        else:
            argv = [sys.executable, "-m", "console.follower_process", endpoints or "", "3"]
            actions = [
                (os.POSIX_SPAWN_DUP2, stdin_r, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
                (os.POSIX_SPAWN_DUP2, frames_w, 3),
            ]
            pid = os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions)
            how = "spawned"
        for fd in (stdin_r, frames_w, err_w):
            os.close(fd)
        return cls(pid, stdin_w, frames_r, err_r, how)

    def wait(self) -> int:
        with self._reaping:
            if self.returncode is None:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def kill(self) -> None:
        """SIGKILL, through the pidfd (it names this child even once reaped, when the
        signal finds nobody), else by pid while it is not yet reaped."""
        with self._fds:
            try:
                if self.pidfd is not None:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                elif self.returncode is None:
                    os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:  # gone already
                pass

    def end(self) -> None:
        """Kill it, reap it, close what the console holds of it."""
        self.kill()
        self.wait()
        self.close()

    def close(self) -> None:
        """Close the console's ends of its pipes (a reader still on them sees their end)
        and, once it is reaped, its pidfd."""
        for pipe in (self.stdin, self.frames, self.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        with self._fds:
            if self.pidfd is not None and self.returncode is not None:
                os.close(self.pidfd)
                self.pidfd = None


def _widen(pipe: int) -> None:
    """A frames pipe of 1 MiB (the most an unprivileged process may ask for), not 64 KiB:
    a page of 2,000 endpoints (1.9 MB) crosses in two reads instead of thirty, and each
    read of the console's reader thread waits for the GIL the event loop holds."""
    try:
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (AttributeError, OSError):  # not Linux, or a lower limit: 64 KiB works too
        pass


def _pidfd(pid: int) -> int | None:
    """A pidfd for the child (Linux 5.3+), or None on an older kernel, where it is killed
    by pid and only before it is reaped."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _above_std(fd: int) -> int:
    if fd > 3:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 4)
    os.close(fd)
    return moved


def _forked_child(endpoints: str | None, stdin_r: int, frames_w: int, err_w: int) -> None:
    """In the forked child: stdin, stderr and the frames at their places, nothing else of
    the console's open (its other pipes would never see their EOF), then run()."""
    code = 1
    try:
        heap.forked()
        os.dup2(stdin_r, 0)
        os.dup2(err_w, 2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # what the console's stdout had buffered goes nowhere
        os.dup2(frames_w, 3)
        os.closerange(4, os.sysconf("SC_OPEN_MAX"))
        run(endpoints, 3)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


class FollowerProcess:
    """The console's end: starts the child, yields its updates until `stop` is set; a child
    that exits is reported (disconnected, with its last words) and started again, and its
    fresh listing replaces the state."""

    def __init__(
        self,
        endpoints: str | None,
        on_page: Callable[[list[KV], list[tuple[str, ...] | None]], None] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.on_page = on_page
        self.child: Child | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        """Start the child now (it connects and lists while the caller does other work)."""
        with self._lock:
            if self.child is None and not self._stopped:
                self.child = Child.start(self.endpoints)

    def updates(self, stop: threading.Event) -> Iterator[SyncUpdate]:
        while not stop.is_set():
            self.start()
            child = self.child
            if child is None:
                return  # stopped
            last_words: collections.deque[str] = collections.deque(maxlen=3)
            words = threading.Thread(
                target=_keep_last_lines, args=(child.stderr, last_words), daemon=True
            )
            words.start()
            yield from self._read(child.frames)
            code = child.wait()
            words.join(timeout=1.0)
            child.close()
            with self._lock:
                if self.child is child:
                    self.child = None
            if stop.is_set():
                return
            why = f": {last_words[-1]}" if last_words else ""
            yield SyncStatus("disconnected", f"etcd follower exited (code {code}){why}")
            stop.wait(RESTART_DELAY)

    def _read(self, stream: BinaryIO) -> Iterator[SyncUpdate]:
        listing: dict[str, KV] = {}
        while (frame := _read_frame(stream)) is not None:
            tag = frame[0]
            if tag == "page":
                kvs = [KV(*t) for t in frame[1]]
                for kv in kvs:
                    listing[kv.key] = kv
                if self.on_page is not None:
                    self.on_page(kvs, frame[2])
            elif tag == "snapshot":
                yield Snapshot(listing, frame[1])
                listing = {}
            elif tag == "relist":  # that listing failed half-way: the next one replaces it
                listing = {}
            elif tag == "change":
                _, key, kv, revision = frame
                yield Change(key, KV(*kv) if kv is not None else None, revision)
            elif tag == "status":
                yield SyncStatus(frame[1], frame[2])

    def stop(self) -> None:
        """End the child and, with it, the updates."""
        with self._lock:
            self._stopped = True
            child, self.child = self.child, None
        if child is not None:
            child.end()


def _read_frame(stream: BinaryIO) -> Any:
    """The next frame, or None at the end (the child gone, or its pipe closed by stop)."""
    try:
        head = stream.read(HEADER.size)
        if len(head) < HEADER.size:
            return None
        (size,) = HEADER.unpack(head)
        body = stream.read(size)
    except (ValueError, OSError):  # closed under us
        return None
    if len(body) < size:
        return None
    return pickle.loads(body)


def _keep_last_lines(stream: BinaryIO, lines: collections.deque[str]) -> None:
    try:
        for raw in stream:
            text = raw.decode(errors="replace").strip()
            if text:
                lines.append(text)
    except (ValueError, OSError):  # closed under us
        pass


# ---------------------------------------------------------------- the child


def _kv_tuple(kv: Any) -> tuple[str, bytes, int, int]:
    return (kv.key, kv.value, kv.mod_revision, kv.create_revision)


class _Frames:
    """The child's end of the frames pipe. A frame is encoded in the sender's thread (a
    page's fields read and pickled while etcd serves the next page: calico.etcd_gateway
    sends its request ahead) and written from a thread of its own, which holds the GIL
    only around each write: a page of 2,000 endpoints (1.9 MB) waits there for the console
    to read it, not the listing. Encoding in that thread instead made it and the reads
    take the GIL from each other at every socket read: pages came 30-48 ms apart."""

    def __init__(self, fd: int) -> None:
        self.out = os.fdopen(fd, "wb", buffering=0)
        self.queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="frames", daemon=True).start()

    def send(self, frame: tuple[Any, ...]) -> None:
        body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
        self.queue.put(HEADER.pack(len(body)) + body)

    def page(self, kvs: list[Any]) -> None:
        """A page of a listing: calico.datastore KVs or calico.etcd_gateway KVs (tuples)."""
        from console.model import listed_fields

        self.send(("page", [_kv_tuple(kv) for kv in kvs], [listed_fields(kv) for kv in kvs]))

    def _run(self) -> None:
        while True:
            left = memoryview(self.queue.get())
            try:
                while left:
                    left = left[self.out.write(left) :]  # a signal may cut a write short
            except (BrokenPipeError, ValueError):  # the console is gone
                os._exit(0)


def follow(endpoints: str | None, frames: _Frames, stop: threading.Event) -> None:
    """List (over etcd's gRPC wire without grpc, while grpc is imported after), connect
    (retrying, each failure reported), then send every update."""
    from calico.datastore import KV, Datastore, PrefixSyncer
    from calico.errors import DatastoreError
    from calico.keys import ROOT

    heap.hold()  # the listing's objects all survive it (calico.heap)
    try:
        listed = first_listing(endpoints, frames)
        known = {kv.key: KV(*kv) for kv in listed[0]} if listed is not None else {}
    finally:
        heap.release()
    datastore = None
    while datastore is None and not stop.is_set():
        try:
            datastore = Datastore.connect(endpoints, timeout=3.0)
        except (DatastoreError, ValueError) as exc:
            frames.send(("status", "disconnected", str(exc)))
            stop.wait(CONNECT_RETRY)
    if datastore is None:
        return
    if listed is not None:
        syncer = PrefixSyncer(datastore, ROOT, known=known, revision=listed[1], listed=True)
    else:
        syncer = PrefixSyncer(datastore, ROOT, on_page=frames.page, page=CHILD_PAGE)
    try:
        for update in syncer.updates(stop):
            if isinstance(update, Snapshot):
                frames.send(("snapshot", update.revision))
            elif isinstance(update, Change):
                kv = _kv_tuple(update.kv) if update.kv is not None else None
                frames.send(("change", update.key, kv, update.revision))
            elif isinstance(update, SyncStatus):
                frames.send(("status", update.state, update.error))
    finally:
        datastore.close()


def first_listing(endpoints: str | None, frames: _Frames) -> tuple[list[Any], int] | None:
    """The first listing, read over calico.etcd_h2 and sent as pages and a snapshot:
    grpc's import (75-90 ms of a 10,000-endpoint console's ~250 ms load) comes after it,
    not before. None if it could not be read: the pages already sent are taken back
    ("relist"), the reason is reported, and the gRPC client lists as it always did."""
    from calico.config import ConfigError, resolve_settings
    from calico.errors import DatastoreError
    from calico.etcd_gateway import Gateway
    from calico.keys import ROOT

    try:
        settings = resolve_settings(endpoints)
    except ConfigError:
        return None  # Datastore.connect says what is wrong with them
    gateway = Gateway(settings, timeout=3.0, wire="grpc")
    sent = False

    def page(kvs: list[Any]) -> None:
        nonlocal sent
        sent = True
        frames.page(kvs)

    try:
        kvs, revision = gateway.kv_list(ROOT, page=CHILD_PAGE, on_page=page)
    except (DatastoreError, OSError, ValueError) as exc:
        if sent:
            frames.send(("relist",))
        frames.send(("status", "disconnected", str(exc)))
        return None
    finally:
        gateway.close()
    frames.send(("snapshot", revision))
    return kvs, revision


def run(endpoints: str | None, frames_fd: int) -> None:
    """The child's body, forked or spawned: follow until the console closes our stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the console's ^C is the console's

    def watch_stdin() -> None:
        while os.read(0, 4096):
            pass  # returns b"" at EOF: the console is gone
        os._exit(0)

    threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()
    follow(endpoints, _Frames(frames_fd), threading.Event())


if __name__ == "__main__":
    run(sys.argv[1] or None, int(sys.argv[2]))
