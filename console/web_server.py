"""The aiohttp side of `calico-console --web` (console/web.py says what and why): textual-serve's
Server with a token gate, a session limit, its own page and sessions that end with their tab.
Imported only by `--web`: aiohttp and textual-serve add about 180 ms to importing the
console (python -X importtime), against a first paint budget of 1 s in the terminal.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
import signal
from dataclasses import dataclass, field

from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server

log = logging.getLogger("calico-console.web")

QUIT_GRACE = 5.0  # seconds a console has to quit after its tab closed, then it is killed


@dataclass
class Sessions:
    """Seats against the limit, and the console processes in them (pure bookkeeping).

    A seat is taken before the websocket's first await and given back after its console
    is gone, so two tabs opening at once cannot both take the last one."""

    limit: int
    seats: int = 0
    running: set[int] = field(default_factory=set)  # pids of the consoles started

    @property
    def full(self) -> bool:
        return self.seats >= self.limit

    def take(self) -> bool:
        if self.full:
            return False
        self.seats += 1
        return True

    def give_back(self) -> None:
        self.seats = max(0, self.seats - 1)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="/static/css/xterm.css">
<style>
@font-face {{ font-family: "Roboto Mono"; font-style: normal;
  src: url("/static/fonts/RobotoMono-VariableFont_wght.ttf") format("truetype"); }}
@font-face {{ font-family: "Roboto Mono"; font-style: italic;
  src: url("/static/fonts/RobotoMono-Italic-VariableFont_wght.ttf") format("truetype"); }}
html, body {{ margin: 0; height: 100%; background: #0c181f; color: #e0e0e0;
  font-family: "Roboto Mono", monospace; }}
.textual-terminal {{ position: absolute; inset: 0; opacity: 0; }}
body.-first-byte .textual-terminal {{ opacity: 1; }}
#waiting, #ended {{ position: absolute; inset: 0; display: flex; align-items: center;
  justify-content: center; text-align: center; }}
body.-first-byte #waiting, #ended, #start {{ display: none; }}
body.-closed #ended {{ display: flex; background: #0c181f; z-index: 5; }}
button {{ font: inherit; padding: 0.5em 1.5em; margin-top: 1em; }}
</style>
<script src="/static/js/textual.js"></script>
</head>
<body>
<div id="waiting">starting calico-console on {cluster}&hellip;</div>
<div id="ended"><div>The console session ended.<br>
<button type="button" onclick="location.reload()">Start a new one</button></div></div>
<button id="start" type="button" onclick="location.reload()">Start</button>
<div id="terminal" class="textual-terminal" data-session-websocket-url="{ws_url}"
 data-font-size="{font_size}"></div>
</body>
</html>
"""

MESSAGE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>calico-console: {title}</title>
<style>body {{ background: #0c181f; color: #e0e0e0; font-family: monospace;
  display: flex; height: 90vh; align-items: center; justify-content: center; }}
