"""The exec'd entry of `calico` and `calico-ipam`: hand the request to the warm node agent.

A runtime execs the plugin once per pod and network. Importing the real implementation
(pyroute2, the etcd client) costs hundreds of milliseconds, many times a whole ADD of the
reference plugins, so on its success path this module imports only `os`, `sys` and
`_socket`, and forwards the invocation to the agent, which runs the same
`handle(request)` with everything loaded and an etcd connection open.

Wire protocol, one request per connection on a unix stream socket:
  shim  -> agent: one JSON object `{"plugin": "calico"|"calico-ipam", "env": {...},
                  "stdin": "..."}`; then the shim shuts down its write side (EOF = end).
  agent -> shim:  the header line `CNI-REPLY <exit_code> <stdout bytes> <stderr bytes>\n`,
                  then stdout's bytes, then stderr's bytes; then the agent closes.
The reply is framed rather than JSON because decoding JSON would import `json` and with
it `re` and `enum`: ~10 ms per exec in an interpreter started with -S, where the rest of
the shim costs ~2 ms. `encode_reply`/`decode_request` below are the agent's half.
The shim copies stdout/stderr verbatim and exits with exit_code, so the runtime cannot
tell which process did the work.

No agent listening (socket file absent, or present but refusing: the agent is stopped or
restarting) -> run `handle(request)` in this process instead: slower, same result. Once
the agent has accepted a request we never fall back: it may have done part of the work
(an address claimed), and running it twice would race with it. A broken conversation is
reported as error 11 so that libcni runtimes retry, and our ADD/DEL are safe to repeat.

Fastest exec path: a launcher running this file under `python -S` (see `launcher`), which
skips site-packages processing (~20 ms with the editable install's path finder); the
fallback turns site processing back on before importing the implementation.
"""

# The C module under `socket`: the Python wrapper builds IntEnums at import and costs
# ~4 ms per exec; the few calls used here are the same on both.
import _socket
import os
import sys

DEFAULT_SOCKET = "/run/calico/cni.sock"
SOCKET_ENV = "CALICO_CNI_SOCKET"  # "" = never try the agent, always run in-process
TIMEOUT_ENV = "CALICO_AGENT_TIMEOUT"  # seconds to wait for the agent's reply
DEFAULT_TIMEOUT = 60.0  # an ADD that waits on etcd retries can take several seconds
REPLY_MAGIC = b"CNI-REPLY"

# The module whose `handle(request) -> reply` implements each plugin, imported only when
# the agent is not there.
HANDLERS = {"calico": "plugin.calico_main", "calico-ipam": "plugin.ipam_main"}

# Environment the plugin code reads: the CNI_* protocol itself, Calico's own overrides
# (CALICO_NODENAME, ...) and the etcd client's (ETCD_ENDPOINTS, ...). The rest of the
# runtime's environment has no meaning to the agent and is not shipped to it.
ENV_PREFIXES = ("CNI_", "CALICO_", "ETCD_")

TRY_AGAIN_LATER = 11  # spec code: libcni runtimes retry on it
PLUGIN_FAILURE = 100  # plugin-defined: same value as plugin.errors.PLUGIN_FAILURE


class AgentUnavailable(Exception):
    """Nobody listens on the socket: the caller may run the request itself."""


class AgentFailed(Exception):
    """The agent took the request but the conversation broke: do not run it again here."""


# ---- encoding without the json module ---------------------------------------------------

# JSON string escapes: quote, backslash, control characters, and the lone surrogates that
# surrogateescape makes of undecodable stdin bytes (raw, they are not valid UTF-8).
_ESCAPES = {i: f"\\u{i:04x}" for i in (*range(0x20), *range(0xDC80, 0xDD00))}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def _json_str(s: str) -> str:
    return '"' + s.translate(_ESCAPES) + '"'


def encode_request(request: dict[str, object]) -> bytes:
    """The request as JSON; its values are strings or a str->str map, nothing else."""
    parts = []
    for key, value in request.items():
        if isinstance(value, dict):
            inner = ",".join(f"{_json_str(k)}:{_json_str(v)}" for k, v in value.items())
            parts.append(f"{_json_str(key)}:{{{inner}}}")
        else:
            parts.append(f"{_json_str(key)}:{_json_str(str(value))}")
    return ("{" + ",".join(parts) + "}").encode()


def decode_request(data: bytes) -> dict[str, object]:
    """Agent side: the bytes a shim sent -> the request dict `handle()` takes."""
    import json

    request = json.loads(data)
    if not isinstance(request, dict) or not isinstance(request.get("env"), dict):
        raise ValueError("not a shim request")
    return request


def encode_reply(reply: dict[str, object]) -> bytes:
    """Agent side: a `handle()` reply -> the bytes to send back."""
    out = str(reply.get("stdout", "")).encode("utf-8", "surrogateescape")
    err = str(reply.get("stderr", "")).encode("utf-8", "surrogateescape")
    code = reply.get("exit_code", 1)
    header = b"%s %d %d %d\n" % (
        REPLY_MAGIC,
        code if isinstance(code, int) else 1,
        len(out),
        len(err),
    )
    return header + out + err


