"""Pods: prepare (pod dir, netns, CNI ADD), supervise, stop, remove, garbage-collect.

Process model. `rkt run` prepares the pod itself, then forks the pod supervisor: a small
process in its own session (so it outlives the CLI, a closed terminal and a restarted agent)
that sits in the pod's netns, forks the app and waits for it. The app gets its own process
group (stop signals the whole group) and, for images with a rootfs, its own mount namespace
rooted in the image. In the foreground the CLI waits for the supervisor and exits with the
app's exit code; the app writes straight to the CLI's stdout (stderr too: rkt's own log
lines go to stderr, the app's output to stdout). With --detach the CLI returns once the app
has started and the app writes to ``<pod>/log``.

Liveness is a lock, not a pid: ``<pod>/lock`` is held (flock, exclusive) by the CLI while it
prepares the pod and by the supervisor while the pod runs - the supervisor inherits the
CLI's open file. A pod nobody holds is not running, whatever its pid file says; rm and gc
take the same lock, so they never race a live pod or each other.
"""

from __future__ import annotations

# The C module under `signal`: the wrapper builds IntEnums (enum, functools) at import,
# ~4 ms of every `rkt run`; the calls and constants used here are the same on both.
import _signal as signal
import errno
import fcntl
import os
import sys
import time

from kernel import ns as netns
from rkt import isolation, netconf
from rkt.record import factory, record
from rkt.state import (
    DELETING,
    EXITED,
    GARBAGE,
    LOCK_FILE,
    LOG_FILE,
    NETNS_FILE,
    PREPARED,
    RUNNING,
    AppState,
    NetworkState,
    PodState,
    StateError,
    effective_state,
    new_uuid,
    read_state,
    resolve_uuid,
    write_state,
)

TYPE_CHECKING = False  # collections.abc costs ~1 ms of every `rkt run`
if TYPE_CHECKING:
    from collections.abc import Callable


class RunError(Exception):
    """`rkt run` failed before the app started; everything it made has been removed."""


class StartedUnreported(Exception):
    """The app was started and the pod runs on, but rkt could not say so (stdout closed)."""


@record
class RunOptions:
    image: str
    exec_: str | None = None
    args: list[str] = factory(list)
    nets: list[str] = factory(list)  # raw --net values ("" = bare --net)
    app_name: str | None = None
    detach: bool = False
    interactive: bool = False
    uuid_file_save: str | None = None
    set_env: dict[str, str] = factory(dict)


def _warn(msg: str) -> None:
    sys.stderr.write(f"rkt: {msg}\n")
    sys.stderr.flush()


