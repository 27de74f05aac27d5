"""`rkt`: a daemonless, rkt-compatible pod runtime (the subset calico-rkt needs).

    rkt [--dir=DIR] [--local-config=DIR] [--debug] COMMAND ...
    rkt run [--net[=NET[:K=V;...]],...] [--insecure-options=image] [--interactive]
            [--uuid-file-save=FILE] [--set-env=K=V] [--detach] [--] IMAGE [--exec=CMD]
            [--name=APP] [-- ARGS...]
    rkt list [--no-legend] [--full] [--format=json|json-pretty]
    rkt status [--wait[=DURATION]] [--format=json|json-pretty] UUID
    rkt stop [--force] UUID...
    rkt rm [--force] UUID...
    rkt enter [--app=NAME] UUID [CMD...]
    rkt gc [--grace-period=DURATION]
    rkt image list [--no-legend] [--full] [--format=json|json-pretty]
    rkt image import [--exec=CMD] [--app-name=NAME] SOURCE NAME[:VERSION]
    rkt image rm NAME

Defaults: --dir is $RKT_DIR or /var/lib/rkt, --local-config /etc/rkt (networks in net.d).
Extensions to rkt: ``run --detach`` returns once the app has started and prints the pod UUID
(the node API uses it); ``image import`` stores a rootfs folder or tarball as a named image
(``image import docker://busybox`` builds the built-in busybox image ahead of its first use).
UUIDs may be abbreviated to any unique prefix (``rkt list`` shows 8 characters).
rm and gc never forget a pod whose CNI DEL failed (etcd down): they print one line per
failed network, exit 254 and keep the pod (state deleting/garbage) for the next rm or gc to
retry. ``rm --force`` removes it anyway; its endpoint and address may stay in etcd until
``rkt gc`` (which also runs CNI GC for every network in net.d) frees them, and
``calicoctl ipam check`` lists them meanwhile.

``--debug`` prints a line per step of ``rkt run`` on stderr (planned, recorded, netns, each
network added, recorded running, app started), each with the milliseconds since rkt's code
was loaded; the first line gives that moment on the monotonic clock, so a caller can add
the interpreter's own start (bench/bench_rkt_run.py does).

Only `os`, `sys` and `time` (built in) are imported here; each command imports what it
needs, so `rkt run` starts fast.
"""

from __future__ import annotations

import os
import sys
import time

LOADED = time.monotonic()  # `--debug` times a run from here (the interpreter's start is before)

TYPE_CHECKING = False  # collections.abc costs import time on every `rkt run`
if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_ERROR = 254  # rkt's exit status for its own failures
VALUE, BOOL, OPTVAL, MULTI = "value", "bool", "optval", "multi"
OPTMULTI = "optmulti"  # repeatable; bare flag means "" (--net alone = default)

GLOBAL_FLAGS = {
    "dir": VALUE,
    "local-config": VALUE,
    "insecure-options": VALUE,
    "debug": BOOL,
    "help": BOOL,
}
COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "run": {
        "net": OPTMULTI,
        "interactive": BOOL,
        "detach": BOOL,
        "uuid-file-save": VALUE,
        "set-env": MULTI,
        "insecure-options": VALUE,
    },
    "list": {"no-legend": BOOL, "full": BOOL, "format": VALUE},
    "status": {"wait": OPTVAL, "format": VALUE, "uuid-file": VALUE},
    "stop": {"force": BOOL, "uuid-file": VALUE},
    "rm": {"force": BOOL, "uuid-file": VALUE},
    "enter": {"app": VALUE},
    "gc": {"grace-period": VALUE, "expire-prepared": VALUE},
    "image list": {"no-legend": BOOL, "full": BOOL, "format": VALUE},
    "image import": {"exec": VALUE, "app-name": VALUE},
    "image rm": {},
    "version": {},
    "help": {},
}
APP_FLAGS = {"exec": VALUE, "name": VALUE, "set-env": MULTI}
INSECURE_OPTIONS = {
    "none", "image", "tls", "ondisk", "http", "pubkey", "capabilities", "paths", "seccomp",
    "run-all", "all-fetch", "all-run", "all",
}  # fmt: skip
OPTVAL_DEFAULT = {"wait": "true"}


