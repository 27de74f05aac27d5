"""`calico-console --web`: the same console in a browser, for a class or a shared screen.

textual-serve does the serving: its `AppService` runs one console process per websocket and
relays the terminal between it and the browser, and its package ships the JavaScript
(xterm.js) and the Roboto Mono font. This module puts what textual-serve does not do in
front of it (its `Server` has no authentication and no limit on processes):

- a token, required whenever the server listens on anything but loopback: generated (and
  printed in the address to open) unless given (`--token` or CALICO_CONSOLE_TOKEN, which
  keeps it out of `ps`). The browser brings it once as `?token=`; the server answers with
  an HttpOnly cookie and a redirect to the same address without it (a projected address
  bar must not show the token to the room); the page, websocket and static files then
  carry the cookie. Without it every route answers 401 before anything starts: no console
  process runs.
- a limit on sessions (default 4): each session is a full console with its own etcd watch
  and node poller (63 MB resident each, measured; the server itself 55 MB), so a projected
  URL opened by a whole class must not fork one per seat. At the limit the page says so
  (503), and a seat is taken before the websocket's first await.
- one process per tab, ended when the tab closes: the websocket's end asks the console to
  quit, and a console still alive 5 s later is killed (by its own pid); stopping the
  server does the same for every tab still open. (textual-serve's own stop waits forever
  for a console that does not quit, and a console ignores SIGTERM under the web driver.)
- ctrl+s hands the console's SVG screenshot to the browser (textual-serve's download
  route), since a file written on the server is of no use to the person at the page.
- its own page, not textual-serve's template: that one loads Roboto Mono from Google's font
  CDN, and a lab in a classroom may have no way out; this page takes the font from the
  package's static files, so nothing is fetched from outside.

The aiohttp side lives in console/web_server.py, imported only for --web.

Read-only is decided by the caller (console/cli.py passes `--read-only` to every session
unless `--allow-changes`); what read-only hides is console/access.py's.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import shlex
import sys
from collections.abc import Sequence

DEFAULT_PORT = 8022
DEFAULT_MAX_SESSIONS = 4


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine: a loopback address or
    `localhost`. Any other name or address (0.0.0.0 and :: included) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def choose_token(host: str, given: str | None) -> str | None:
    """The token the server demands: the given one; else a fresh one off loopback (128 bits,
    URL-safe); else none (loopback with no token asked for)."""
    if given:
        return given
    if is_loopback(host):
        return None
    return secrets.token_urlsafe(16)


def session_command(python: str, console_args: Sequence[str]) -> str:
    """The shell line textual-serve runs for each session (it uses a shell): `exec`, so the
    process it holds is the console itself and ending it ends the console."""
    return "exec " + shlex.join([python, "-m", "console.cli", *console_args])


def serve(
    console_args: Sequence[str],
    *,
    cluster: str,
    host: str,
    port: int,
    token: str | None,
    max_sessions: int,
    read_only: bool,
) -> int:
    """Serve the console until ctrl+c (or SIGTERM); the caller has resolved the cluster."""
    if max_sessions < 1:
        print("calico-console: --max-sessions must be at least 1", file=sys.stderr)
        return 2
    args = [*console_args, *(["--read-only"] if read_only else [])]
    from console.web_server import ConsoleWebServer  # aiohttp: 180 ms, only for --web

    server = ConsoleWebServer(
        session_command(sys.executable, args),
        host=host,
        port=port,
        token=choose_token(host, token),
        max_sessions=max_sessions,
        cluster=cluster,
        read_only=read_only,
    )
    logging.basicConfig(level=logging.INFO, format="calico-console: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # sessions, not every GET
    try:
        server.serve()
    except OSError as exc:  # the port is taken, the address is not ours
        print(f"calico-console: cannot serve on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """calico-console's web flags (they mean nothing without --web)."""
    web_group = parser.add_argument_group("in a browser")
    web_group.add_argument(
        "--web", action="store_true", help="serve the console to browsers (textual-serve)"
    )
    web_group.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1 only)"
    )
    web_group.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    web_group.add_argument(
        "--token",
        default=os.environ.get("CALICO_CONSOLE_TOKEN") or None,
        help="token browsers must bring (?token=; default $CALICO_CONSOLE_TOKEN); "
        "off loopback one is generated if none is given",
    )
    web_group.add_argument(
        "--allow-changes",
        action="store_true",
        help="let web sessions change the cluster (read-only by default: anyone with the URL drives it)",
    )
    web_group.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        help=f"console processes at once, one per tab (default {DEFAULT_MAX_SESSIONS})",
    )
