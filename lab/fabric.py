"""Kernel plumbing for the lab: commands, network namespaces, links, mounts, processes.

Everything here is a thin, idempotent wrapper around `ip`, `mount`, `umount`, `nsenter`
and `unshare` (util-linux, iproute2), or a read of /proc. `lab.cluster` decides *what* to
make; this module only knows *how*, and how to find and remove it again. Subprocesses are
used rather than pyroute2: the commands are the ones an operator would type to inspect or
repair a lab by hand, and the import stays cheap for `calico-lab exec`.

Removal functions never fail on "already gone": `down` calls them after crashes, when
anything may or may not exist.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

# One definition for the lab and the node service; lab callers use them from here.
from kernel.proc import proc_starttime, same_process, stat_fields  # noqa: F401

NETNS_DIR = Path("/run/netns")
IFNAMSIZ = 15  # longest interface name the kernel takes


class LabError(Exception):
    """A lab operation failed; the message is one line meant for the operator."""


def run(
    args: list[str], *, check: bool = True, input: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    """Run a command, capture its output; on failure raise LabError with its stderr."""
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise LabError(f"{args[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{shlex.join(args)}: timed out after {timeout}s") from exc
    if check and proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split()) or f"exit {proc.returncode}"
        raise LabError(f"{shlex.join(args)}: {detail}")
    return proc


def check_ifname(name: str) -> str:
    if not name or len(name) > IFNAMSIZ or "/" in name or name.strip() != name:
        raise LabError(f"bad interface name {name!r} (at most {IFNAMSIZ} characters)")
    return name


# --- network namespaces -------------------------------------------------------------


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def netns_exists(name: str) -> bool:
    return netns_path(name).exists()


def netns_list() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_add(name: str) -> None:
    run(["ip", "netns", "add", name])


def netns_delete(name: str) -> None:
    """Remove a named network namespace (its links go with it once nothing holds it)."""
    path = netns_path(name)
    if not path.exists():
        return
    proc = run(["ip", "netns", "delete", name], check=False)
    if proc.returncode != 0 and path.exists():
        # A half-made entry (file created, bind mount not done) or a busy mount.
        umount(path)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LabError(f"cannot remove network namespace {name}: {exc}") from exc


def sysctl_in_netns(netns: str, settings: dict[str, str]) -> None:
    """Set net.* sysctls inside a network namespace (the root namespace is never touched)."""
    args = ["nsenter", f"--net={netns_path(netns)}", "sysctl", "-q", "-w"]
    args += [f"{k}={v}" for k, v in settings.items()]
    run(args)


# --- links --------------------------------------------------------------------------


def ip(netns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`ip [-n NETNS] ARGS...`"""
    base = ["ip"] if netns is None else ["ip", "-n", netns]
    return run([*base, *args], check=check)


def link_exists(name: str, netns: str | None = None) -> bool:
    return ip(netns, "link", "show", "dev", name, check=False).returncode == 0


def link_delete(name: str, netns: str | None = None) -> None:
    if link_exists(name, netns):
        ip(netns, "link", "delete", "dev", name, check=False)


def root_ipv4_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace has an address or a route in (not default)."""
    nets: list[ipaddress.IPv4Network] = []
    for entry in json.loads(ip(None, "-j", "-4", "addr", "show").stdout or "[]"):
        for a in entry.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for route in json.loads(ip(None, "-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst", "")
        if dst in ("", "default", "0.0.0.0/0"):
            continue
        try:
            nets.append(ipaddress.ip_network(dst, strict=False))
        except ValueError:
            continue
    return nets


# --- mounts -------------------------------------------------------------------------


def _unescape_mount_path(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountpoints() -> list[str]:
    """Mount points of this process's mount namespace, in mount order."""
    with open("/proc/self/mountinfo") as f:
        return [_unescape_mount_path(line.split()[4]) for line in f]


def mountpoints_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest (last mounted) first."""
    root = os.path.abspath(path)
    found = [m for m in mountpoints() if m == root or m.startswith(root + "/")]
    return list(reversed(found))


def is_mountpoint(path: Path) -> bool:
    return os.path.abspath(path) in mountpoints()


def umount(path: Path) -> None:
    """Unmount every mount stacked on `path`; lazily if it is busy. Absent is fine."""
    for _ in range(8):
        if not is_mountpoint(path):
            return
        if run(["umount", str(path)], check=False).returncode != 0:
            run(["umount", "--lazy", str(path)], check=False)
    if is_mountpoint(path):
        raise LabError(f"cannot unmount {path}")


def make_private_bind(path: Path) -> None:
    """Bind-mount a directory onto itself and make it private (as `ip netns` does for
    /run/netns), so that namespace files can be pinned inside it without the pin
    propagating into the very namespace it pins."""
    path.mkdir(parents=True, exist_ok=True)
    if not is_mountpoint(path):
        run(["mount", "--bind", str(path), str(path)])
    run(["mount", "--make-private", str(path)])


# --- processes ----------------------------------------------------------------------


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_process(pid: int, starttime: int | None, timeout: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`, the one process named by pid + start time.

    Returns True if it was running. A pid whose start time differs is someone else's:
    it is left alone."""
    if starttime is None or proc_starttime(pid) != starttime:
        _reap(pid)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if proc_starttime(pid) != starttime:
            return True
        time.sleep(0.02)
    if proc_starttime(pid) == starttime:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc_starttime(pid) == starttime:
            _reap(pid)
            time.sleep(0.02)
    _reap(pid)
    return True


def ns_id(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of a namespace file, which names the namespace itself."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_namespaces(ids: set[tuple[int, int]]) -> list[int]:
    """Processes whose network or mount namespace is one of `ids`."""
    if not ids:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        for kind in ("net", "mnt"):
            if ns_id(f"/proc/{pid}/ns/{kind}") in ids:
                found.append(pid)
                break
    return found


def pids_with_argument(argument: str, program: str) -> list[int]:
    """Live processes running `program` with `argument` as one of their arguments."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == program.encode() and argument.encode() in argv:
            found.append(int(entry))
    return found


def own_lineage() -> set[int]:
    """This process and its ancestors: never to be stopped by ourselves."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            fields = stat_fields(pid)
            if fields is None:
                break
            pid = int(fields[1])
        except (OSError, ValueError, IndexError):
            break
    return pids
