"""The C launcher (plugin/launcher.c) against the Python shim it stands in for: the same
request bytes, the same output and exit code, the same error 11, the same fallback."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.cni_server import CNIServer
from plugin import build_launcher, shim

pytestmark = pytest.mark.skipif(
    build_launcher.find_compiler() is None, reason="no C compiler (cc) to build plugin/launcher.c"
)

BASE_ENV = {b"PATH": b"/usr/bin:/bin"}

# Awkward bytes for both directions: JSON's own specials, controls, DEL, valid UTF-8 of
# every length, and bytes UTF-8 rejects (lone continuation, overlong, encoded surrogate,
# above U+10FFFF, truncated at the end), which the shim carries as lone surrogates.
AWKWARD = (
    b'q"uo\\te\nnl\r\t\x00\x01\x1f\x7f \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 '
    b"\xff\xfe\x80\xc0\xaf\xe0\x80\xaf\xed\xa0\x80\xf4\x90\x80\x80\xc3\x28\xe2\x82"
)


@pytest.fixture(scope="module")
def bindir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="launcher"))
    assert build_launcher.install(d), "launcher.c did not build"
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sock_dir() -> Iterator[str]:
    # Short (unix socket paths are ~107 bytes at most), and awkward: it ends up in details.
    d = tempfile.mkdtemp(prefix='cni-é"\\', dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Agent:
    """Records each request's raw bytes; `respond` gives the bytes to send back, or None
    to hang (until close) without answering."""

    def __init__(self, path: str, respond: Callable[[bytes], bytes | None]) -> None:
        self.path = path
        self.respond = respond
        self.raw: list[bytes] = []
        self.done = threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.raw.append(data)
                reply = self.respond(data)
                if reply is None:
                    self.done.wait(30)
                else:
                    conn.sendall(reply)

    def close(self) -> None:
        self.done.set()
        self.server.close()


def run(exe: Path, env: dict[bytes, bytes], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe)], env={**BASE_ENV, **env}, input=stdin, capture_output=True)


def both(bindir: Path, plugin: str, env: dict[bytes, bytes], stdin: bytes) -> list:
    """(C launcher, Python launcher) results for the same invocation."""
    return [
        run(bindir / name, env, stdin) for name in (plugin, build_launcher.fallback_name(plugin))
    ]


def same(c: subprocess.CompletedProcess, py: subprocess.CompletedProcess) -> None:
    assert (c.stdout, c.stderr, c.returncode) == (py.stdout, py.stderr, py.returncode)


def sock_env(path: str, **extra: str) -> dict[bytes, bytes]:
    env = {b"CALICO_CNI_SOCKET": os.fsencode(path)}
    env.update({k.encode(): v.encode() for k, v in extra.items()})
    return env


# ---- the request ------------------------------------------------------------------------


@pytest.mark.parametrize("plugin", ["calico", "calico-ipam"])
@pytest.mark.parametrize(
    "stdin",
    [b'{"cniVersion": "0.3.1", "name": "n\\"et"}', AWKWARD, b"", b"\n", "é€😀".encode()],
    ids=["config", "awkward", "empty", "newline", "non-ascii"],
)
def test_same_request_bytes_as_the_shim(
    bindir: Path, sock_dir: str, plugin: str, stdin: bytes
) -> None:
    agent = Agent(f"{sock_dir}/cni.sock", lambda _: shim.encode_reply({"exit_code": 0}))
    env = {
        **sock_env(agent.path),
        b"CNI_COMMAND": b"ADD",
        b"HOME": b"/root",  # not shipped
        b"CNI_ARGS": b'IP=10.0.0.2;K="v\\al"',
        b"CNI_EMPTY": b"",
        b"ETCD_ENDPOINTS": b"http://127.0.0.1:2379",
        b"CALICO_AWKWARD": AWKWARD.replace(b"\x00", b""),  # no NUL in an environment
        "CNI_é".encode(): b"\xff",
        b"CNI_EQ": b"a=b=c",
        b"NOT_CNI_X": b"1",
    }
    try:
        for result in both(bindir, plugin, env, stdin):
            assert result.returncode == 0, result
        c_raw, py_raw = agent.raw
    finally:
        agent.close()
    assert c_raw == py_raw
    request = shim.decode_request(c_raw)
    assert request["plugin"] == plugin
    assert request["stdin"].encode("utf-8", "surrogateescape") == stdin  # type: ignore[union-attr]
    assert "HOME" not in request["env"] and "NOT_CNI_X" not in request["env"]  # type: ignore[operator]


# Exec with a raw environment block: a dict cannot hold a name twice or an entry without '='.
EXEC_RAW = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
args = [a.encode() for a in sys.argv[1:2]] + [None]
env = [e.encode("utf-8", "surrogateescape") for e in sys.argv[2:]] + [None]
libc.execve(args[0], (ctypes.c_char_p * len(args))(*args), (ctypes.c_char_p * len(env))(*env))
sys.exit(127)
"""


