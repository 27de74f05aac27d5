"""The exec'd shim: stdlib-only imports, agent round trip, fallback rules, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plugin import shim
from plugin.spec import dispatch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sock_dir() -> Iterator[str]:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    d = tempfile.mkdtemp(prefix="shim", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class FakeAgent:
    """A one-thread unix socket server speaking the shim protocol."""

    def __init__(self, path: str, respond: Callable[[bytes], bytes | None]) -> None:
        self.path = path
        self.respond = respond
        self.requests: list[dict[str, object]] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

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
                self.requests.append(shim.decode_request(data))
                reply = self.respond(data)
                if reply is not None:
                    conn.sendall(reply)

    def close(self) -> None:
        self.server.close()


def reply_ok(stdout: str = "out\n", code: int = 0) -> Callable[[bytes], bytes]:
    return lambda _: shim.encode_reply({"exit_code": code, "stdout": stdout, "stderr": ""})


REQUEST = shim.build_request(
    "calico",
    {"CNI_COMMAND": "VERSION", "CALICO_NODENAME": "n1", "HOME": "/root", "PATH": "/bin"},
    b'{"cniVersion": "0.3.1"}',
)


def test_build_request_ships_only_plugin_env() -> None:
    assert REQUEST == {
        "plugin": "calico",
        "env": {"CNI_COMMAND": "VERSION", "CALICO_NODENAME": "n1"},
        "stdin": '{"cniVersion": "0.3.1"}',
    }
    # Undecodable bytes survive the JSON trip and reach the handler's decoder.
    odd = shim.build_request("calico", {}, b"\xff{")
    assert json.loads(json.dumps(odd))["stdin"].encode("utf-8", "surrogateescape") == b"\xff{"


@pytest.mark.parametrize(
    "text",
    ["plain", 'q"uote\\back', "ctl\x00\x01\n\t\x1f", "ünïcødé ✓ 🐳", "\udcff\udc80 lone"],
)
def test_request_encoding_without_json_module(text: str) -> None:
    req = {"plugin": "calico", "env": {"CNI_ARGS": text, text: "k"}, "stdin": text}
    assert shim.decode_request(shim.encode_request(req)) == req
    assert json.loads(shim.encode_request(req)) == req  # plain JSON for any agent


def test_reply_framing_round_trip() -> None:
    reply = {"exit_code": 7, "stdout": '{"msg": "ünï"}\n', "stderr": "why\n"}
    data = shim.encode_reply(reply)
    assert data.startswith(b"CNI-REPLY 7 ")
    assert shim.decode_reply(data) == reply
    with pytest.raises(ValueError):
        shim.decode_reply(data[:-1])


def test_agent_round_trip(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "cni.sock")
    agent = FakeAgent(path, reply_ok("hello\n", 3))
    try:
        reply = shim.execute(REQUEST, path, timeout=5)
    finally:
        agent.close()
    assert reply["exit_code"] == 3 and reply["stdout"] == "hello\n"
    assert agent.requests == [REQUEST]


def _fake_handler(monkeypatch: pytest.MonkeyPatch, calls: list[dict[str, object]]) -> None:
    mod = types.ModuleType("_fake_cni_handler")

    def handle(request: dict[str, object]) -> dict[str, object]:
        calls.append(request)
        return dispatch(request, {})

    mod.handle = handle  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "_fake_cni_handler", mod)
    monkeypatch.setitem(shim.HANDLERS, "calico", "_fake_cni_handler")


def test_fallback_when_socket_absent(sock_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    _fake_handler(monkeypatch, calls)
    reply = shim.execute(REQUEST, os.path.join(sock_dir, "missing.sock"), timeout=5)
    assert calls == [REQUEST]
    assert reply["exit_code"] == 0
    assert json.loads(str(reply["stdout"]))["cniVersion"] == "0.3.1"


def test_fallback_when_socket_refuses(sock_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stale socket file left by a stopped agent: bound once, nobody listening now.
    path = os.path.join(sock_dir, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    calls: list[dict[str, object]] = []
    _fake_handler(monkeypatch, calls)
    assert shim.execute(REQUEST, path, timeout=5)["exit_code"] == 0
    assert len(calls) == 1


def test_empty_socket_setting_means_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    _fake_handler(monkeypatch, calls)
    shim.execute(REQUEST, "", timeout=5)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "respond",
    [
        lambda _: None,  # accepted, then closed without a word
        lambda _: b"{half a repl",
        lambda _: json.dumps({"exit_code": 0, "stdout": "json is not the reply format"}).encode(),
        lambda _: b"CNI-REPLY 0 10 0\nshort",  # truncated body
        lambda _: b"CNI-REPLY x 0 0\n",
    ],
)
def test_broken_agent_is_try_again_and_never_reruns(
    sock_dir: str, monkeypatch: pytest.MonkeyPatch, respond: Callable[[bytes], bytes | None]
) -> None:
    path = os.path.join(sock_dir, "cni.sock")
    agent = FakeAgent(path, respond)
    calls: list[dict[str, object]] = []
    _fake_handler(monkeypatch, calls)
    try:
        reply = shim.execute(REQUEST, path, timeout=5)
    finally:
        agent.close()
    assert calls == []  # the agent may have done part of the work: do not run it twice
    assert reply["exit_code"] != 0
    err = json.loads(str(reply["stdout"]))
    assert err["code"] == 11 and err["cniVersion"] == "0.3.1"


def test_agent_timeout_is_try_again(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "slow.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)  # accepts into the backlog, never answers
    try:
        reply = shim.execute(REQUEST, path, timeout=0.2)
    finally:
        server.close()
    assert json.loads(str(reply["stdout"]))["code"] == 11


def test_missing_implementation_is_plugin_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(shim.HANDLERS, "calico", "_no_such_module_here")
    reply = shim.execute(REQUEST, "", timeout=5)
    assert reply["exit_code"] != 0
    assert json.loads(str(reply["stdout"]))["code"] == 100


def _python_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "CALICO_"))}
    env.update(extra)
    return env


def test_shim_imports_only_stdlib() -> None:
    code = (
        "import sys; before = set(sys.modules); import plugin.shim; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    ours = [m for m in out if m.split(".")[0] in ("plugin", "calico", "agent")]
    assert ours == ["plugin", "plugin.shim"]
    # json pulls in re and enum (~10 ms under -S): the success path does without it.
    assert "json" not in out and "socket" not in out
    stdlib = set(sys.stdlib_module_names)
    foreign = [m for m in out if m.split(".")[0].lstrip("_") not in stdlib and m not in ours]
    assert foreign == []


def test_main_end_to_end_through_agent(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "cni.sock")

    def respond(data: bytes) -> bytes:
        return shim.encode_reply(dispatch(shim.decode_request(data), {}))

    agent = FakeAgent(path, respond)
    try:
        ok = subprocess.run(
            [sys.executable, "-m", "plugin.shim", "calico-ipam"],
            input=b'{"cniVersion": "1.0.0"}',
            env=_python_env(CNI_COMMAND="VERSION", CALICO_CNI_SOCKET=path),
            capture_output=True,
            cwd=REPO,
            check=False,
        )
        bad = subprocess.run(
            [sys.executable, "-m", "plugin.shim", "calico"],
            input=b"{nope",
            env=_python_env(
                CNI_COMMAND="ADD",
                CNI_CONTAINERID="c1",
                CNI_NETNS="/var/run/netns/x",
                CNI_IFNAME="eth0",
                CNI_PATH="/usr/lib/cni",
                CALICO_CNI_SOCKET=path,
            ),
            capture_output=True,
            cwd=REPO,
            check=False,
        )
    finally:
        agent.close()
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {
        "cniVersion": "1.0.0",
        "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }
    assert agent.requests[0]["plugin"] == "calico-ipam"
    assert bad.returncode != 0
    assert json.loads(bad.stdout)["code"] == 6
    assert bad.stderr  # the reason is on stderr too, for someone running it by hand


def test_launcher_runs_shim_without_site(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "cni.sock")
    agent = FakeAgent(path, lambda data: shim.encode_reply(dispatch(shim.decode_request(data), {})))
    exe = os.path.join(sock_dir, "calico-ipam")
    with open(exe, "w") as f:
        f.write(shim.launcher("calico-ipam", python=sys.executable, root=str(REPO)))
    os.chmod(exe, 0o755)
    try:
        p = subprocess.run(
            [exe],
            input=b'{"cniVersion": "0.1.0"}',
            env=_python_env(CNI_COMMAND="VERSION", CALICO_CNI_SOCKET=path),
            capture_output=True,
            check=False,
        )
    finally:
        agent.close()
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["cniVersion"] == "0.1.0"
    assert agent.requests[0]["plugin"] == "calico-ipam"
    assert shim.launcher("calico", "/py", "/src").startswith("#!/py -S\n")