div {{ max-width: 40em; }}</style></head>
<body><div><h2>{title}</h2><p>{body}</p></div></body></html>
"""


def message_page(status: int, title: str, body: str) -> web.Response:
    text = MESSAGE_PAGE.format(title=html.escape(title), body=html.escape(body))
    return web.Response(status=status, text=text, content_type="text/html")


class ConsoleWebServer(Server):
    """textual-serve's Server with a token check, a session limit and its own page."""

    def __init__(
        self,
        command: str,
        *,
        host: str,
        port: int,
        token: str | None,
        max_sessions: int,
        cluster: str,
        read_only: bool,
    ) -> None:
        super().__init__(command, host=host, port=port, title=f"calico-console: {cluster}")
        self.token = token
        self.sessions = Sessions(max_sessions)
        self.cluster = cluster
        self.read_only = read_only
        self.cookie = f"calico-console-{port}"
        self.services: dict[int, AppService] = {}  # pid -> its session, while it runs

    # ------------------------------------------------------------ the gate
    def _authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.query.get("token") or request.cookies.get(self.cookie) or ""
        return secrets.compare_digest(given.encode(), self.token.encode())

    @web.middleware
    async def gate(self, request: web.Request, handler) -> web.StreamResponse:
        """Every route, before anything runs: the token, then (page and websocket) the limit."""
        if not self._authorized(request):
            return message_page(
                401,
                "this console needs its token",
                "Open the address calico-console --web printed (it ends in ?token=...). "
                "Nothing was started.",
            )
        if self.token is not None and request.query.get("token"):
            # the token becomes a cookie and leaves the address bar: a projected screen
            # must not show it to the room
            rest = request.rel_url.with_query(
                [(k, v) for k, v in request.query.items() if k != "token"]
            )
            response = web.Response(status=302, headers={"Location": str(rest)})
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict")
            return response
        if request.path in ("/", "/ws") and self.sessions.full:
            return self.limit_page()
        return await handler(request)

    def limit_page(self) -> web.Response:
        n = self.sessions.limit
        return message_page(
            503,
            f"all {n} console sessions are in use",
            f"This server runs at most {n} consoles at once (--max-sessions). "
            "Close a tab that shows it, or wait, then reload this page.",
        )

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.gate])
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws", self.handle_websocket, name="websocket"),
                # ctrl+s: the screenshot a session hands to its browser (textual-serve's)
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, name="static"),
            ]
        )
        app.on_shutdown.append(self.on_shutdown)
        return app

    async def on_shutdown(self, app: web.Application) -> None:
        """The server stops (ctrl+c, SIGTERM) with tabs still open: their consoles go too.
        A console does not act on SIGTERM itself (Textual's web driver reads its quit from
        stdin), so each is asked to quit, given QUIT_GRACE, then killed."""
        services = list(self.services.values())
        for service in services:
            await service.send_meta({"type": "quit"})
        await asyncio.gather(*(_end(s) for s in services), return_exceptions=True)

    # ------------------------------------------------------------ the page and the sessions
    async def handle_index(self, request: web.Request) -> web.Response:  # type: ignore[override]
        scheme = "wss" if request.secure else "ws"
        try:
            font_size = max(8, min(40, int(request.query.get("fontsize", "16"))))
        except ValueError:
            font_size = 16
        text = PAGE.format(
            title=html.escape(self.title),
            cluster=html.escape(self.cluster),
            ws_url=html.escape(f"{scheme}://{request.host}/ws"),
            font_size=font_size,
        )
        return web.Response(text=text, content_type="text/html")

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One console per websocket; it ends when the websocket does (the tab closed)."""
        if not self.sessions.take():  # before any await: the seat is ours or nobody's
            raise web.HTTPServiceUnavailable(text=self.limit_page().text, content_type="text/html")
        try:
            return await self._session(request)
        finally:
            self.sessions.give_back()

    async def _session(self, request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(heartbeat=15)
        width = _int(request.query.get("width"), 80)
        height = _int(request.query.get("height"), 24)
        await websocket.prepare(request)
        service = AppService(
            self.command,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        pid = 0
        try:
            await service.start(width, height)
            process = service._process  # textual-serve keeps it private; we end it for good
            assert process is not None
            pid = process.pid
            self.sessions.running.add(pid)
            self.services[pid] = service
            log.info("session %d started (%d running)", pid, len(self.sessions.running))
            try:
                await self._process_messages(websocket, service)
            finally:
                await asyncio.wait_for(asyncio.shield(service.stop()), QUIT_GRACE)
        except (TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("session %d failed", pid)
        finally:
            await _end(service)
            self.sessions.running.discard(pid)
            self.services.pop(pid, None)
            log.info("session %d ended (%d running)", pid, len(self.sessions.running))
            if not websocket.closed:
                await websocket.close()
        return websocket

    def announce(self) -> None:
        """Where to point a browser, printed once the port is bound (not before: a port in
        use must not first claim to be served)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        url = f"http://{shown}:{self.port}/"
        if self.token:
            url += f"?token={self.token}"
        mode = "read-only" if self.read_only else "changes allowed (--allow-changes)"
        print(f"calico-console: serving {self.cluster} on {url}", flush=True)
        if self.host in ("0.0.0.0", "::"):
            print(
                f"calico-console: every address of this machine: from elsewhere, put one of "
                f"them in place of {shown}",
                flush=True,
            )
        print(
            f"calico-console: {mode}; at most {self.sessions.limit} sessions; ctrl+c stops",
            flush=True,
        )

    def serve(self, debug: bool = False) -> None:
        """Until ctrl+c or SIGTERM. textual-serve's own serve() prints its banner before it
        binds and installs Rich logging; this one announces after binding."""
        loop = asyncio.new_event_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_exit)
        web.run_app(
            self._make_app(),
            host=self.host,
            port=self.port,
            handle_signals=False,
            loop=loop,
            print=lambda _banner: self.announce(),
        )


def _int(value: str | None, default: int) -> int:
    try:
        return int(value or "")
    except ValueError:
        return default


async def _end(service: AppService) -> None:
    """Make sure a session's console is gone: it had QUIT_GRACE to quit; then SIGKILL."""
    process = service._process
    if process is None or process.returncode is not None:
        return
    try:
        await asyncio.wait_for(process.wait(), QUIT_GRACE)
    except TimeoutError:
        log.warning("session %d did not quit in %.0f s: killed", process.pid, QUIT_GRACE)
        process.send_signal(signal.SIGKILL)
        await process.wait()
