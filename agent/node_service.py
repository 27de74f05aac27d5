"""calico-node: the node service, a small supervisor of the node's programs.

    calico-node [--state-file PATH] [--backoff-max S] [--name N] [--ip ADDR/PLEN|autodetect]
                [--ip-autodetection-method M] [--as ASN] [--backend bird|direct]
                [--run-dir DIR] [--cni-bin-dir DIR] [--] [more calico-agent options...]

With `--name` it first does the node's start-up (agent.startup: finds the address,
registers the Node, installs the CNI plugins; a missing prerequisite is one line and exit
status 1, also kept in the state file as `error`), then runs `calico-agent` for that node
(its sockets, health file and bird.conf in the run dir, `$CALICO_RUN_DIR` by default) and,
in the bird backend, BIRD (`bird -f -c <run>/bird.conf -s <run>/bird.ctl`), started on a
bootstrap configuration (router id, no peers) until the agent renders the real one.
Without `--name` it runs `calico-agent` with the options after its own, as before.

As Calico's calico/node container supervises felix and BIRD, this process starts each
program of its list, restarts one
that dies, with a backoff (0.5 s doubling to `--backoff-max`, back to 0.5 s once a run
lasted STABLE_AFTER seconds), and logs every exit with its status or signal. SIGTERM or
SIGINT is forwarded to every program; the service waits for them (SIGKILL after
STOP_TIMEOUT) and exits 0. Run as the rkt pod `node` (`rkt run --net=host calico/node`, whose
app is `calico-node`) it is what `rkt list` shows as app `node`.

If the service itself dies (kill -9), its programs die with it (each gets SIGTERM from
the kernel as its parent goes: PR_SET_PDEATHSIG; rkt also kills the pod's process group),
and the pod exits: `rkt list` shows it exited and `calico-lab up` starts a new one. The
dataplane stays as the agent left it, so isolation holds while nothing runs.

`--state-file` keeps what a reader (`calico-lab status`) needs, rewritten atomically on
every change: the service's pid, and per program its pid and start time (clock ticks since
boot, so a reused pid is told apart), state ("running", "restarting", "stopped"),
restarts so far and the last exit.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from calico.tools import program
from kernel.proc import proc_starttime

log = logging.getLogger("calico-node")

BACKOFF_INITIAL = 0.5  # seconds before the first restart
BACKOFF_MAX = 10.0
STABLE_AFTER = 30.0  # a run this long resets the backoff
STOP_TIMEOUT = 10.0  # seconds a program gets to stop after SIGTERM
PR_SET_PDEATHSIG = 1


def describe_exit(status: int) -> str:
    """`waitpid` status as words: "exited with status 2", "killed by signal SIGKILL"."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    return f"killed by signal {name}"


@dataclass
class Program:
    """One supervised program."""

    name: str
    argv: list[str]
    # The argv of every start after the first, when it differs (BIRD's adds -R).
    restart_argv: list[str] | None = None
    pid: int | None = None
    starttime: int | None = None
    started: float = 0.0  # monotonic, of the current or last run
    started_at: float = 0.0  # wall clock, of the current or last run
    state: str = "stopped"  # running | restarting | stopped
    restarts: int = 0
    last_exit: str = ""
    last_exit_at: float | None = None
    backoff: float = BACKOFF_INITIAL
    due: float = 0.0  # monotonic time of the next start while restarting

    def argv_now(self) -> list[str]:
        """The argv of the next start: restart_argv once it has died at least once."""
        return self.restart_argv if self.restarts and self.restart_argv else self.argv

    def record(self) -> dict:
        return {
            "argv": self.argv_now(),
            "pid": self.pid,
            "starttime": self.starttime,
            "state": self.state,
            "restarts": self.restarts,
            "started_at": self.started_at or None,
            "last_exit": self.last_exit or None,
            "last_exit_at": self.last_exit_at,
        }


