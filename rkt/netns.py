"""Kernel side of a pod: network namespaces pinned by bind mounts, and the app's mount namespace.

Python 3.11 has no os.unshare/os.setns/mount, so the few syscalls needed come from libc via
ctypes (imported lazily: `rkt list` never pays for it). Only the calling process (the rkt
CLI, which is single-threaded) or a freshly forked child is ever moved between namespaces.
"""

from __future__ import annotations

import errno
import os
import struct

TYPE_CHECKING = False  # typing costs import time on every `rkt run`
if TYPE_CHECKING:
    from typing import Any

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
NSFS_MAGIC = 0x6E736673

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

# pivot_root has no glibc wrapper; its syscall number per machine.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

_libc: Any = None


def libc() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    fn = getattr(os, "unshare", None)
    if fn is not None:
        fn(flags)
        return
    _check(libc().unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    fn = getattr(os, "setns", None)
    if fn is not None:
        fn(fd, nstype)
        return
    _check(libc().setns(fd, nstype), "setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    def b(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(libc().mount(b(source), b(target), b(fstype), flags, b(data)), f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(libc().umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, "pivot_root: unknown syscall number on this machine")
    _check(libc().syscall(nr, new_root.encode(), put_old.encode()), "pivot_root")


def loopback_up() -> None:
    """Bring `lo` up in the current netns with two ioctls (no `ip` exec, no pyroute2)."""
    import _socket
    import fcntl

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
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        unshare(CLONE_NEWNET)
        try:
            mount("/proc/thread-self/ns/net", pin, None, MS_BIND, None)
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


def enter_netns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


# Device nodes a minimal /dev offers: (name, major, minor).
DEV_NODES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)


def _ovl(path: str) -> str:
    """Escape a path for overlayfs options, where ',' and ':' separate values."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def enter_rootfs(lower: str, upper_base: str) -> None:
    """In a forked child: a private mount namespace whose root is the image rootfs.

    The pod writes into an overlay (image read-only below, ``upper_base/upper`` above) so pods
    never change the image; if overlayfs is unavailable the image is bind-mounted read-only.
    Then /proc, a tmpfs /dev with the usual device nodes, a tmpfs /tmp, and pivot_root into it.
    """
    import stat

    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    root = os.path.join(upper_base, "rootfs")
    upper = os.path.join(upper_base, "upper")
    work = os.path.join(upper_base, "work")
    for d in (root, upper, work):
        os.makedirs(d, exist_ok=True)
    try:
        opts = f"lowerdir={_ovl(lower)},upperdir={_ovl(upper)},workdir={_ovl(work)}"
        mount("overlay", root, "overlay", 0, opts)
    except OSError:
        mount(lower, root, None, MS_BIND | MS_REC, None)
        mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
    for d in ("proc", "dev", "tmp"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    dev = os.path.join(root, "dev")
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=64k")
    for name, major, minor in DEV_NODES:
        os.mknod(os.path.join(dev, name), stat.S_IFCHR | 0o666, os.makedev(major, minor))
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))
    mount("tmpfs", os.path.join(root, "tmp"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    os.chdir(root)
    try:
        pivot_root(".", ".")
        umount(".", MNT_DETACH)
    except OSError:
        os.chroot(".")
    os.chdir("/")


def ns_inode(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def kill_namespace_members(kind: str, inode: int, exclude: int, rounds: int = 5) -> int:
    """SIGKILL every process living in the namespace (`kind`: "mnt" or "net") with `inode`.

    A pod is its process tree, but daemons escape process groups with setsid() (busybox's
    `timeout` applet does, to watch its child). They cannot leave the pod's namespaces, so
    that is how the supervisor finds what the app left behind. Repeats while new ones appear
    (a process may fork during the scan).
    """
    import signal

    killed = 0
    for _ in range(rounds):
        found = 0
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == exclude:
                continue
            try:
                if ns_inode(name, kind) != inode:
                    continue
                os.kill(int(name), signal.SIGKILL)
                found += 1
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        killed += found
        if not found:
            break
    return killed
