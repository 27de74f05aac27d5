"""Invoking CNI plugins (ADD/DEL) the way rkt did, and reading their results.

- The plugin binary is found by ``type`` in CNI_PATH; the same CNI_PATH is used for ADD and
  DEL (rkt once passed a different one on DEL and leaked addresses), so it is stored in the
  pod state.
- A ``.conf`` goes to its plugin unchanged: a conf that says ``"cniVersion": "0.1.0"`` (or
  none) is spoken to in 0.1.0, and the plugin answers in that version. A ``.conflist`` runs its
  plugins in order on ADD (each gets ``prevResult``) and in reverse on DEL.
- Results of every version are read back: 0.1.0/0.2.0 ``ip4``, 0.3.x-1.x ``ips``.
- A failing plugin prints ``{"code", "msg", "details"}``; the user sees msg and details in one
  line.
- GC (spec 1.1.0, `rkt gc`): every plugin of a network whose VERSION answer includes 1.1.0
  gets ``GC`` with the config at ``cniVersion: 1.1.0`` and ``cni.dev/valid-attachments``
  (the pods that still exist); a plugin that cannot speak 1.1.0 (ptp, host-local) is skipped,
  as libcni skips GC below 1.1.0.

Processes are spawned with os.posix_spawn and pipes rather than subprocess: this runs on
every `rkt run`, and the subprocess import alone costs several milliseconds.
"""

from __future__ import annotations

import os
import select
import sys
import time

from rkt import jsonc
from rkt.record import record

TYPE_CHECKING = False  # typing costs import time on every `rkt run`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PLUGIN_TIMEOUT = 60.0


class PluginFailed(Exception):
    """A plugin failed; str() is the one line shown to the user."""


def default_cni_path() -> str:
    """$CNI_PATH, else this Python's scripts dir (our calico/calico-ipam) then /usr/lib/cni."""
    env = os.environ.get("CNI_PATH")
    if env:
        return env
    return f"{os.path.dirname(sys.executable)}:/usr/lib/cni"


def find_plugin(ptype: str, cni_path: str) -> str:
    if not ptype or "/" in ptype:
        raise PluginFailed(f"invalid plugin type {ptype!r}")
    for d in cni_path.split(":"):
        if not d:
            continue
        p = os.path.join(d, ptype)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise PluginFailed(f"failed to find plugin {ptype!r} in path [{cni_path}]")


@record
class PluginRun:
    returncode: int
    stdout: bytes
    stderr: bytes


