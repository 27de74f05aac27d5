"""The app's side of a pod: its own mount namespace rooted in the image, and the processes
found in the pod's namespaces once the app is gone.

Network namespaces (the pod's pin, entering it) and the syscall wrappers are kernel.ns's.
Only the calling process (the rkt CLI, which is single-threaded) or a freshly forked child is
ever moved between namespaces.
"""

from __future__ import annotations

import os

from kernel.ns import (
    CLONE_NEWNS,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
    pivot_root,
    umount,
    unshare,
)

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
