"""A tool whose standard input is large and written while the caller still makes it
(`iptables-legacy-restore`, `ipset restore`).

Written in large blocks into a 1 MiB pipe. `subprocess.run(input=...)` feeds stdin 512
bytes at a time (PIPE_BUF): 12,000 writes and GIL hand-overs for a 10,000-endpoint filter
table, and in a busy agent each hand-over can wait out another thread's 5 ms switch
interval (the restore took 560-590 ms in the agent against 385 ms alone, 1.7-2.1 s beside a
spinning Python thread, where large writes took 450-560 ms). The pipe's size matters as
much: with Linux's default 64 KiB, a writer that outruns the reader blocks on every page the
reader frees, the two wake each other onto one CPU, and a restore fed while the agent
calculated ran at a third of its speed (the writes waited 330-400 ms; with 1 MiB, 65-70 ms).
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import threading
from collections.abc import Sequence

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux)
PIPE_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size's default


class FedProcess:
    """`args` started with a pipe for stdin and one for stdout and stderr together (tools
    like these say little, so reading it only at the end cannot block them)."""

    def __init__(self, args: Sequence[str], timeout: float = 60):
        """FileNotFoundError when the tool is not installed."""
        self.args = list(args)
        self.timeout = timeout
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # a smaller pipe still works, slower
            fcntl.fcntl(self.proc.stdin.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        self.watchdog = threading.Timer(timeout, self.proc.kill)
        self.watchdog.daemon = True
        self.watchdog.start()
        self.broken = False  # it stopped reading (a bad line): its output says why

    def write(self, text: str) -> None:
        if self.broken or not text:
            return
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text.encode())
        except BrokenPipeError:
            self.broken = True

    def finish(self) -> tuple[int, str]:
        """Close the input and wait: (exit status, what it printed); -9 when the timeout
        killed it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
            output = self.proc.stdout.read().decode(errors="replace")
            return self.proc.wait(), output
        finally:
            self.abort()

    def abort(self) -> None:
        """Kill it unless it has exited (nothing it had not committed takes effect)."""
        self.watchdog.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def run_fed(args: Sequence[str], text: str, timeout: float = 60) -> tuple[int, str]:
    """Run `args` on `text`: (exit status, output)."""
    proc = FedProcess(args, timeout)
    proc.write(text)
    return proc.finish()