def test_raw_environment_first_entry_wins(bindir: Path, sock_dir: str) -> None:
    agent = Agent(f"{sock_dir}/cni.sock", lambda _: shim.encode_reply({"exit_code": 0}))
    environ = [
        "PATH=/usr/bin:/bin",
        f"CALICO_CNI_SOCKET={agent.path}",
        "CNI_A=first",
        "CNI_NOEQUALS",
        "CNI_A=second",
        "=empty-name",
        "CNI_A",
        "CNI_B=b",
    ]
    try:
        for name in ("calico", build_launcher.fallback_name("calico")):
            argv = [sys.executable, "-c", EXEC_RAW, str(bindir / name), *environ]
            assert subprocess.run(argv, input=b"", capture_output=True).returncode == 0
        c_raw, py_raw = agent.raw
    finally:
        agent.close()
    assert c_raw == py_raw
    env = shim.decode_request(c_raw)["env"]
    assert env == {"CALICO_CNI_SOCKET": agent.path, "CNI_A": "first", "CNI_B": "b"}


def test_plugin_name_comes_from_argv0(bindir: Path, sock_dir: str, tmp_path: Path) -> None:
    other = tmp_path / "some-name"
    shutil.copy(bindir / "calico", other)
    agent = Agent(f"{sock_dir}/cni.sock", lambda _: shim.encode_reply({"exit_code": 0}))
    try:
        for exe in (bindir / "calico-ipam", other, bindir / "calico"):
            assert run(exe, sock_env(agent.path), b"").returncode == 0
    finally:
        agent.close()
    assert [shim.decode_request(r)["plugin"] for r in agent.raw] == [
        "calico-ipam",
        "calico",
        "calico",
    ]


# ---- the reply --------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 7, 100, 300])
def test_same_output_and_exit_code(bindir: Path, sock_dir: str, code: int) -> None:
    text = AWKWARD.decode("utf-8", "surrogateescape")
    reply = shim.encode_reply({"exit_code": code, "stdout": text + "\n", "stderr": "err " + text})
    agent = Agent(f"{sock_dir}/cni.sock", lambda _: reply)
    try:
        c, py = both(bindir, "calico", sock_env(agent.path), b"{}")
    finally:
        agent.close()
    same(c, py)
    assert c.stdout == AWKWARD + b"\n" and c.stderr == b"err " + AWKWARD
    assert c.returncode == code % 256


def test_round_trip_through_the_real_cni_server(bindir: Path, sock_dir: str) -> None:
    def echo(request: dict) -> dict:
        env = request["env"]
        return {"exit_code": 3, "stdout": request["stdin"], "stderr": env["CALICO_AWKWARD"]}

    awkward_env = AWKWARD.replace(b"\x00", b"")
    with CNIServer(f"{sock_dir}/cni.sock", handlers={"calico-ipam": echo}) as server:
        env = {**sock_env(server.socket_path), b"CALICO_AWKWARD": awkward_env}
        c, py = both(bindir, "calico-ipam", env, AWKWARD)
    same(c, py)
    assert (c.stdout, c.stderr, c.returncode) == (AWKWARD, awkward_env, 3)


# ---- error 11 after the agent took the request ------------------------------------------

STDINS = {
    "version": b'{"cniVersion": "0.4.0", "name": "n"}',
    "no-version": b'{"name": "n"}',
    "empty": b"",
    "not-json": b"not json",
    "trailing": b'{"cniVersion": "0.4.0"} x',
    "not-object": b'["cniVersion", "0.4.0"]',
    "number-version": b'{"cniVersion": 4}',
    "last-key-wins": b'{"cniVersion": "1.0.0", "a": [1, -2.5e3, {"cniVersion": "x"}], '
    b'"cniVersion": "0.3.1"}',
    "last-not-string": b'{"cniVersion": "1.0.0", "cniVersion": null}',
    "escaped-key": b'{"cni\\u0056ersion": "0.2.0"}',
    "odd-version": b'{"cniVersion": "\\u00e9\\ud83d\\ude00\\n\\/\\"\xc3\xa9\xff\\ud800x"}',
    "literals": b'{"a": [true, false, null, NaN, Infinity, -Infinity, 0, -0.0, 1E+2],'
    b' "cniVersion": "0.4.0"}',
    "bad-number": b'{"a": 01, "cniVersion": "0.4.0"}',
    "trailing-comma": b'{"cniVersion": "0.4.0",}',
    "control-in-string": b'{"cniVersion": "0.4\t0"}',
    "bad-escape": b'{"cniVersion": "0.4.0", "a": "\\x"}',
    "bad-hex": b'{"cniVersion": "0.4.0", "a": "\\u12g4"}',
    "bom": b'\xef\xbb\xbf{"cniVersion": "0.4.0"}',
    "long-int": b'{"cniVersion": "0.4.0", "a": 1' + b"0" * 4300 + b"}",
    "long-float": b'{"cniVersion": "0.4.0", "a": 1' + b"0" * 4300 + b".5}",
    "deep": b'{"cniVersion": "0.4.0", "a": ' + b"[" * 100 + b"]" * 100 + b"}",
    "awkward": AWKWARD,
}


