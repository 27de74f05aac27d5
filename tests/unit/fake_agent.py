"""A small stand-in for agent.main.Agent that implements the node API's AgentView: an empty
synced cache, fresh health, nothing applied yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.api.metrics import Histogram
from agent.calc.model import Dataplane
from agent.status import Health
from agent.sync import ClusterCache


@dataclass
class FakeAgent:
    nodename: str
    cache: ClusterCache = field(default_factory=ClusterCache)
    health: Health = field(init=False)
    desired: Dataplane | None = None
    apply_histogram: Histogram = field(default_factory=Histogram)
    resyncs: int = 0
    status: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.health = Health(self.nodename)

    def endpoint_status(self) -> dict[str, dict[str, Any]]:
        return self.status

    def bgp_status(self) -> dict[str, Any]:
        return {
            "backend": "direct",
            "running": False,
            "router_id": None,
            "peers": [],
            "error": None,
        }


class FakeNodeAPI:
    """A node API over a unix socket with canned answers (path under /v1 -> JSON), as a
    node's agent serves it: for clients (the console's poller) tested without an agent.
    A path it has no answer for is a 404 with the API's error body, as an agent that does
    not serve it answers (e.g. /v1/bgp from an agent without BGP)."""

    def __init__(self, socket_path: str, answers: dict[str, Any]):
        import http.server
        import socketserver
        import threading

        self.path = socket_path
        self.answers = answers
        self.requests: list[str] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                import json

                api.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                if path.startswith("/v1") and path[3:] in api.answers:
                    status, body = 200, api.answers[path[3:]]
                else:
                    status, body = 404, {"error": f"no such path {path}"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def address_string(self) -> str:
                return "unix"

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(socket_path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def __enter__(self) -> FakeNodeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
