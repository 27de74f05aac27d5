"""Naming one process for good: a pid plus its start time.

After a crash or a reboot a pid may belong to someone else; its start time then differs.
Whoever records a process it started (the lab, the node service's state file) records
both, and whoever later stops or judges it checks both.
"""

from __future__ import annotations


def stat_fields(pid: int | str = "self") -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, from its state on (so index 1
    is the parent's pid, 11 and 12 user and system time, 19 the start time, all in clock
    ticks); None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces; fields follow the last ')'.
    return stat[stat.rfind(")") + 2 :].split()


def proc_starttime(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live process; None if gone or a zombie."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def same_process(pid: int | None, starttime: int | None) -> bool:
    return bool(pid) and starttime is not None and proc_starttime(pid) == starttime