def decode_reply(data: bytes) -> dict[str, object]:
    header, nl, body = data.partition(b"\n")
    fields = header.split(b" ")
    if not nl or len(fields) != 4 or fields[0] != REPLY_MAGIC:
        raise ValueError("no reply header")
    code, n_out, n_err = (int(f) for f in fields[1:])
    if len(body) != n_out + n_err:
        raise ValueError(f"reply body is {len(body)} bytes, header says {n_out + n_err}")
    return {
        "exit_code": code,
        "stdout": body[:n_out].decode("utf-8", "surrogateescape"),
        "stderr": body[n_out:].decode("utf-8", "surrogateescape"),
    }


# ---- the exec path ----------------------------------------------------------------------


def build_request(plugin: str, env: dict[str, str], stdin: bytes) -> dict[str, object]:
    return {
        "plugin": plugin,
        "env": {k: v for k, v in env.items() if k.startswith(ENV_PREFIXES)},
        # Configs are UTF-8 JSON; anything else is carried through losslessly so the
        # handler, not the shim, reports the decode failure (code 6).
        "stdin": stdin.decode("utf-8", "surrogateescape"),
    }


def call_agent(path: str, request: dict[str, object], timeout: float) -> dict[str, object]:
    """Send one request, return the agent's reply. Raises AgentUnavailable before the agent
    has the request, AgentFailed after."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError, NotADirectoryError):
            raise AgentUnavailable(path) from None
        try:
            sock.sendall(encode_request(request))
            sock.shutdown(_socket.SHUT_WR)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:  # includes TimeoutError
            raise AgentFailed(f"talking to the agent at {path}: {exc}") from None
    finally:
        sock.close()
    try:
        return decode_reply(b"".join(chunks))
    except ValueError as exc:
        raise AgentFailed(f"the agent at {path} sent a malformed reply: {exc}") from None


def run_in_process(request: dict[str, object]) -> dict[str, object]:
    """The fallback: import the real implementation here and run it."""
    if sys.flags.no_site:
        # Started by the -S launcher: site-packages (pyroute2, the etcd client, the
        # editable install's finder) are only on the path after site processing.
        import site

        site.main()
    import importlib

    module = importlib.import_module(HANDLERS[str(request["plugin"])])
    return module.handle(request)


def error_reply(code: int, msg: str, details: str, stdin: str) -> dict[str, object]:
    # Only on failure paths: the spec's error JSON, in the config's version when readable.
    import json

    from plugin import errors

    version = None
    try:
        data = json.loads(stdin)
        if isinstance(data, dict) and isinstance(data.get("cniVersion"), str):
            version = data["cniVersion"]
    except ValueError:
        pass
    return errors.error_reply(errors.CNIError(code, msg, details), version)


def execute(request: dict[str, object], socket_path: str, timeout: float) -> dict[str, object]:
    stdin = str(request["stdin"])
    if socket_path:
        try:
            return call_agent(socket_path, request, timeout)
        except AgentUnavailable:
            pass
        except AgentFailed as exc:
            return error_reply(TRY_AGAIN_LATER, "node agent did not answer", str(exc), stdin)
    try:
        return run_in_process(request)
    except ImportError as exc:
        # A broken install, not a transient state: no retry code.
        return error_reply(PLUGIN_FAILURE, "plugin implementation not importable", str(exc), stdin)
    except Exception as exc:
        # handle() answers every failure itself; this is the last guard so the runtime
        # still reads the spec's JSON instead of a traceback.
        detail = f"{type(exc).__name__}: {exc}"
        return error_reply(PLUGIN_FAILURE, "plugin error", detail, stdin)


def main(plugin: str | None = None) -> int:
    # Without an explicit name, the file name says which plugin we are (a launcher or
    # symlink named `calico-ipam` in the CNI bin dir).
    if plugin is None:
        name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        plugin = name if name in HANDLERS else "calico"
    stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
    request = build_request(plugin, dict(os.environ), stdin)
    socket_path = os.environ.get(SOCKET_ENV, DEFAULT_SOCKET)
    try:
        timeout = float(os.environ.get(TIMEOUT_ENV, "") or DEFAULT_TIMEOUT)
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    reply = execute(request, socket_path, timeout)
    out = sys.stdout.buffer
    out.write(str(reply.get("stdout", "")).encode("utf-8", "surrogateescape"))
    out.flush()
    err = reply.get("stderr")
    if err:
        sys.stderr.buffer.write(str(err).encode("utf-8", "surrogateescape"))
        sys.stderr.flush()
    code = reply.get("exit_code", 1)
    return code if isinstance(code, int) else 1


def launcher(plugin: str, python: str | None = None, root: str | None = None) -> str:
    """Text of an executable for the CNI bin dir that runs this shim under `python -S`.

    The console scripts pip generates start a full interpreter (site processing included);
    this launcher is the lean alternative an installer can write as `<bin>/calico` and
    `<bin>/calico-ipam`. It pins the interpreter (the venv's, so the fallback finds the
    dependencies) and the source root.
    """
    python = python or sys.executable
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (
        f"#!{python} -S\n"
        "# Generated by plugin.shim.launcher: forwards to the calico node agent.\n"
        "import sys\n"
        f"sys.path.insert(0, {root!r})\n"
        "from plugin.shim import main\n"
        f"sys.exit(main({plugin!r}))\n"
    )


if __name__ == "__main__":
    # `python -m plugin.shim calico-ipam` for manual runs and measurements.
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