@pytest.mark.parametrize("stdin", list(STDINS.values()), ids=list(STDINS))
def test_no_reply_header_is_the_shims_error_11(bindir: Path, sock_dir: str, stdin: bytes) -> None:
    agent = Agent(f"{sock_dir}/cni.sock", lambda _: b"")
    try:
        c, py = both(bindir, "calico", sock_env(agent.path), stdin)
    finally:
        agent.close()
    same(c, py)
    assert c.returncode == 1
    assert json.loads(c.stdout)["code"] == shim.TRY_AGAIN_LATER
    assert b"no reply header" in c.stderr
    assert len(agent.raw) == 2  # and neither ran the request itself


@pytest.mark.parametrize(
    "reply",
    [b"CNI-REPLY 0 10 0\nabc", b"CNI-REPLY 0 1 1\nabc", b"CNI-REPLY 0 1\nab", b"HELLO 0 0 0\n"],
    ids=["closed-mid-reply", "too-long", "three-fields", "wrong-magic"],
)
def test_closed_mid_reply_is_the_shims_error_11(bindir: Path, sock_dir: str, reply: bytes) -> None:
    agent = Agent(f"{sock_dir}/cni.sock", lambda _: reply)
    try:
        c, py = both(bindir, "calico-ipam", sock_env(agent.path), STDINS["version"])
    finally:
        agent.close()
    same(c, py)
    out = json.loads(c.stdout)
    assert (out["cniVersion"], out["code"], out["msg"]) == (
        "0.4.0",
        11,
        "node agent did not answer",
    )
    assert out["details"].startswith(f"the agent at {agent.path} sent a malformed reply: ")


def test_timeout_is_the_shims_error_11(bindir: Path, sock_dir: str) -> None:
    agent = Agent(f"{sock_dir}/cni.sock", lambda _: None)
    try:
        env = sock_env(agent.path, CALICO_AGENT_TIMEOUT="0.3")
        c, py = both(bindir, "calico", env, STDINS["version"])
    finally:
        agent.close()
    same(c, py)
    assert json.loads(c.stdout)["details"] == f"talking to the agent at {agent.path}: timed out"


# ---- before the agent has it: the Python launcher decides -------------------------------

VERSION_ENV = {b"CNI_COMMAND": b"VERSION"}


@pytest.mark.parametrize("socket_state", ["absent", "refusing", "disabled", "bad-dir"])
def test_falls_back_to_the_python_launcher(bindir: Path, sock_dir: str, socket_state: str) -> None:
    path = f"{sock_dir}/cni.sock"
    if socket_state == "refusing":  # bound, nobody listening: ECONNREFUSED
        bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound.bind(path)
    elif socket_state == "disabled":
        path = ""
    elif socket_state == "bad-dir":
        path = f"{sock_dir}/not-a-dir"
        Path(path).write_text("")
        path += "/cni.sock"
    stdin = b'{"cniVersion": "0.3.1"}'  # unread by the C launcher: the fallback sees it
    c, py = both(bindir, "calico-ipam", {**sock_env(path), **VERSION_ENV}, stdin)
    same(c, py)
    assert c.returncode == 0
    assert json.loads(c.stdout)["cniVersion"] == "0.3.1"  # the real VERSION answer


def test_default_socket_path_when_unset(bindir: Path) -> None:
    if os.path.exists(shim.DEFAULT_SOCKET):
        pytest.skip(f"an agent may be listening on {shim.DEFAULT_SOCKET}")
    c, py = both(bindir, "calico", VERSION_ENV, b"{}")
    same(c, py)
    assert c.returncode == 0 and b"supportedVersions" in c.stdout


def test_missing_fallback_is_a_plugin_failure(tmp_path: Path) -> None:
    assert build_launcher.compile_launcher(tmp_path / "calico") is None
    env = {**sock_env(""), **VERSION_ENV}
    c = run(tmp_path / "calico", env, STDINS["version"])
    assert c.returncode == 1
    out = json.loads(c.stdout)
    assert (out["cniVersion"], out["code"]) == ("0.4.0", shim.PLUGIN_FAILURE)
    assert out["details"].startswith(f"{tmp_path}/.calico-py: [Errno 2] ")


# ---- install ----------------------------------------------------------------------------


def test_install_without_a_compiler_writes_python_launchers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert not build_launcher.install(tmp_path, cc="/nonexistent/cc")
    assert len(caplog.records) == 1 and "Python launchers" in caplog.records[0].getMessage()
    for plugin in build_launcher.PLUGINS:
        assert (tmp_path / plugin).read_text() == shim.launcher(plugin)
        assert os.access(tmp_path / plugin, os.X_OK)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".calico-ipam-py",
        ".calico-py",
        "calico",
        "calico-ipam",
    ]


def test_install_replaces_python_launchers_with_the_c_one(tmp_path: Path) -> None:
    build_launcher.install(tmp_path, native=False)
    assert build_launcher.install(tmp_path)
    for plugin in build_launcher.PLUGINS:
        assert (tmp_path / plugin).read_bytes()[:4] == b"\x7fELF"
        fallback = tmp_path / build_launcher.fallback_name(plugin)
        assert fallback.read_text() == shim.launcher(plugin)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
