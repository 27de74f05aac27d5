"""Sockets inside a named network namespace, opened from a thread of this process.

A listening socket made in a pod's namespace keeps that namespace for life and can be
accepted on from any thread; a connect from inside one is a pod's view of the network. The
tests and benchmarks use these to listen and connect inside their own namespaces; the
thread that hops in is kernel.ns.run_in_netns's.
"""

from __future__ import annotations

import socket

from kernel.ns import run_in_netns


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