def exec_plugin(
    path: str,
    stdin: bytes,
    env: dict[str, str],
    timeout: float = PLUGIN_TIMEOUT,
    meanwhile: Callable[[], None] | None = None,
) -> PluginRun:
    """Run one plugin: config on stdin, result (or error) on stdout, diagnostics on stderr.

    `meanwhile` is called once the plugin is running and has its config, before its answer
    is awaited: `rkt run` records the previous network and forks the pod's supervisor there,
    while a plugin takes 7-10 ms. If it raises, the plugin is still waited for (its result
    dropped) before the error goes on."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawn(
            path,
            [path],
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, in_r, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
        )
    except OSError as e:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise PluginFailed(f"cannot execute plugin {path}: {e.strerror}") from None
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    # Configs are far smaller than a pipe buffer, so writing all of stdin first cannot block
    # on a plugin that has not started reading.
    try:
        os.write(in_w, stdin)
    except BrokenPipeError:
        pass
    os.close(in_w)
    try:
        if meanwhile is not None:
            meanwhile()
    except BaseException:
        _collect(pid, out_r, err_r, timeout, path)
        raise
    return _collect(pid, out_r, err_r, timeout, path)


def _collect(pid: int, out_r: int, err_r: int, timeout: float, path: str) -> PluginRun:
    """Read the plugin's two outputs to their end (killing it after `timeout`), reap it."""
    bufs: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_fds = [out_r, err_r]
    deadline = time.monotonic() + timeout
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise PluginFailed(
                    f"plugin {os.path.basename(path)} timed out after {timeout:.0f}s"
                )
            ready, _, _ = select.select(open_fds, [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    bufs[fd].append(chunk)
                else:
                    open_fds.remove(fd)
    finally:
        os.close(out_r)
        os.close(err_r)
    _, status = os.waitpid(pid, 0)
    return PluginRun(
        os.waitstatus_to_exitcode(status), b"".join(bufs[out_r]), b"".join(bufs[err_r])
    )


def error_message(run: PluginRun, plugin: str) -> str:
    """One line from a failed plugin: its JSON msg + details, else its own words, else the code."""
    try:
        err = jsonc.loads(run.stdout)
    except ValueError:
        err = None
    if isinstance(err, dict) and (err.get("msg") or err.get("details")):
        msg = str(err.get("msg") or "").strip()
        details = str(err.get("details") or "").strip()
        text = f"{msg}: {details}" if msg and details and details != msg else (msg or details)
    else:
        text = (run.stderr or run.stdout).decode(errors="replace").strip()
        text = text or f"exited with status {run.returncode}"
    return f"plugin {plugin}: " + " ".join(text.split())


@record
class ParsedResult:
    ip4: str = ""  # address without prefix
    ip4_cidr: str = ""
    gateway4: str = ""
    ip6: str = ""


def parse_result(result: dict[str, Any]) -> ParsedResult:
    """The pod's IPv4 address from a result of any CNI version.

    0.1.0/0.2.0 carry ``ip4: {ip: "10.0.0.2/24"}``; 0.3.x and later ``ips: [{address}]``
    (0.3.x/0.4.0 add ``version: "4"``), with ``interface`` indexing ``interfaces`` - the
    container-side one (the one with a ``sandbox``) is the pod's address.
    """
    out = ParsedResult()
    if isinstance(result.get("ips"), list):
        ifaces = result.get("interfaces") or []
        best: dict[str, Any] | None = None
        for ip in result["ips"]:
            addr = str(ip.get("address", ""))
            if ":" in addr:
                out.ip6 = out.ip6 or addr.split("/")[0]
                continue
            if not addr:
                continue
            idx = ip.get("interface")
            in_sandbox = (
                isinstance(idx, int) and 0 <= idx < len(ifaces) and bool(ifaces[idx].get("sandbox"))
            )
            if best is None or (in_sandbox and not best.get("_sandbox")):
                best = dict(ip, _sandbox=in_sandbox)
        if best is not None:
            out.ip4_cidr = str(best["address"])
            out.ip4 = out.ip4_cidr.split("/")[0]
            out.gateway4 = str(best.get("gateway") or "")
        return out
    ip4 = result.get("ip4")
    if isinstance(ip4, dict) and ip4.get("ip"):
        out.ip4_cidr = str(ip4["ip"])
        out.ip4 = out.ip4_cidr.split("/")[0]
        out.gateway4 = str(ip4.get("gateway") or "")
    ip6 = result.get("ip6")
    if isinstance(ip6, dict) and ip6.get("ip"):
        out.ip6 = str(ip6["ip"]).split("/")[0]
    return out


def plugin_confs(conf: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-plugin configs to run: the conf itself, or each plugin of a conflist with the
    list's name and cniVersion (as libcni builds them)."""
    plugins = conf.get("plugins")
    if not isinstance(plugins, list):
        return [conf]
    out = []
    for p in plugins:
        c = dict(p)
        c["name"] = conf["name"]
        c["cniVersion"] = conf.get("cniVersion", "0.1.0")
        out.append(c)
    return out


def _version(conf: dict[str, Any]) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(conf.get("cniVersion", "0.1.0")).split("."))
    except ValueError:
        return (0, 1, 0)


@record
class Invocation:
    """What rkt tells a plugin besides the config: identical for ADD and DEL."""

    container_id: str
    netns: str
    ifname: str
    args: str
    cni_path: str

    def env(self, command: str) -> dict[str, str]:
        env = dict(os.environ)  # plugins need PATH (ptp runs iptables for ipMasq)
        env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=self.container_id,
            CNI_NETNS=self.netns,
            CNI_IFNAME=self.ifname,
            CNI_ARGS=self.args,
            CNI_PATH=self.cni_path,
        )
        return env


def add(
    conf: dict[str, Any], inv: Invocation, meanwhile: Callable[[], None] | None = None
) -> dict[str, Any]:
    """ADD one network; returns the (last) plugin's result. A conflist that fails part-way
    deletes what its earlier plugins did before raising. `meanwhile` runs once the first
    plugin is running (exec_plugin)."""
    prev: dict[str, Any] | None = None
    done: list[dict[str, Any]] = []
    for pconf in plugin_confs(conf):
        if prev is not None:
            pconf = dict(pconf, prevResult=prev)
        try:
            prev = _run(pconf, "ADD", inv, meanwhile)
            meanwhile = None
        except PluginFailed:
            for d in reversed(done):
                try:
                    _run(d, "DEL", inv)
                except PluginFailed:
                    pass
            raise
        done.append(pconf)
    return prev or {}


def delete(conf: dict[str, Any], inv: Invocation, result: dict[str, Any] | None) -> None:
    """DEL one network, plugins in reverse; every plugin is tried, the first error raised."""
    first: PluginFailed | None = None
    for pconf in reversed(plugin_confs(conf)):
        if result is not None and _version(pconf) >= (0, 4, 0):
            pconf = dict(pconf, prevResult=result)
        try:
            _run(pconf, "DEL", inv)
        except PluginFailed as e:
            first = first or e
    if first is not None:
        raise first


def _run(
    pconf: dict[str, Any],
    command: str,
    inv: Invocation,
    meanwhile: Callable[[], None] | None = None,
) -> dict[str, Any]:
    ptype = str(pconf.get("type", ""))
    path = find_plugin(ptype, inv.cni_path)
    run = exec_plugin(path, jsonc.dumps(pconf).encode(), inv.env(command), meanwhile=meanwhile)
    if run.returncode != 0:
        raise PluginFailed(error_message(run, ptype))
    if command != "ADD":
        return {}
    try:
        result = jsonc.loads(run.stdout)
    except ValueError:
        raise PluginFailed(f"plugin {ptype}: unreadable result {run.stdout[:200]!r}") from None
    if not isinstance(result, dict):
        raise PluginFailed(f"plugin {ptype}: result is not a JSON object")
    return result


GC_VERSION = "1.1.0"


def supported_versions(path: str, cni_path: str) -> list[str]:
    """The plugin's answer to VERSION; [] when it gives none."""
    env = dict(os.environ, CNI_COMMAND="VERSION", CNI_PATH=cni_path)
    run = exec_plugin(path, b'{"cniVersion": "0.1.0"}', env, timeout=10.0)
    try:
        answer = jsonc.loads(run.stdout) if run.returncode == 0 else {}
    except ValueError:
        return []
    versions = answer.get("supportedVersions") if isinstance(answer, dict) else None
    return [str(v) for v in versions] if isinstance(versions, list) else []


def gc(conf: dict[str, Any], attachments: list[dict[str, str]], cni_path: str) -> None:
    """CNI GC of one network: each plugin that speaks 1.1.0 is told which attachments are
    still in use; it releases the rest. A plugin not installed has nothing to collect (no pod
    could be added through it). Every plugin is tried; the first failure is raised."""
    first: PluginFailed | None = None
    env = dict(os.environ, CNI_COMMAND="GC", CNI_PATH=cni_path)
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    for pconf in plugin_confs(conf):
        ptype = str(pconf.get("type", ""))
        try:
            path = find_plugin(ptype, cni_path)
        except PluginFailed:
            continue
        try:
            if GC_VERSION not in supported_versions(path, cni_path):
                continue
            body = dict(pconf, cniVersion=GC_VERSION)
            body["cni.dev/valid-attachments"] = attachments
            run = exec_plugin(path, jsonc.dumps(body).encode(), env)
            if run.returncode != 0:
                raise PluginFailed(error_message(run, ptype))
        except PluginFailed as e:
            first = first or e
    if first is not None:
        raise first