def _die_with_parent(parent: int) -> None:
    """In the child: SIGTERM when the service goes, however it goes."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it went before the request took effect
        os._exit(0)


@dataclass
class Supervisor:
    programs: list[Program]
    state_file: Path | None = None
    backoff_max: float = BACKOFF_MAX
    stable_after: float = STABLE_AFTER
    stop_timeout: float = STOP_TIMEOUT
    stopping: bool = False
    info: dict = field(default_factory=dict)  # start-up facts for the state file
    _wake_r: int = -1
    _wake_w: int = -1
    _signals: list[int] = field(default_factory=list)

    # -- running
    def run(self) -> int:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select
        log.info(
            "calico-node (pid %d) supervising %s",
            os.getpid(),
            ", ".join(p.name for p in self.programs),
        )
        for prog in self.programs:
            self._start(prog)
        while not self.stopping:
            self._reap()
            if self.stopping:
                break
            now = time.monotonic()
            for prog in self.programs:
                if prog.state == "restarting" and now >= prog.due:
                    self._start(prog)
            self._wait(self._next_timeout())
        why = signal.Signals(self._signals[0]).name if self._signals else "asked"
        log.info("%s: stopping %s", why, self._names() or "(nothing running)")
        self._stop_all()
        log.info("calico-node stopped")
        return 0

    def _on_stop(self, signum: int, _frame: object) -> None:
        # Only a flag and kill(2) here: the main loop logs, outside the signal handler.
        if not self.stopping:
            self._signals.append(signum)
        self.stopping = True
        self._forward(signal.SIGTERM)

    def _names(self) -> str:
        return ", ".join(p.name for p in self.programs if p.pid)

    def _forward(self, sig: int) -> None:
        for prog in self.programs:
            if prog.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(prog.pid, sig)

    def _next_timeout(self) -> float:
        due = [p.due for p in self.programs if p.state == "restarting"]
        if not due:
            return 5.0
        return max(0.0, min(due) - time.monotonic())

    def _wait(self, timeout: float) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 256):
                pass

    def _start(self, prog: Program) -> None:
        parent = os.getpid()
        argv = prog.argv_now()
        try:
            pid = os.fork()
        except OSError as exc:
            self._schedule(prog, f"could not fork: {exc}")
            return
        if pid == 0:  # the child: no Python of ours runs past exec
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                _die_with_parent(parent)
                os.execvp(argv[0], argv)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    os.write(2, f"calico-node: cannot run {argv[0]}: {exc}\n".encode())
            finally:
                os._exit(127)
        prog.pid, prog.starttime = pid, proc_starttime(pid)
        prog.started, prog.started_at = time.monotonic(), time.time()
        prog.state = "running"
        log.info("started %s (pid %d)", prog.name, pid)
        self._save()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for prog in self.programs:
                if prog.pid == pid:
                    self._exited(prog, status)

    def _exited(self, prog: Program, status: int) -> None:
        ran = time.monotonic() - prog.started
        prog.pid = prog.starttime = None
        prog.last_exit, prog.last_exit_at = describe_exit(status), time.time()
        if self.stopping:
            prog.state = "stopped"
            log.info("%s %s", prog.name, prog.last_exit)
            self._save()
            return
        if ran >= self.stable_after:
            prog.backoff = BACKOFF_INITIAL
        self._schedule(prog, f"{prog.last_exit} after {ran:.1f} s")

    def _schedule(self, prog: Program, why: str) -> None:
        delay = prog.backoff
        prog.backoff = min(self.backoff_max, prog.backoff * 2)
        prog.restarts += 1
        prog.state, prog.due = "restarting", time.monotonic() + delay
        log.warning("%s %s; restart %d in %.1f s", prog.name, why, prog.restarts, delay)
        self._save()

    def _stop_all(self) -> None:
        deadline = time.monotonic() + self.stop_timeout
        self._forward(signal.SIGTERM)
        killed = False
        while any(p.pid for p in self.programs):
            self._reap()
            if not any(p.pid for p in self.programs):
                break
            if time.monotonic() > deadline and not killed:
                log.warning("%s did not stop in %.0f s: SIGKILL", self._names(), self.stop_timeout)
                self._forward(signal.SIGKILL)
                killed = True
            self._wait(0.1)
        for prog in self.programs:
            prog.state = "stopped"
        self._save()

    def _save(self) -> None:
        if not self.state_file:
            return
        data = {
            "pid": os.getpid(),
            "starttime": proc_starttime(os.getpid()),
            "stopping": self.stopping,
            "time": time.time(),
            "programs": {p.name: p.record() for p in self.programs},
            **self.info,
        }
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.state_file)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.state_file, exc)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="calico-node",
        allow_abbrev=False,  # the agent's options pass through untouched
        description="The node service: runs calico-agent (the rest of the arguments) and "
        "restarts it when it dies.",
    )
    p.add_argument("--state-file", metavar="PATH", help="keep the supervised programs' state here")
    p.add_argument(
        "--backoff-max", type=float, default=BACKOFF_MAX, metavar="S",
        help=f"longest wait before a restart (default {BACKOFF_MAX:g} s)",
    )  # fmt: skip
    p.add_argument("--name", help="this node's name: do the start-up, then run its agent")
    p.add_argument(
        "--ip", default="autodetect", help="ADDR/PLEN or autodetect (default autodetect)"
    )
    p.add_argument(
        "--ip-autodetection-method", default="first-found",
        help="first-found, can-reach=DEST or interface=REGEX (default first-found)",
    )  # fmt: skip
    p.add_argument("--as", dest="as_number", metavar="ASN", help="this node's AS number")
    p.add_argument(
        "--backend", choices=("bird", "direct"),
        default=os.environ.get("CALICO_NETWORKING_BACKEND") or "bird",
        help="bird (BGP, default) or direct (routes via each node, flat L2 only)",
    )  # fmt: skip
    p.add_argument(
        "--run-dir", default=os.environ.get("CALICO_RUN_DIR") or "/var/run/calico",
        help="the node's runtime dir (default $CALICO_RUN_DIR, else /var/run/calico)",
    )  # fmt: skip
    p.add_argument("--cni-bin-dir", default="/opt/cni/bin", help="install the CNI plugins here")
    args, rest = p.parse_known_args(argv)
    if rest and rest[0] == "--":
        rest = rest[1:]
    return args, rest


def _tunnel_programs() -> list[Program]:
    """calico-tunl, always: tunl0 must be there whenever a pool turns IPIP on (an idle
    relay costs one process blocked in poll). Its counters go beside the agent's files."""
    sock = os.environ.get("CALICO_AGENT_SOCKET")
    run_dir = Path(
        os.environ.get("CALICO_RUN_DIR") or (os.path.dirname(sock) if sock else "/var/run/calico")
    )
    argv = [program("calico-tunl"), "--status-file", str(run_dir / "tunl0.json")]
    return [Program("calico-tunl", argv)]