class Runtime:
    def __init__(
        self,
        data_dir: str,
        local_config: str,
        warn: Callable[[str], None] = _warn,
        debug: Callable[[str], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.local_config = local_config
        self.pods_dir = os.path.join(data_dir, "pods")
        self.warn = warn
        self.debug = debug  # `rkt --debug`: a line per step of a run, with its time (rkt.cli)

    # -- lookup -------------------------------------------------------------------------------
    def pod_dir(self, uuid: str) -> str:
        return os.path.join(self.pods_dir, uuid)

    def uuids(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.pods_dir) if not n.startswith(".")]
        except FileNotFoundError:
            return []

    def resolve(self, prefix: str) -> str:
        return resolve_uuid(prefix, self.uuids())

    def is_managed(self, uuid: str) -> bool:
        """Does a live rkt process (preparing CLI or supervisor) hold this pod?"""
        try:
            fd = os.open(os.path.join(self.pod_dir(uuid), LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def judge(self, uuid: str, pod: PodState) -> str:
        """The effective state of a pod: its lock is probed (3 syscalls) only when the record
        says running, the one state whose report depends on it (`effective_state`)."""
        return effective_state(pod.state, pod.state == RUNNING and self.is_managed(uuid))

    def pods(self) -> list[tuple[PodState, str]]:
        """(state record, effective state) of every readable pod, oldest first."""
        out = []
        for u in self.uuids():
            try:
                pod = read_state(self.pod_dir(u))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # being created or removed right now
            out.append((pod, self.judge(u, pod)))
        out.sort(key=lambda p: (p[0].created, p[0].uuid))
        return out

    def get(self, prefix: str) -> tuple[PodState, str]:
        uuid = self.resolve(prefix)
        try:
            pod = read_state(self.pod_dir(uuid))
        except (OSError, ValueError) as e:
            raise StateError(f"cannot read pod {uuid}: {e}") from None
        return pod, self.judge(uuid, pod)

    # -- run ----------------------------------------------------------------------------------
    def run(self, opts: RunOptions) -> int:
        from rkt import cni
        from rkt.images import ImageError, ImageStore

        try:
            requests = netconf.parse_net_flags(opts.nets)
            user_nets = []
            if not any(r.name in (netconf.HOST, netconf.NONE) for r in requests):
                user_nets = netconf.load_net_dir(os.path.join(self.local_config, "net.d"))
            plan = netconf.plan_networks(
                requests, user_nets, netconf.builtin_networks(self.data_dir)
            )
        except netconf.NetError as e:
            raise RunError(str(e)) from None
        for w in plan.warnings:
            self.warn(w)
        store = ImageStore(self.data_dir)
        try:
            image = store.resolve(opts.image)
        except ImageError as e:
            raise RunError(str(e)) from None
        argv = ([opts.exec_] if opts.exec_ else list(image.exec)) + list(opts.args)
        if not argv or not argv[0]:
            raise RunError(f"image {image.display_name} has no command: give --exec")
        debug = self.debug
        if debug:
            joins = ", ".join(f"{n.config.name} ({n.ifname})" for n in plan.networks)
            debug(f"planned: image {image.display_name}; networks: {joins or plan.mode}")

        uuid = new_uuid()
        pdir = self.pod_dir(uuid)
        os.makedirs(self.pods_dir, exist_ok=True)
        # Held (shared) until the ADDs are done: `rkt gc` sees this pod before its CNI GC.
        gc_lock = self.gc_lock(exclusive=False).__enter__() if plan.networks else None
        try:
            os.mkdir(pdir, 0o750)
        except BaseException:
            if gc_lock is not None:
                gc_lock.release()
            raise
        lock_fd = os.open(
            os.path.join(pdir, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        pod = PodState(
            uuid=uuid,
            state=PREPARED,
            app=AppState(
                name=opts.app_name or image.app_name,
                image_name=image.display_name,
                image_id=image.id,
                exec=argv,
            ),
            created=time.time(),
            net_mode=plan.mode,
            cni_path=cni.default_cni_path(),
            detached=opts.detach,
            interactive=opts.interactive,
        )
        start: _Start | None = None
        try:
            # One record before anything is made: where the netns pin goes and every network
            # to join, so that a crash half-way still tells gc what to unmount and CNI GC
            # which attachments are this pod's (DEL is owed only for those marked added).
            if plan.mode != "host":
                pod.netns = os.path.join(pdir, NETNS_FILE)
            pod.networks = [
                NetworkState(
                    name=sel.config.name,
                    ifname=sel.ifname,
                    args=sel.args,
                    conf=sel.config.conf,
                    conf_file=sel.config.path,
                )
                for sel in plan.networks
            ]
            write_state(pdir, pod)
            if debug:
                debug(f"pod {uuid} recorded (prepared)")
            if pod.netns:
                netns.create_pinned_netns(pod.netns)
                if debug:
                    debug("network namespace made")

            # The supervisor and the app are made while the first network is added: the app's
            # root (mount namespace, overlay, /proc, /dev, pivot_root; ~5 ms) is ready when
            # the last ADD returns, and the app execs on the word go, not before.
            def spawn() -> None:
                nonlocal start
                start = self._spawn(pod, pdir, image, opts, gc_lock)

            # Each ADD after the first records the one before it while its plugin runs: the
            # record is as early as if written between the two (a DEL is owed from the moment
            # the ADD returned), and the 0.4-1 ms write leaves the path to the app's start.
            def record() -> None:
                write_state(pdir, pod)

            for i, ns in enumerate(pod.networks):
                inv = cni.Invocation(uuid, pod.netns, ns.ifname, ns.args, pod.cni_path)
                try:
                    ns.result = cni.add(ns.conf, inv, meanwhile=record if i else spawn)
                except BaseException as e:
                    # The CNI spec asks for a DEL after a failed ADD (a plugin that failed
                    # half-way may hold an address), also when rkt itself failed meanwhile;
                    # the DEL's own failure here is only noise.
                    try:
                        cni.delete(ns.conf, inv, None)
                    except cni.PluginFailed:
                        pass
                    if isinstance(e, cni.PluginFailed):
                        raise RunError(f"error adding network {ns.name!r}: {e}") from None
                    raise
                ns.ip4 = cni.parse_result(ns.result).ip4
                ns.added = True
                if debug:
                    debug(f"network {ns.name} added ({ns.ifname}: {ns.ip4 or 'no IPv4'})")
            if start is None:  # no network to add (host, none)
                spawn()
            assert start is not None
            self._record_running(pod, pdir, start)  # with the last network's result
            if debug:
                debug(f"recorded running (app pid {pod.pid})")
            if opts.uuid_file_save:
                with open(opts.uuid_file_save, "w") as f:
                    f.write(uuid)
            store.touch(image)
            if gc_lock is not None:
                gc_lock.release()
            return self._go(pod, start, opts)
        except BaseException:
            if start is not None and start.app_may_run:
                # Go was said and the app was not reported failed: it may be running, and
                # its record says so. Undoing now would orphan it (the supervisor gone, its
                # networks deleted); `rkt stop` / `rkt rm` end it as any other pod.
                os.close(lock_fd)
                raise
            if start is not None:
                start.abort()
            self._discard(pod, pdir)
            os.close(lock_fd)
            if gc_lock is not None:
                gc_lock.release()
            raise

    def _discard(self, pod: PodState, pdir: str) -> None:
        """Undo a failed run: DEL what was added, drop the netns, remove the pod dir."""
        import shutil

        self.teardown(pod)
        if pod.netns:  # kept by a failed DEL; `rkt gc` (CNI GC) releases what it held
            try:
                netns.remove_pinned_netns(pod.netns)
            except OSError as e:
                self.warn(f"pod {pod.uuid}: cannot remove its netns: {e}")
        shutil.rmtree(pdir, ignore_errors=True)

    def _spawn(
        self, pod: PodState, pdir: str, image, opts: RunOptions, gc_lock: _GCLock | None
    ) -> _Start:
        """Fork the pod supervisor (it inherits the pod's lock); the app it forks waits for go."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        sup = os.fork()
        if sup == 0:  # the pod supervisor; never returns
            os.close(ready_r)
            os.close(go_w)  # only the CLI says go: if it dies, the app sees EOF
            if gc_lock is not None:
                gc_lock.release()  # the CLI's to hold, not the pod's (gc would wait forever)
            code = 1
            try:
                code = _supervise(pod, pdir, image, opts, ready_w, go_r)
            except BaseException as e:  # report, never fall back into the CLI's code
                try:
                    os.write(ready_w, f"E{e}".encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(go_r)
        return _Start(sup, ready_r, go_w)

    def _record_running(self, pod: PodState, pdir: str, start: _Start) -> None:
        """The networks are up: record the pod as running, with the last network's result.

        Written by the CLI, before go, so that `rkt run --detach` answers as soon as the app
        has exec'd and `rkt status` right after it already says running: the supervisor
        reported the app's pid (P<pid>) when it forked it, 20 ms ago. If the exec then fails
        the run is undone (pod dir and all); if this CLI dies before go the app ends
        unstarted, the lock is free and the record reads as exited (`effective_state`)."""
        msg = start.read_until_newline()
        if not msg.startswith(b"P"):
            text = msg.decode(errors="replace")
            raise RunError(text[1:] if text else "pod supervisor died before the app started")
        pod.pid = int(msg[1:])
        pod.supervisor_pid = start.sup
        pod.started = time.time()
        pod.set_state(RUNNING)
        write_state(pdir, pod)

    def _go(self, pod: PodState, start: _Start, opts: RunOptions) -> int:
        """The networks are up and recorded: let the app exec, wait until it has."""
        start.go()
        sup = start.sup
        msg = start.read_to_end().decode(errors="replace")
        if not msg.startswith("R"):
            os.waitpid(sup, 0)
            start.sup = 0
            start.app_may_run = False
            pod.state = PREPARED  # nothing of the app remains; undo the pod as a failed run
            raise RunError(msg[1:] if msg else "pod supervisor died before the app started")
        if self.debug:
            self.debug(f"app started: {pod.app.exec[0]} exec'd")
        if opts.detach:
            try:
                sys.stdout.write(pod.uuid + "\n")
                sys.stdout.flush()
            except BrokenPipeError:  # the caller stopped reading; the pod is not its to undo
                raise StartedUnreported(
                    f"pod {pod.uuid} is running, but stdout is closed: its UUID is not sent"
                ) from None
            return 0
        # Foreground: Ctrl-C is meant for the app (rkt ran it in the terminal); other signals
        # that end the CLI leave the pod running under its supervisor.
        app_pgid = pod.pid

        def forward(signum: int, _frame: object) -> None:
            try:
                os.killpg(app_pgid, signum)
            except ProcessLookupError:
                pass

        signal.signal(signal.SIGINT, forward)
        _, status = os.waitpid(sup, 0)
        return (
            os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        )

    # -- stop ---------------------------------------------------------------------------------
    def stop(self, prefix: str, force: bool, timeout: float = 10.0) -> str:
        uuid = self.resolve(prefix)
        pod = read_state(self.pod_dir(uuid))
        if pod.state != RUNNING or not self.is_managed(uuid) or pod.pid is None:
            raise StateError(f"pod {uuid} is not running")
        sig = signal.SIGKILL if force else signal.SIGTERM
        try:
            os.killpg(pod.pid, sig)
        except ProcessLookupError:
            pass
        if not self.wait_exited(uuid, timeout):
            if force:
                raise StateError(f"pod {uuid} did not stop")
            os.killpg(pod.pid, signal.SIGKILL)
            if not self.wait_exited(uuid, 5.0):
                raise StateError(f"pod {uuid} did not stop")
        return uuid

    def wait_exited(self, uuid: str, timeout: float | None) -> bool:
        """Block until the supervisor lets go of the pod (it writes the exit state first)."""
        try:
            fd = os.open(os.path.join(self.pod_dir(uuid), LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return True
        try:
            return _flock_timeout(fd, fcntl.LOCK_SH, timeout)
        finally:
            os.close(fd)

    # -- rm / gc ------------------------------------------------------------------------------
    def _lock_for_removal(self, uuid: str) -> int:
        fd = os.open(os.path.join(self.pod_dir(uuid), LOCK_FILE), os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateError(
                f"pod {uuid} is active (running or being prepared): stop it first"
            ) from None
        return fd

    def remove(self, prefix: str, force: bool = False) -> str:
        """rkt rm: CNI DEL of every network, then the pod dir. A DEL that fails (etcd down)
        keeps the pod, in state `deleting` with that network still owed a DEL, and raises
        TeardownFailed: the next `rkt rm` (or `rkt gc`) retries it. With force the pod is
        removed anyway; what the failed DEL held stays until `rkt gc` (CNI GC) frees it."""
        uuid = self.resolve(prefix)
        fd = self._lock_for_removal(uuid)
        try:
            self._remove_locked(uuid, force)
        finally:
            os.close(fd)
        return uuid

    def _remove_locked(self, uuid: str, force: bool = False) -> None:
        import shutil

        pdir = self.pod_dir(uuid)
        try:
            pod = read_state(pdir)
        except (OSError, ValueError):
            pod = None
        if pod is not None:
            if pod.state == RUNNING:  # its supervisor died without recording the exit
                pod.state = EXITED
            if pod.state != DELETING:
                pod.set_state(DELETING)
                write_state(pdir, pod)
            errors = self.teardown(pod, report=False)
            if errors:
                write_state(pdir, pod)  # what is still owed a DEL, for the retry
                if not force:
                    raise TeardownFailed(pod.uuid, errors)
                for e in errors:
                    self.warn(f"{e} (removed anyway, --force: `rkt gc` releases what it held)")
        else:
            netns.remove_pinned_netns(os.path.join(pdir, NETNS_FILE))
        shutil.rmtree(pdir, ignore_errors=True)

    def teardown(self, pod: PodState, report: bool = True) -> list[str]:
        """CNI DEL of every added network in reverse order (same CNI_PATH and args as ADD),
        then the netns pin. Every network is tried; one that fails stays `added` (a DEL is
        still owed) and the pin stays too, so a retry runs the same DEL. Returns one line
        per failure (and, with report, prints them)."""
        errors: list[str] = []
        added = [n for n in pod.networks if n.added]
        if added:
            from rkt import cni

            # CNI_NETNS only when the namespace is reachable from here: a pin made in another
            # mount namespace is an empty file here, and plugins clean up without a netns.
            nspath = pod.netns if pod.netns and netns.is_pinned(pod.netns) else ""
            for n in reversed(added):
                inv = cni.Invocation(pod.uuid, nspath, n.ifname, n.args, pod.cni_path)
                try:
                    cni.delete(n.conf, inv, n.result)
                except cni.PluginFailed as e:
                    errors.append(f"pod {pod.uuid}: cannot remove network {n.name!r}: {e}")
                    continue
                n.added = False
        if pod.netns and not errors:
            try:
                netns.remove_pinned_netns(pod.netns)
            except OSError as e:
                errors.append(f"pod {pod.uuid}: cannot remove its netns: {e}")
        if report:
            for e in errors:
                self.warn(e)
        return errors

    def gc(self, grace: float, now: float | None = None) -> GCResult:
        """rkt gc: exited pods have their networks torn down and become garbage; garbage older
        than the grace period is removed, and so are aborted preparations (a prepared pod
        nobody holds: the CLI preparing it died). A teardown that fails (etcd down) keeps the
        pod, its failed networks still owed a DEL that every later gc retries. Then CNI GC
        (spec 1.1.0) runs for every network in net.d with the attachments of the pods that
        still exist here, so whatever a forgotten pod held is released (cni.gc_networks)."""
        now = time.time() if now is None else now
        out = GCResult()
        for uuid in self.uuids():
            try:
                fd = self._lock_for_removal(uuid)
            except (StateError, FileNotFoundError):
                continue
            try:
                self._gc_pod(uuid, grace, now, out)
            except TeardownFailed as e:
                out.errors += [f"{line} (pod kept: the next rkt gc retries)" for line in e.errors]
            finally:
                os.close(fd)
        out.errors += self.gc_networks()
        for e in out.errors:
            self.warn(e)
        return out

    def _gc_pod(self, uuid: str, grace: float, now: float, out: GCResult) -> None:
        pdir = self.pod_dir(uuid)
        try:
            pod = read_state(pdir)
        except (OSError, ValueError):
            self._remove_locked(uuid)
            out.removed.append(uuid)
            return
        if pod.state in (PREPARED, DELETING):
            self._remove_locked(uuid)
            out.removed.append(uuid)
            return
        if pod.state == RUNNING:
            pod.state = EXITED
        if pod.state == EXITED:
            self.warn(f"moving pod {uuid} to garbage")
            pod.set_state(GARBAGE)
            pod.gc_marked = now
        if pod.state == GARBAGE and (any(n.added for n in pod.networks) or pod.netns):
            errors = self.teardown(pod, report=False)  # first try, or a retry
            write_state(pdir, pod)
            if errors:
                raise TeardownFailed(uuid, errors)
            pod.netns = ""
        write_state(pdir, pod)
        if pod.state == GARBAGE and now - (pod.gc_marked or now) >= grace:
            self.warn(f"garbage collecting pod {uuid}")
            self._remove_locked(uuid)
            out.removed.append(uuid)

    def attachments(self) -> dict[str, list[dict[str, str]]]:
        """network name -> `cni.dev/valid-attachments` of every pod that still exists here,
        whatever its state (a pod being prepared records a network before its ADD)."""
        out: dict[str, list[dict[str, str]]] = {}
        for u in self.uuids():
            try:
                pod = read_state(self.pod_dir(u))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # no state yet: no network either (recorded before ADD)
            for n in pod.networks:
                out.setdefault(n.name, []).append({"containerID": pod.uuid, "ifname": n.ifname})
        return out

    def gc_networks(self) -> list[str]:
        """CNI GC of every network in net.d, under the data dir's GC lock held exclusively
        (`rkt run` holds it shared while it prepares a pod, so a pod whose ADD is under way
        is never collected). One line per network that failed; a broken net.d is one too."""
        from rkt import cni

        try:
            nets = netconf.load_net_dir(os.path.join(self.local_config, "net.d"))
        except netconf.NetError as e:
            return [f"CNI GC skipped: {e}"]
        if not nets:
            return []
        with self.gc_lock(exclusive=True):
            valid = self.attachments()
            errors = []
            for net in nets:
                try:
                    cni.gc(net.conf, valid.get(net.name, []), cni.default_cni_path())
                except cni.PluginFailed as e:
                    errors.append(f"CNI GC of network {net.name!r} failed: {e}")
            return errors

    def gc_lock(self, exclusive: bool) -> _GCLock:
        return _GCLock(os.path.join(self.data_dir, GC_LOCK_FILE), exclusive)


GC_LOCK_FILE = "cni-gc.lock"


class _Start:
    """The CLI's ends of a supervisor forked before the ADDs: its pid, the pipe on which it
    reports the app forked (P<pid> and a newline) and then started (R) or not (E<why>, also
    instead of P), and the pipe that says go."""

    def __init__(self, sup: int, ready_r: int, go_w: int) -> None:
        self.sup = sup
        self.ready_r = ready_r
        self.go_w = go_w
        self._buf = b""
        # From the moment go is sent until the supervisor says the app failed: the app may
        # be running, so the run must not be undone (Runtime.run).
        self.app_may_run = False

    def read_until_newline(self) -> bytes:
        """The first report (without its newline), or everything up to EOF if it has none."""
        while b"\n" not in self._buf:
            c = os.read(self.ready_r, 4096)
            if not c:
                msg, self._buf = self._buf, b""
                return msg
            self._buf += c
        msg, _, self._buf = self._buf.partition(b"\n")
        return msg

    def read_to_end(self) -> bytes:
        """What is left until the supervisor closes its end; the pipe is closed after."""
        chunks = [self._buf]
        self._buf = b""
        while True:
            c = os.read(self.ready_r, 4096)
            if not c:
                break
            chunks.append(c)
        os.close(self.ready_r)
        self.ready_r = -1
        return b"".join(chunks)

    def go(self) -> None:
        self.app_may_run = True
        try:
            os.write(self.go_w, b"G")
        except BrokenPipeError:
            pass  # the app failed before exec: the supervisor's report says why
        os.close(self.go_w)
        self.go_w = -1

    def abort(self) -> None:
        """The run failed before go: closing the go pipe ends the app unstarted and with
        it the supervisor; it is reaped before the pod is undone. Idempotent."""
        for attr in ("go_w", "ready_r"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
        if self.sup:
            try:
                os.waitpid(self.sup, 0)
            except ChildProcessError:
                pass
            self.sup = 0


class _GCLock:
    """`<dir>/cni-gc.lock`: shared by `rkt run` from its pod dir until its ADDs are done,
    exclusive for `rkt gc`'s CNI GC (which must see every pod that has attachments)."""

    def __init__(self, path: str, exclusive: bool) -> None:
        self.path = path
        self.op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        self.fd: int | None = None

    def __enter__(self) -> _GCLock:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, self.op)
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __exit__(self, *exc: object) -> None:
        self.release()


@record
class GCResult:
    removed: list[str] = factory(list)
    errors: list[str] = factory(list)


class TeardownFailed(StateError):
    """A CNI DEL failed: the pod is kept with that network still owed a DEL."""

    def __init__(self, uuid: str, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.uuid = uuid
        self.errors = errors


def _flock_timeout(fd: int, op: int, timeout: float | None) -> bool:
    """flock with a deadline: blocking wait interrupted by a timer, no polling."""
    if timeout is None:
        fcntl.flock(fd, op)
        return True

    class _Expired(Exception):
        pass

    def expire(_s: int, _f: object) -> None:
        raise _Expired

    old = signal.signal(signal.SIGALRM, expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.001))
        try:
            fcntl.flock(fd, op)
            return True
        except _Expired:
            return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- the pod supervisor (runs in the forked child) --------------------------------------------
def _supervise(pod: PodState, pdir: str, image, opts: RunOptions, ready_w: int, go_r: int) -> int:
    os.setsid()
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_IGN)
    if opts.detach:
        # The caller may read our stdout through a pipe: holding it would keep that read open.
        null = os.open(os.devnull, os.O_RDWR)
        log = os.open(os.path.join(pdir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
    if pod.netns:
        netns.enter_netns(pod.netns)
    # A foreground, non-interactive app writes into a pipe that the supervisor copies both
    # to rkt's stdout and to <pod>/log, so its output is kept as a detached pod's is (the
    # node API serves it). An interactive app keeps the terminal: its output is not kept.
    tee: tuple[int, int] | None = None
    if not opts.detach and not opts.interactive:
        tee = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    app = os.fork()
    if app == 0:
        os.close(err_r)
        if tee is not None:
            os.dup2(tee[1], 1)  # dup2 clears O_CLOEXEC on the copy
        try:
            _exec_app(pod, pdir, image, opts, go_r, err_w)
        except _NoGo:  # the run failed before go: the CLI undoes the pod
            os.write(err_w, _NO_GO)
            os._exit(0)
        except BaseException as e:
            try:
                os.write(err_w, f"cannot start {pod.app.exec[0]!r}: {_describe(e)}".encode())
            finally:
                os._exit(127)
    os.close(err_w)
    os.close(go_r)
    os.write(ready_w, f"P{app}\n".encode())  # the CLI records it (Runtime._record_running)
    relay = None
    if tee is not None:
        os.close(tee[1])
        relay = _start_relay(tee[0], pdir)
    # The app's own mount namespace, held open from the moment the app is in it (it says
    # _ROOTED) until the pod's leftovers are killed: while this fd is open the namespace, and
    # so its inode number, cannot be freed. Read from /proc after the app had gone, the number
    # had sometimes been given to the next pod's new namespace, whose processes were then
    # killed as this pod's (2-6 in 80 foreground `rkt run`s, two nodes churning pods side by side).
    ns_fd: int | None = None
    rooted = False  # the app said _ROOTED (and its namespace was opened, or had gone)
    err = b""
    while True:
        c = os.read(err_r, 4096)
        if not c:
            break
        err += c
        if not rooted and err.startswith(_ROOTED):
            rooted = True
            try:
                ns_fd = os.open(f"/proc/{app}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:  # ended already (the CLI died before go): no namespace to hold
                pass
    os.close(err_r)
    if err.startswith(_ROOTED):
        err = err[len(_ROOTED) :]
    if err == _NO_GO:
        os.waitpid(app, 0)
        return 0
    if err:
        os.waitpid(app, 0)
        os.write(ready_w, b"E" + err)
        return 127

    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(app, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    # The app has exec'd, and the CLI recorded it running before it said go: tell it now.
    # A CLI gone meanwhile (interrupted, killed) does not end the pod: it is supervised as
    # any other, its exit recorded below.
    try:
        os.write(ready_w, b"R")
    except BrokenPipeError:
        pass
    os.close(ready_w)
    # What identifies the pod's processes once the app is gone: its own mount namespace (image
    # pods, held open above) or the pod's netns (host-root images on a pod network; its pin
    # holds it). Host-root + host network pods have neither; their process group has to do.
    member_ns: tuple[str, int] | None = None
    try:
        if ns_fd is not None:
            member_ns = ("mnt", os.fstat(ns_fd).st_ino)
        elif image.host_root and pod.netns:
            member_ns = ("net", isolation.ns_inode("self", "net"))
    except OSError:
        member_ns = None
    # Waited for but not yet reaped: while the app is a zombie its pid, and so its process
    # group's id, cannot go to another process before the group is killed.
    os.waitid(os.P_PID, app, os.WEXITED | os.WNOWAIT)
    # The pod ends with its app: whatever the app left behind goes too, in its process group
    # or (having escaped it with setsid) still inside the pod's namespace.
    try:
        os.killpg(app, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _, status = os.waitpid(app, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    if member_ns is not None:
        isolation.kill_namespace_members(member_ns[0], member_ns[1], exclude=os.getpid())
    if ns_fd is not None:
        os.close(ns_fd)
    if relay is not None:
        relay.join(5.0)  # every writer is gone now: the relay sees EOF and drains
    try:  # the CLI's record: the networks' results and the running state, after the fork
        pod = read_state(pdir)
    except (OSError, ValueError):
        pod.pid, pod.supervisor_pid = app, os.getpid()
    pod.finished = time.time()
    pod.app.exit_code = code
    pod.set_state(EXITED)
    write_state(pdir, pod)
    return code


def _start_relay(read_fd: int, pdir: str):
    """A thread copying the app's output to rkt's stdout and to <pod>/log, until EOF.

    A thread, not a loop in the supervisor, because the supervisor's main thread must stay
    in waitpid (an app that leaves a daemon holding the pipe would otherwise keep the pod
    "running"). A stdout that fails (a closed terminal, a reader gone) stops only the copy
    to stdout; the log keeps every byte."""
    import threading

    log = os.open(os.path.join(pdir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def copy() -> None:
        out_ok = True
        try:
            while True:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                _write_all(log, chunk)
                if out_ok:
                    try:
                        _write_all(1, chunk)
                    except OSError:
                        out_ok = False
        finally:
            os.close(read_fd)
            os.close(log)

    t = threading.Thread(target=copy, name="output relay", daemon=True)
    t.start()
    return t


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno == errno.ENOENT:
        return "no such file or directory in the image"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


BUILD_NICENESS = 10  # added to the app child's niceness while it builds its root (_exec_app)
_NO_GO = b"\0no go"  # the app child's word to its supervisor: ended unstarted, as asked
_ROOTED = b"\1"  # the app child's word: it is in its own mount namespace (its root is built)


class _NoGo(Exception):
    """The go pipe closed without a word: the run failed while networks were added."""


def _exec_app(pod: PodState, pdir: str, image, opts: RunOptions, go_r: int, err_w: int) -> None:
    """In the app child: own process group, signals back to default, stdio, root, exec.

    Until go it runs niced: its root is built while the CLI's first ADD runs, and on two
    cores the plugin's processes came 2-3 ms later than alone; the app gets rkt's own
    priority back before it execs."""
    os.setpgid(0, 0)
    priority = os.getpriority(os.PRIO_PROCESS, 0)
    niced = os.geteuid() == 0  # only root may take the priority back
    if niced:
        os.setpriority(os.PRIO_PROCESS, 0, min(priority + BUILD_NICENESS, 19))
    for s in (
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGTERM,
        signal.SIGPIPE,
        signal.SIGXFSZ,
    ):
        signal.signal(s, signal.SIG_DFL)
    if not opts.interactive and not opts.detach:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    os.dup2(1, 2)  # the app's stderr goes where its stdout goes (rkt's stdout)
    if image.host_root:
        env = dict(os.environ)
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = f"{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}:{bindir}"
    else:
        # os.execvpe imports `warnings` (os.get_exec_path): after pivot_root the standard
        # library is out of reach, so it is loaded here while it still can be.
        import warnings  # noqa: F401

        isolation.enter_rootfs(image.rootfs, os.path.join(pdir, "overlay"))
        os.write(err_w, _ROOTED)  # the supervisor holds this namespace open from here
        env = dict(image.env)
        os.chdir(image.workdir or "/")
        if opts.interactive and "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
    env["AC_APP_NAME"] = pod.app.name
    env["container"] = "rkt"
    env.update(opts.set_env)
    argv = pod.app.exec
    if os.read(go_r, 1) != b"G":
        raise _NoGo
    if niced:
        os.setpriority(os.PRIO_PROCESS, 0, priority)
    os.execvpe(argv[0], argv, env)