class UsageError(Exception):
    """Bad command line; one line on stderr, exit 254."""


class Parsed:
    """A parsed command line: the command, its flags, positionals, and (for run) the app part."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.flags: dict[str, object] = {}
        self.positionals: list[str] = []
        self.app_flags: dict[str, object] = {}
        self.app_args: list[str] = []

    def get(self, name: str, default: object = None) -> object:
        return self.flags.get(name, default)


def _bool(name: str, value: str) -> bool:
    v = value.lower()
    if v in ("1", "t", "true", "yes"):
        return True
    if v in ("0", "f", "false", "no"):
        return False
    raise UsageError(f"invalid value {value!r} for --{name}: expected true or false")


def _take_flag(
    tokens: list[str], i: int, specs: dict[str, str], into: dict[str, object]
) -> int | None:
    """Consume the flag at tokens[i] if `specs` knows it; returns the next index, else None."""
    tok = tokens[i]
    body = tok[2:]
    name, eq, value = body.partition("=")
    kind = specs.get(name)
    if kind is None:
        return None
    if kind == BOOL:
        into[name] = _bool(name, value) if eq else True
        return i + 1
    if kind == OPTVAL:
        into[name] = value if eq else OPTVAL_DEFAULT.get(name, "")
        return i + 1
    if kind == OPTMULTI:
        into.setdefault(name, [])
        into[name].append(value if eq else "")  # type: ignore[union-attr]
        return i + 1
    if not eq:
        if i + 1 >= len(tokens):
            raise UsageError(f"flag needs an argument: --{name}")
        value = tokens[i + 1]
        i += 1
    if kind == MULTI:
        into.setdefault(name, [])
        into[name].append(value)  # type: ignore[union-attr]
    else:
        into[name] = value
    return i + 1


def parse_argv(argv: list[str]) -> Parsed:
    """rkt's command line: global flags anywhere before the command's positionals; for `run`,
    flags after the image belong to the app (--exec, --name) and `--` starts the app's args.
    ``--net`` alone means ``--net=default`` (as rkt's flag did; ``--net foo`` does not take
    ``foo``)."""
    globals_: dict[str, object] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("--") and argv[i] != "--":
        nxt = _take_flag(argv, i, GLOBAL_FLAGS, globals_)
        if nxt is None:
            raise UsageError(f"unknown flag: {argv[i]}")
        i = nxt
    if i >= len(argv):
        p = Parsed("help")
        p.flags.update(globals_)
        return p
    cmd = argv[i]
    i += 1
    if cmd == "image":
        sub = argv[i] if i < len(argv) else ""
        if f"image {sub}" not in COMMAND_FLAGS:
            raise UsageError(f"unknown command: image {sub}".rstrip() + " (list, import, rm)")
        cmd = f"image {sub}"
        i += 1
    if cmd in ("-h", "--help"):
        cmd = "help"
    if cmd not in COMMAND_FLAGS:
        raise UsageError(f"unknown command: {cmd}")
    p = Parsed(cmd)
    p.flags.update(globals_)
    specs = {**GLOBAL_FLAGS, **COMMAND_FLAGS[cmd]}
    tokens = argv[i:]
    j = 0
    image_seen = False
    while j < len(tokens):
        tok = tokens[j]
        if tok == "--":
            if cmd == "run" and not image_seen:
                # `run [flags] -- IMAGE [app flags] [-- ARGS]`: the image is never a flag,
                # whatever it starts with (the node API passes images this way).
                if j + 1 >= len(tokens):
                    raise UsageError("missing image after '--'")
                p.positionals.append(tokens[j + 1])
                image_seen = True
                j += 2
                continue
            if cmd != "run":
                p.positionals.extend(tokens[j + 1 :])
                break
            p.app_args = tokens[j + 1 :]
            break
        if cmd == "enter" and p.positionals:
            # `enter UUID CMD...`: the command's own flags are never rkt's (as rkt's cobra
            # command, flags stop at the first argument).
            p.positionals.extend(tokens[j:])
            break
        if tok.startswith("--") and len(tok) > 2:
            target_specs, into = (APP_FLAGS, p.app_flags) if image_seen else (specs, p.flags)
            nxt = _take_flag(tokens, j, target_specs, into)
            if nxt is None and image_seen:
                nxt = _take_flag(tokens, j, GLOBAL_FLAGS, p.flags)
            if nxt is None:
                where = " for the app" if image_seen else ""
                raise UsageError(f"unknown flag{where}: {tok}")
            j = nxt
            continue
        if tok.startswith("-") and len(tok) > 1 and not image_seen and tok != "-":
            if tok in ("-h",):
                p.flags["help"] = True
                j += 1
                continue
            raise UsageError(f"unknown shorthand flag: {tok}")
        if cmd == "run":
            if image_seen:
                raise UsageError(
                    f"unexpected argument {tok!r}: one image per pod (app arguments go after '--')"
                )
            p.positionals.append(tok)
            image_seen = True
        else:
            p.positionals.append(tok)
        j += 1
    return p


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration subset rkt's flags take: '30m', '1h30m', '0s', '1.5h', '0'."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        raise UsageError(f"invalid duration {text!r}")
    total = 0.0
    while s:
        k = 0
        while k < len(s) and (s[k].isdigit() or s[k] == "."):
            k += 1
        if k == 0:
            raise UsageError(f"invalid duration {text!r}")
        try:
            num = float(s[:k])
        except ValueError:
            raise UsageError(f"invalid duration {text!r}") from None
        s = s[k:]
        unit = next((u for u in ("ns", "us", "µs", "ms", "s", "m", "h") if s.startswith(u)), None)
        if unit is None:
            raise UsageError(f"invalid duration {text!r}: missing unit")
        total += num * _DURATION_UNITS[unit]
        s = s[len(unit) :]
    return sign * total


def parse_wait(text: str) -> float | None:
    """status --wait: true = forever (None), false/0 = don't wait (0.0), else a duration."""
    lowered = text.lower()
    if lowered in ("", "true", "t", "1"):
        return None
    if lowered in ("false", "f", "0"):
        return 0.0
    d = parse_duration(text)
    return None if d < 0 else d


