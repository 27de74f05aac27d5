"""The web console's gate, in front of textual-serve: token rules, 401 before anything runs,
the session limit's page, and a page that fetches nothing from outside."""

from __future__ import annotations

import asyncio
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from console.web import choose_token, is_loopback, session_command
from console.web_server import ConsoleWebServer, Sessions

TOKEN = "s3cret-token"


def test_loopback_is_addresses_of_this_machine_only():
    assert is_loopback("127.0.0.1") and is_loopback("127.3.4.5") and is_loopback("::1")
    assert is_loopback("localhost") and is_loopback("[::1]")
    for host in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.20", "lab.example", ""):
        assert not is_loopback(host), host


def test_a_token_is_generated_off_loopback_and_a_given_one_is_kept():
    assert choose_token("127.0.0.1", None) is None
    assert choose_token("127.0.0.1", "mine") == "mine"
    made = choose_token("0.0.0.0", None)
    assert made and len(made) >= 20 and made != choose_token("0.0.0.0", None)
    assert choose_token("10.1.2.3", "mine") == "mine"


def test_session_command_execs_the_console_with_its_arguments():
    line = session_command("/venv/bin/python", ["--etcd-endpoints", "http://a b", "--read-only"])
    words = shlex.split(line)
    assert words[:4] == ["exec", "/venv/bin/python", "-m", "console.cli"]
    assert words[4:] == ["--etcd-endpoints", "http://a b", "--read-only"]


def test_sessions_count_seats_against_the_limit():
    sessions = Sessions(2)
    assert sessions.take() and sessions.take()
    assert sessions.full and not sessions.take() and sessions.seats == 2
    sessions.give_back()
    assert not sessions.full and sessions.take()


def server(token: str | None = TOKEN, limit: int = 4) -> ConsoleWebServer:
    return ConsoleWebServer(
        "exec false",
        host="0.0.0.0",
        port=8022,
        token=token,
        max_sessions=limit,
        cluster="calilab",
        read_only=True,
    )


def run(check, srv: ConsoleWebServer) -> None:
    async def go() -> None:
        client = TestClient(TestServer(await srv._make_app()))
        await client.start_server()
        try:
            await check(client)
        finally:
            await client.close()

    asyncio.run(go())


def test_without_the_token_every_route_is_401_and_no_console_runs():
    srv = server()

    async def check(client: TestClient) -> None:
        for path in ("/", "/ws", "/static/js/textual.js", "/?token=wrong"):
            resp = await client.get(path)
            assert resp.status == 401, path
            assert "needs its token" in await resp.text()
        assert srv.sessions.running == set()

    run(check, srv)


def test_the_token_opens_the_page_and_its_cookie_the_rest():
    async def check(client: TestClient) -> None:
        first = await client.get(f"/?fontsize=20&token={TOKEN}", allow_redirects=False)
        assert first.status == 302 and first.headers["Location"] == "/?fontsize=20"
        assert first.cookies["calico-console-8022"]["httponly"]
        page = await client.get(first.headers["Location"])  # the jar carries the cookie now
        assert page.status == 200
        body = await page.text()
        assert 'data-font-size="20"' in body
        assert 'data-session-websocket-url="ws://' in body and "/ws" in body
        # the cookie jar now carries the token: the script loads without ?token=
        js = await client.get("/static/js/textual.js")
        assert js.status == 200

    run(check, server())


def test_the_page_fetches_nothing_from_another_host():
    async def check(client: TestClient) -> None:
        body = await (await client.get("/")).text()
        urls = re.findall(r'(?:src|href)="([^"]+)"|url\("([^"]+)"\)', body)
        flat = [u for pair in urls for u in pair if u]
        assert flat and all(u.startswith("/static/") for u in flat), flat
        assert "googleapis" not in body and "http" not in body.replace("ws://", "")
        for u in flat:
            assert (await client.get(u)).status == 200, u

    run(check, server(token=None))


def test_at_the_session_limit_the_page_says_so():
    srv = server(limit=2)
    srv.sessions.seats = 2

    async def check(client: TestClient) -> None:
        for path in (f"/?token={TOKEN}", f"/ws?token={TOKEN}"):
            resp = await client.get(path)
            assert resp.status == 503, path
            text = await resp.text()
            assert "all 2 console sessions are in use" in text and "--max-sessions" in text
        srv.sessions.give_back()
        assert (await client.get(f"/?token={TOKEN}")).status == 200

    run(check, srv)


def console_web(*args: str) -> subprocess.CompletedProcess:
    """`calico-console --web` as a person runs it (a cluster nobody listens on: the server
    must fail before any session would connect)."""
    exe = Path(sys.executable).with_name("calico-console")
    cmd = [str(exe), "--web", "--etcd-endpoints", "http://127.0.0.1:1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_a_port_in_use_is_one_line_and_nothing_claims_to_serve():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run_ = console_web("--port", str(port))
    assert run_.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in run_.stderr and "in use" in run_.stderr
    assert "serving" not in run_.stdout


def test_at_least_one_session():
    run_ = console_web("--max-sessions", "0")
    assert run_.returncode == 2 and "--max-sessions must be at least 1" in run_.stderr


def test_the_token_may_come_from_the_environment(monkeypatch):
    import argparse

    from console.web import add_arguments

    monkeypatch.setenv("CALICO_CONSOLE_TOKEN", "from-env")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--web"]).token == "from-env"
    assert parser.parse_args(["--web", "--token", "flag"]).token == "flag"
    args = parser.parse_args(["--web"])
    assert (args.host, args.max_sessions, args.allow_changes) == ("127.0.0.1", 4, False)
