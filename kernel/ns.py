"""Network namespaces: open one, enter it for this thread and come back, run a function in
it on a fresh thread, and pinned namespaces (kept alive by a bind mount, as `ip netns` does).

`setns(CLONE_NEWNET)` moves only the calling thread, and a socket belongs for life to the
namespace its creator was in when it was made. So a thread can hop into a pod's namespace,
open a socket (netlink for the CNI plugin, TCP for a probe) and hop straight back: every
later call goes through the socket, other threads are never affected, and there is neither
an `ip netns exec` subprocess nor pyroute2's helper process. The thread must run nothing
else while inside; `entered()` guarantees the way back.

The syscalls namespaces are made of (setns, unshare, mount, umount, pivot_root) are here too;
rkt.isolation builds a pod's mount namespace from them. Python 3.11 has no
os.setns/os.unshare/mount: those come from kernel._syscalls (kernel/_syscalls.c, built by
scripts/setup.sh; 0.1 ms to load) or, where it is not built, from libc through ctypes,
loaded on first use and kept (1.4-2.2 ms, paid by every `rkt run`). Only os and errno are
imported here: this module is on the CNI ADD path and under every `rkt` command.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # typing costs import time on every `rkt run`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

# pivot_root has no glibc wrapper; its syscall number per machine.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

THREAD_NETNS = "/proc/thread-self/ns/net"
NETNS_DIR = "/run/netns"

_os_setns = getattr(os, "setns", None)  # Python >= 3.12
_os_unshare = getattr(os, "unshare", None)
_libc: Any = None
try:  # built by scripts/setup.sh (kernel/build_syscalls.py); ctypes otherwise
    from kernel import _syscalls as _sys
except ImportError:
    _sys = None


class NamespaceError(Exception):
    """The namespace path cannot be used (missing, not a netns, not permitted).

    The message says which path and why; `strerror` is the OS's own reason alone."""

    def __init__(self, message: str, strerror: str = "") -> None:
        super().__init__(message)
        self.strerror = strerror


# ---------------------------------------------------------------- syscalls


def libc() -> Any:
    """libc through ctypes, loaded once (importing ctypes costs ~5 ms)."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret: int, what: str | None) -> None:
    """Raise the OSError for a failed libc call; `what` prefixes the text (None: the bare
    strerror, as the os module's own wrappers give it)."""
    if ret != 0:
        import ctypes

        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}" if what else os.strerror(e))


def _sys_call(what: str, fn: Callable[..., None], *args: Any) -> None:
    """A kernel._syscalls call, its bare OSError worded as the ctypes path words it."""
    try:
        fn(*args)
    except OSError as exc:
        raise OSError(exc.errno, f"{what}: {os.strerror(exc.errno)}") from None


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) for the calling thread; the error is os.setns's on every Python."""
    if _os_setns is not None:
        _os_setns(fd, nstype)
    elif _sys is not None:
        _sys.setns(fd, nstype)
    else:
        _check(libc().setns(fd, nstype), None)


def unshare(flags: int) -> None:
    if _os_unshare is not None:
        _os_unshare(flags)
        return
    if _sys is not None:
        _sys_call("unshare", _sys.unshare, flags)
        return
    _check(libc().unshare(flags), "unshare")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    if _sys is not None:
        _sys_call(f"mount {target}", _sys.mount, source, target, fstype, flags, data)
        return

    def b(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(libc().mount(b(source), b(target), b(fstype), flags, b(data)), f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    if _sys is not None:
        _sys_call(f"umount {target}", _sys.umount2, target, flags)
        return
    _check(libc().umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    if _sys is not None:
        _sys_call("pivot_root", _sys.pivot_root, new_root, put_old)
        return
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, "pivot_root: unknown syscall number on this machine")
    _check(libc().syscall(nr, new_root.encode(), put_old.encode()), "pivot_root")


# ---------------------------------------------------------------- entering


def netns_path(name: str) -> str:
    """A path as is; a bare name is one of `ip netns`'s (/run/netns/NAME)."""
    return name if name.startswith("/") else os.path.join(NETNS_DIR, name)


def open_netns(path: str) -> int:
    """An fd on the namespace at `path` (a bind mount, /proc/PID/ns/net, ...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NamespaceError(f"network namespace {path} does not exist", exc.strerror) from None
    except OSError as exc:
        raise NamespaceError(
            f"cannot open network namespace {path}: {exc.strerror}", exc.strerror
        ) from None
    return fd


class _Entered:
    """The context manager `entered` returns (a class: contextlib costs ~1 ms to import on
    every `rkt run`, which imports this module)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.home = -1

    def __enter__(self) -> None:
        home = os.open(THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(self.fd, CLONE_NEWNET)
        except OSError as exc:
            os.close(home)
            raise NamespaceError(
                f"cannot enter network namespace: {exc.strerror}", exc.strerror
            ) from None
        except BaseException:
            os.close(home)
            raise
        self.home = home

    def __exit__(self, *exc: object) -> None:
        try:
            # Failing to return would leave this thread's later work in the pod's
            # namespace: nothing can sensibly continue, so the error propagates.
            setns(self.home, CLONE_NEWNET)
        finally:
            os.close(self.home)


def entered(fd: int) -> _Entered:
    """Run the body with this thread inside the namespace `fd`; always come back."""
    return _Entered(fd)


def enter_netns(path: str) -> None:
    """Move this thread into the namespace at `path` for good: for a process that has
    nothing else to do outside (the single-threaded rkt CLI, a forked child, a throwaway
    thread)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def run_in_netns(netns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `fn(*args, **kwargs)` in a fresh thread switched into `netns` (a path or an
    `ip netns` name); return its result or raise its exception here. The thread ends with
    the call, so it never has to come back."""
    import threading  # ~1 ms, and neither `rkt` nor the CNI path needs it from here

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            try:
                enter_netns(netns_path(netns))
            except OSError as exc:
                raise OSError(exc.errno, f"setns {netns}: {exc.strerror}") from None
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netns {netns}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def same_netns(fd: int) -> bool:
    """Is `fd` the namespace this thread is in? (A plugin asked to wire a pod into its own
    node namespace would move the node's own routes around.)"""
    mine = os.stat(THREAD_NETNS)
    other = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (other.st_dev, other.st_ino)


# ---------------------------------------------------------------- pinned namespaces


def loopback_up() -> None:
    """Bring `lo` up in the current netns with two ioctls (no `ip` exec, no pyroute2)."""
    import _socket
    import fcntl
    import struct

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def create_pinned_netns(pin: str) -> None:
    """A new network namespace with `lo` up, kept alive by a bind mount on `pin`.

    The caller's own netns is restored before returning (even on error). The mount lives in the
    caller's mount namespace: a lab node's, or the host's.
    """
    fd = os.open(pin, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)
    orig = os.open(THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        unshare(CLONE_NEWNET)
        try:
            mount(THREAD_NETNS, pin, None, MS_BIND, None)
            loopback_up()
        finally:
            setns(orig, CLONE_NEWNET)
    except BaseException:
        remove_pinned_netns(pin)
        raise
    finally:
        os.close(orig)


def is_pinned(pin: str) -> bool:
    """True when `pin` is a live netns mount in this mount namespace (not just the empty file)."""
    try:
        return os.stat(pin).st_dev != os.stat(os.path.dirname(pin) or ".").st_dev
    except OSError:
        return False


def remove_pinned_netns(pin: str) -> None:
    """Unmount and delete the pin; the namespace goes away with its last user."""
    try:
        umount(pin, MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        os.unlink(pin)
    except FileNotFoundError:
        pass
