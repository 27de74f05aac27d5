"""Network namespaces for the plugin: open a pod's namespace, and a netlink socket in it.

A socket belongs to the namespace its creator was in when it was made, and `setns(2)`
moves only the calling thread. So a thread of the CNI server hops into the pod's
namespace, opens its netlink socket, and hops straight back: every later netlink call
goes through the socket and the thread never runs anything else while inside. Other
threads (other pods' requests) are not affected. This avoids both `ip netns exec`
subprocesses and pyroute2's helper process for NetNS.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from plugin.netlink import Netlink

CLONE_NEWNET = 0x40000000
THREAD_NETNS = "/proc/thread-self/ns/net"


class NamespaceError(Exception):
    """The namespace path cannot be used (missing, not a netns, not permitted)."""


def _setns(fd: int) -> None:
    native = getattr(os, "setns", None)  # Python >= 3.12
    if native is not None:
        native(fd, CLONE_NEWNET)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def open_netns(path: str) -> int:
    """An fd on the namespace at `path` (a bind mount, /proc/PID/ns/net, ...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceError(f"network namespace {path} does not exist") from None
    except OSError as exc:
        raise NamespaceError(f"cannot open network namespace {path}: {exc.strerror}") from None
    return fd


@contextlib.contextmanager
def entered(fd: int) -> Iterator[None]:
    """Run the body with this thread inside the namespace `fd`; always come back."""
    home = os.open(THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(fd)
        except OSError as exc:
            raise NamespaceError(f"cannot enter network namespace: {exc.strerror}") from None
        try:
            yield
        finally:
            # Failing to return would leave this thread's later work in the pod's
            # namespace: nothing can sensibly continue, so the error propagates.
            _setns(home)
    finally:
        os.close(home)


def netlink_in(fd: int) -> Netlink:
    """A netlink socket bound to the namespace `fd`."""
    with entered(fd):
        return Netlink()


def same_netns(fd: int) -> bool:
    """Is `fd` the namespace this thread is in? (A plugin asked to wire a pod into its own
    node namespace would move the node's own routes around.)"""
    mine = os.stat(THREAD_NETNS)
    other = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (other.st_dev, other.st_ino)