BIRD_CONFIG = "bird.conf"
BIRD_CONTROL = "bird.ctl"


def agent_argv(name: str, backend: str, run_dir: Path, extra: list[str]) -> list[str]:
    """The agent of node `name`, with its sockets and files in the run dir."""
    return [
        "--nodename", name,
        "--backend", backend,
        "--run-dir", str(run_dir),
        "--api-socket", str(run_dir / "agent.sock"),
        "--cni-socket", str(run_dir / "cni.sock"),
        "--health-file", str(run_dir / "agent-health.json"),
        *extra,
    ]  # fmt: skip


def bird_argv(run_dir: Path) -> list[str]:
    return [
        program("bird"), "-f",
        "-c", str(run_dir / BIRD_CONFIG),
        "-s", str(run_dir / BIRD_CONTROL),
        "-P", str(run_dir / "bird.pid"),
    ]  # fmt: skip


def programs_for(
    agent_args: list[str], backend: str = "direct", run_dir: Path | None = None
) -> list[Program]:
    """What the node service runs: the agent, calico-tunl, and BIRD in the bird backend."""
    progs = [Program("calico-agent", [program("calico-agent"), *agent_args]), *_tunnel_programs()]
    if backend == "bird" and run_dir is not None:
        # Restarted with -R (graceful restart recovery): its OPEN then says it kept
        # forwarding, so its peers hold the routes they learned from it until its
        # End-of-RIB instead of dropping them the moment the session is back (RFC 4724
        # 4.2), and its kernel protocol prunes nothing before it has relearned.
        argv = bird_argv(run_dir)
        progs.append(Program("bird", argv, restart_argv=[*argv, "-R"]))
    return progs


def write_bootstrap_config(run_dir: Path, name: str, address: str) -> None:
    """A bird.conf BIRD can start on (router id, no peers), unless the agent's is there."""
    from agent.bgp.render import render_bootstrap
    from agent.bgp.writer import write_atomically

    path = run_dir / BIRD_CONFIG
    try:
        current = path.read_text()
    except OSError:
        current = ""
    if f"router id {address};" not in current:
        write_atomically(path, render_bootstrap(name, address))


def _fail(state_file: Path | None, info: dict, why: str) -> int:
    log.error("%s", why)
    print(f"calico-node: {why}", file=sys.stderr)
    if state_file:
        Supervisor(
            [], state_file=state_file, info={**info, "phase": "failed", "error": why}
        )._save()
    return 1


def main(argv: list[str] | None = None) -> int:
    args, agent_args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s calico-node[%(process)d] %(levelname)s %(message)s",
    )
    state_file = Path(args.state_file) if args.state_file else None
    info: dict = {}
    if args.name:
        from agent.startup import StartupError, start

        run_dir = Path(args.run_dir)
        info = {"node": args.name, "backend": args.backend, "run_dir": str(run_dir)}
        if state_file:
            Supervisor([], state_file=state_file, info={**info, "phase": "starting"})._save()
        try:
            started = start(
                args.name, args.ip, args.ip_autodetection_method, args.as_number,
                run_dir, args.cni_bin_dir,
            )  # fmt: skip
        except StartupError as exc:
            return _fail(state_file, info, str(exc))
        address = str(started.address.ip)
        info.update(address=str(started.address), phase="running")
        log.info(
            "node %s: address %s, %s CNI plugins in %s, backend %s",
            args.name, started.address, "C" if started.native_plugins else "Python",
            args.cni_bin_dir, args.backend,
        )  # fmt: skip
        if args.backend == "bird":
            try:
                write_bootstrap_config(run_dir, args.name, address)
            except OSError as exc:
                return _fail(state_file, info, f"cannot write the BIRD bootstrap config: {exc}")
        progs = programs_for(
            agent_argv(args.name, args.backend, run_dir, agent_args), args.backend, run_dir
        )
    else:
        progs = programs_for(agent_args)
    sup = Supervisor(
        progs,
        state_file=state_file,
        backoff_max=max(BACKOFF_INITIAL, args.backoff_max),
        info=info,
    )
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