def _check_insecure(value: object) -> None:
    if value is None:
        return
    for opt in str(value).split(","):
        if opt.strip() not in INSECURE_OPTIONS:
            raise UsageError(f"invalid --insecure-options value {opt!r}")


def _check_format(value: object) -> str:
    fmt = str(value or "")
    if fmt not in ("", "json", "json-pretty"):
        raise UsageError(f"invalid --format={fmt}: expected json or json-pretty")
    return fmt


def _uuid_args(p: Parsed) -> list[str]:
    uuids = list(p.positionals)
    uf = p.get("uuid-file")
    if uf:
        try:
            with open(str(uf)) as f:
                uuids.append(f.read().strip())
        except OSError as e:
            raise UsageError(f"cannot read --uuid-file: {e.strerror}") from None
    if not uuids:
        raise UsageError(f"{p.command}: give at least one UUID")
    return uuids


def _err(msg: str) -> None:
    sys.stderr.write(f"rkt: {' '.join(str(msg).split())}\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        p = parse_argv(args)
    except UsageError as e:
        _err(str(e))
        return EXIT_ERROR
    if p.command == "help" or p.get("help"):
        sys.stdout.write(__doc__.split("\n\n", 1)[1].split("\n\nOnly")[0] + "\n")
        return 0
    if p.command == "version":
        sys.stdout.write("rkt Version: 1.30.0 (calico-rkt subset)\n")
        return 0
    data_dir = str(p.get("dir") or os.environ.get("RKT_DIR") or "/var/lib/rkt")
    local_config = str(p.get("local-config") or "/etc/rkt")
    try:
        return _dispatch(p, data_dir, local_config)
    except UsageError as e:
        _err(str(e))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


def _debug_lines() -> Callable[[str], None]:
    """`--debug`'s writer: `rkt: debug: +12.3 ms <step>` on stderr, the first line saying
    when the clock started (CLOCK_MONOTONIC seconds, as time.monotonic() gives them)."""

    def write(step: str) -> None:
        sys.stderr.write(f"rkt: debug: +{(time.monotonic() - LOADED) * 1000:.1f} ms {step}\n")
        sys.stderr.flush()

    write(f"rkt loaded at monotonic {LOADED:.6f} s")
    return write


def _dispatch(p: Parsed, data_dir: str, local_config: str) -> int:
    from rkt.pods import RunError, Runtime, StartedUnreported
    from rkt.state import StateError

    rt = Runtime(data_dir, local_config, debug=_debug_lines() if p.get("debug") else None)
    cmd = p.command
    try:
        if cmd == "run":
            return _run(p, rt)
        if cmd == "list":
            return _list(p, rt)
        if cmd == "status":
            return _status(p, rt)
        if cmd in ("stop", "rm"):
            from rkt.pods import TeardownFailed

            failed = 0
            force = bool(p.get("force"))
            for u in _uuid_args(p):
                try:
                    done = rt.stop(u, force) if cmd == "stop" else rt.remove(u, force)
                    sys.stdout.write(done + "\n")
                except TeardownFailed as e:
                    for line in e.errors:
                        _err(f"{line} (pod kept: run rkt rm again, or rkt rm --force)")
                    failed += 1
                except (StateError, OSError) as e:
                    _err(str(e))
                    failed += 1
            return EXIT_ERROR if failed else 0
        if cmd == "enter":
            return _enter(p, rt)
        if cmd == "gc":
            grace = parse_duration(str(p.get("grace-period") or "30m"))
            return EXIT_ERROR if rt.gc(grace).errors else 0
        if cmd.startswith("image "):
            return _image(p, data_dir)
    except (RunError, StateError, StartedUnreported) as e:
        _err(str(e))
        return EXIT_ERROR
    raise UsageError(f"unknown command: {cmd}")


def _run(p: Parsed, rt) -> int:
    from rkt.pods import RunOptions

    if len(p.positionals) != 1:
        raise UsageError("run: give exactly one image (e.g. docker://busybox)")
    _check_insecure(p.get("insecure-options"))
    detach, interactive = bool(p.get("detach")), bool(p.get("interactive"))
    if detach and interactive:
        raise UsageError("run: --detach and --interactive exclude each other")
    env: dict[str, str] = {}
    for kv in list(p.flags.get("set-env", [])) + list(p.app_flags.get("set-env", [])):  # type: ignore[arg-type]
        k, eq, v = str(kv).partition("=")
        if not eq or not k:
            raise UsageError(f"invalid --set-env={kv!r}: expected NAME=VALUE")
        env[k] = v
    exec_ = p.app_flags.get("exec")
    if exec_ is not None and not str(exec_):
        raise UsageError("run: --exec needs a command")
    opts = RunOptions(
        image=p.positionals[0],
        exec_=str(exec_) if exec_ else None,
        args=p.app_args,
        nets=[str(v) for v in p.flags.get("net", [])],  # type: ignore[union-attr]
        app_name=str(p.app_flags["name"]) if p.app_flags.get("name") else None,
        detach=detach,
        interactive=interactive,
        uuid_file_save=str(p.get("uuid-file-save")) if p.get("uuid-file-save") else None,
        set_env=env,
    )
    return rt.run(opts)


def _enter(p: Parsed, rt) -> int:
    from rkt import enter
    from rkt.state import StateError

    if not p.positionals:
        raise UsageError("enter: give the UUID of a running pod")
    pod, state = rt.get(p.positionals[0])
    app = p.get("app")
    plan = enter.plan_enter(
        pod,
        state,
        str(app) if app else None,
        p.positionals[1:],
        enter.namespace_inodes("self"),
        enter.namespace_inodes(pod.pid) if pod.pid else {},
    )
    try:
        return enter.enter(plan)
    except OSError as e:  # the app ended between the check and the entering
        raise StateError(f"cannot enter pod {pod.uuid}: {e.strerror or e}") from None


def _list(p: Parsed, rt) -> int:
    import time

    from rkt import format as fmt_

    fmt = _check_format(p.get("format"))
    if p.positionals:
        raise UsageError("list takes no arguments")
    pods = rt.pods()
    if fmt:
        out = fmt_.format_json([fmt_.pod_json(pod, st) for pod, st in pods], fmt == "json-pretty")
    else:
        out = fmt_.format_list(
            pods, time.time(), full=bool(p.get("full")), legend=not p.get("no-legend")
        )
    sys.stdout.write(out)
    return 0


def _status(p: Parsed, rt) -> int:
    from rkt import format as fmt_
    from rkt.state import StateError

    fmt = _check_format(p.get("format"))
    uuids = _uuid_args(p)
    if len(uuids) != 1:
        raise UsageError("status: give one UUID")
    uuid = rt.resolve(uuids[0])
    wait = parse_wait(str(p.get("wait", "false")))
    if wait != 0.0 and not rt.wait_exited(uuid, wait):
        raise StateError(f"pod {uuid} still running after --wait={p.get('wait')}")
    pod, state = rt.get(uuid)
    if fmt:
        sys.stdout.write(fmt_.format_json(fmt_.pod_json(pod, state), fmt == "json-pretty"))
    else:
        sys.stdout.write("\n".join(fmt_.status_lines(pod, state)) + "\n")
    return 0


def _image(p: Parsed, data_dir: str) -> int:
    import time

    from rkt import format as fmt_
    from rkt.images import BUSYBOX, ImageError, ImageStore, parse_image_ref

    store = ImageStore(data_dir)
    try:
        if p.command == "image list":
            fmt = _check_format(p.get("format"))
            rows = []
            for img in store.list():
                m = img.manifest()
                m["last_used"] = store.last_used(img)
                rows.append(m)
            if fmt:
                sys.stdout.write(fmt_.format_json(rows, fmt == "json-pretty"))
            else:
                table = fmt_.image_rows(
                    rows, time.time(), full=bool(p.get("full")), legend=not p.get("no-legend")
                )
                sys.stdout.write(fmt_.tab_align(table))
            return 0
        if p.command == "image import":
            pos = p.positionals
            if len(pos) == 1 and parse_image_ref(pos[0]).name == BUSYBOX:
                img = store.get(parse_image_ref(pos[0])) or store.build_busybox(
                    parse_image_ref(pos[0])
                )
            elif len(pos) == 2:
                exec_ = p.get("exec")
                img = store.import_rootfs(
                    pos[0],
                    pos[1],
                    exec_=str(exec_).split() if exec_ else None,
                    app_name=str(p.get("app-name") or ""),
                )
            else:
                raise UsageError("image import: give SOURCE NAME (a rootfs folder or tarball)")
            sys.stdout.write(img.id + "\n")
            return 0
        if p.command == "image rm":
            if not p.positionals:
                raise UsageError("image rm: give an image name")
            for name in p.positionals:
                img = store.remove(name)
                sys.stdout.write(f"successfully removed image {img.id[:19]}\n")
            return 0
    except (ImageError, OSError) as e:
        _err(str(e))
        return EXIT_ERROR
    raise UsageError(f"unknown command: {p.command}")


if __name__ == "__main__":
    sys.exit(main())
