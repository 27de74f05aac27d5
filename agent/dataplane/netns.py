"""Run Python code inside a named network namespace, from a thread of this process.

`setns(CLONE_NEWNET)` moves only the calling thread, so a short-lived thread can open a
socket "in" a pod's namespace while the rest of the process stays where it is; the socket
keeps its namespace for life. Used for connectivity probes (a pod's view of the network)
and by the tests and benchmark to listen and connect inside their own namespaces.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> str:
    return name if name.startswith("/") else os.path.join(NETNS_DIR, name)


def run_in_netns(netns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `fn(*args, **kwargs)` in a fresh thread switched into `netns`; return its result."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(netns_path(netns), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netns {netns}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def listen(netns: str, host: str, port: int, backlog: int = 64) -> socket.socket:
    """A listening TCP socket inside `netns` (accept() on it from any thread)."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(backlog)
        return s

    return run_in_netns(netns, make)


def tcp_connect(
    netns: str, host: str, port: int, timeout: float = 1.0, source: str | None = None
) -> bool:
    """True if a TCP connection from `netns` (optionally from address `source`) to
    host:port completes and the server's first byte arrives within `timeout`."""

    def probe() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            if source:
                s.bind((source, 0))
            try:
                s.connect((host, port))
                return bool(s.recv(16))
            except OSError:
                return False

    return run_in_netns(netns, probe)
