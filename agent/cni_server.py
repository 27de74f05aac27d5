"""The node agent's end of the CNI hand-off: serve `calico` / `calico-ipam` requests that the
exec'd shim (plugin/shim.py) forwards over a unix socket.

One request per connection, framed as the shim defines (`decode_request` /
`encode_reply`); each connection is served on its own thread, which runs the same
`handle(request)` the in-process fallback would, with pyetcd and the plugin modules
already imported and the etcd connection open. The socket is root-only (0600): whoever
can talk to it can plumb interfaces into this node.

Standalone: `python -m agent.cni_server [SOCKET]` serves until interrupted (tests and
benchmarks run it in a node namespace without the rest of the agent).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plugin import calico_main, ipam_main, phases, shim

log = logging.getLogger(__name__)

MAX_REQUEST = 4 << 20  # a CNI config with prevResult is a few KB; refuse anything absurd
RECV_TIMEOUT = 10.0  # a shim sends its request right after connecting


Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _load_handlers() -> dict[str, Handler]:
    # Imported with this module, so the first pod pays no import time.
    handlers = {"calico": calico_main.handle, "calico-ipam": ipam_main.handle}
    assert set(handlers) == set(shim.HANDLERS), "the shim and the agent serve the same plugins"
    return handlers


class CNIServer:
    """Accepts shim connections on `socket_path` and answers each on its own thread."""

    def __init__(
        self, socket_path: str | os.PathLike[str], handlers: dict[str, Handler] | None = None
    ):
        self.socket_path = str(socket_path)
        self.handlers = handlers
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._active: set[threading.Thread] = set()
        self._lock = threading.Lock()

    # -- lifecycle

    def start(self) -> None:
        if self._sock is not None:
            return
        if self.handlers is None:
            self.handlers = _load_handlers()
        path = Path(self.socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A socket file left by a dead agent would make bind fail; one with a live
        # listener means another agent serves this node: refuse to steal it.
        if path.exists():
            if _someone_listens(self.socket_path):
                raise RuntimeError(f"another process already serves {self.socket_path}")
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # created 0600, no window where others could connect
        try:
            sock.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        sock.listen(256)
        self._sock = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="cni-server", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, let requests in flight finish (they may hold addresses), remove
        the socket file."""
        sock = self._sock
        if sock is None:
            return
        self._stopping.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            active = list(self._active)
        for t in active:
            t.join(timeout)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._sock = None
        self._thread = None

    def __enter__(self) -> CNIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            accepted = time.perf_counter()
            t = threading.Thread(
                target=self._serve, args=(conn, accepted), name="cni-request", daemon=True
            )
            with self._lock:
                self._active.add(t)
            t.start()

    def _serve(self, conn: socket.socket, accepted: float) -> None:
        # Every request is traced (plugin/phases.py: ~1 us a phase); the record is
        # written only for a request whose environment asks for it.
        trace = phases.Trace(origin=accepted)
        token = phases.start(trace)
        phases.mark("spawn", accepted)  # accept -> this thread running
        request: dict[str, Any] = {}
        try:
            with conn:
                conn.settimeout(RECV_TIMEOUT)
                with phases.phase("recv"):
                    data = _read_all(conn)
                conn.settimeout(None)
                reply = self.handle_bytes(data, request)
                with phases.phase("reply"):
                    conn.sendall(shim.encode_reply(reply))
        except OSError as exc:  # the shim went away: nothing to answer
            log.debug("CNI connection dropped: %s", exc)
        finally:
            phases.stop(token)
            # After the reply (costs the request nothing), before this thread counts as
            # done (stop() waits for it: the record is there once the server stopped).
            env = request.get("env")
            if isinstance(env, dict) and env.get(phases.TRACE_ENV):
                command, cid = env.get("CNI_COMMAND", ""), env.get("CNI_CONTAINERID", "")
                phases.write(trace, env, str(command), str(cid))
            with self._lock:
                self._active.discard(threading.current_thread())

    def handle_bytes(self, data: bytes, decoded: dict[str, Any] | None = None) -> dict[str, Any]:
        """Answer one request's bytes; `decoded`, when given, receives the request."""
        try:
            with phases.phase("decode"):
                request = shim.decode_request(data)
            if decoded is not None:
                decoded.update(request)
        except ValueError as exc:
            return shim.error_reply(shim.PLUGIN_FAILURE, "malformed shim request", str(exc), "")
        plugin = str(request.get("plugin", ""))
        handler = (self.handlers or {}).get(plugin)
        stdin = str(request.get("stdin", ""))
        if handler is None:
            return shim.error_reply(
                shim.PLUGIN_FAILURE,
                "unknown plugin",
                f"this agent serves {sorted(shim.HANDLERS)}",
                stdin,
            )
        try:
            return handler(request)
        except Exception as exc:  # handle() answers failures itself; this is the last guard
            log.exception("CNI %s request failed", plugin)
            return shim.error_reply(
                shim.PLUGIN_FAILURE, "plugin error", f"{type(exc).__name__}: {exc}", stdin
            )


def _read_all(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_REQUEST:
            raise OSError(f"request larger than {MAX_REQUEST} bytes")
        chunks.append(chunk)


def _someone_listens(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else os.environ.get(shim.SOCKET_ENV) or shim.DEFAULT_SOCKET
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = CNIServer(path)
    server.start()
    print(f"serving CNI requests on {path}", flush=True)
    stop = threading.Event()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
