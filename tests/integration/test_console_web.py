"""`calico-console --web` in a real browser (Debian's chromium, headless, Playwright) on the
shared 2-node lab (issue 16).

What a person in front of the browser sees: the nodes view with both lab nodes, every
request going to the console's own server, `:matrix` typed and run showing the
walkthrough's matrix with nothing wrong, ctrl+s opening its SVG in a new tab, read-only keys
that do nothing and say why (and with --allow-changes, there again except edit), q ending
the session with a page that says so. What the server does behind it: one console per tab,
gone when the tab closes or the server stops, a page of its own at the session limit, and
401 with no process started when a non-loopback address (in a namespace of the test's own)
is opened without the token. Screenshots land in screenshots/web-*.png (linked from the
README).

    sudo .venv/bin/python -m pytest tests/integration/test_console_web.py
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calico.tutorial import HTTPD_IP

from .browser import ROOT, browser, children, chromium_missing, open_tab, web_console
from .test_console_matrix import tutorial  # noqa: F401  (the walkthrough's networks + httpd)

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.etcd, pytest.mark.slow]

SHOTS = ROOT / "screenshots"


@pytest.fixture(scope="module")
def chromium():
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    with browser() as b:
        yield b


@pytest.fixture(scope="module")
def served(tutorial, tmp_path_factory):  # noqa: F811
    """The console served read-only (the default) on loopback, for the whole module."""
    lab = tutorial
    log = tmp_path_factory.mktemp("web") / "console-web.log"
    with web_console(lab.etcd_endpoints, lab.name, log=log) as (proc, port):
        yield lab, proc, f"http://127.0.0.1:{port}/"


def settle_sessions(pid: int, want: int, timeout: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while len(kids := children(pid)) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    return kids


def test_nodes_then_matrix_in_the_browser(served, chromium):
    lab, proc, url = served
    tab = open_tab(chromium, url)
    try:
        nodes = tab.wait_for_text("Nodes (2)", *lab.nodes[:2], "read-only", timeout=30)
        assert all(re.search(rf"^\s*{n}\s", nodes, re.M) for n in lab.nodes[:2]), nodes
        SHOTS.mkdir(exist_ok=True)
        tab.page.screenshot(path=str(SHOTS / "web-nodes.png"))
        # the page, its script, style and font all came from this server, nothing else
        origin = url.rstrip("/")
        assert any(r.endswith("/static/js/textual.js") for r in tab.requests), tab.requests
        assert any("/static/fonts/RobotoMono" in r for r in tab.requests), tab.requests
        assert all(r.startswith(origin) for r in tab.requests), tab.requests

        # wait until both agents report both networks (what the matrix's sources are made of)
        tab.command("networks")
        tab.wait_for_text("network1", "network2")
        tab.command("matrix")
        screen = tab.wait_for(
            lambda t: "Isolation matrix" in t and "probed in" in t,
            timeout=60,
            what="every probe answered",
        )
        m = re.search(r"(\d+) correct, (\d+) wrong", screen)
        assert m and int(m.group(2)) == 0 and int(m.group(1)) >= 4, screen
        assert "unknown" not in screen.split("Isolation matrix")[1].splitlines()[0]
        # the httpd column, cell = expected observed: network1 reaches it from both nodes,
        # network2 from neither
        want = {"network1": ". .", "network2": "X X"}
        for net in want:
            for node in lab.nodes[:2]:
                row = re.search(rf"^\s*{net}@{node}\s+(\S \S)\s*$", screen, re.M)
                assert row and row.group(1) == want[net], (f"{net}@{node}", screen)
        assert HTTPD_IP in screen
        tab.page.screenshot(path=str(SHOTS / "web-matrix.png"))

        # ctrl+s: the console's own SVG screenshot, handed to the browser in a new tab
        with tab.page.context.expect_page(timeout=15_000) as opened:
            tab.press("Control+s")
        svg = opened.value
        svg.wait_for_load_state()
        assert "svg" in (svg.evaluate("document.contentType") or "")
        assert "Isolation" in svg.content() and "wrong" in svg.content()
        svg.close()
    finally:
        tab.page.close()


def test_read_only_keys_are_absent_and_say_why(served, chromium):
    lab, proc, url = served
    tab = open_tab(chromium, url)
    try:
        tab.wait_for_text("Nodes (2)")
        tab.command("profiles")
        screen = tab.wait_for_text("Profiles (", "network1", "describe")
        footer = screen.splitlines()[-1]
        assert "describe" in footer and "edit" not in footer and "delete" not in footer
        assert "new pod" not in footer, footer
        tab.press("e")
        said = tab.wait_for_text("editing a resource is off", "--allow-changes", timeout=10)
        assert "calico-edit-" not in said  # no editor, nothing written
        tab.press("Control+d")
        tab.wait_for_text("deleting a resource is off", timeout=10)
        assert "Delete " not in tab.text()  # no confirm dialog
        tab.page.screenshot(path=str(SHOTS / "web-read-only.png"))
        tab.press("?")
        helped = tab.wait_for_text("Keys in Profiles", "describe")
        assert "in $EDITOR" not in helped and "delete the selected" not in helped, helped
        assert "actions that change the cluster are hidden" in helped
    finally:
        tab.page.close()


def test_one_console_per_tab_ended_when_the_tab_closes(served, chromium):
    lab, proc, url = served
    before = settle_sessions(proc.pid, 0)
    assert before == set(), "sessions left from earlier tests"
    first, second = open_tab(chromium, url), open_tab(chromium, url)
    first.wait_for_text("Nodes (2)")
    second.wait_for_text("Nodes (2)")
    two = settle_sessions(proc.pid, 2)
    assert len(two) == 2, two
    for pid in two:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"console.cli" in argv and b"--read-only" in argv, argv
    first.page.close()
    one = settle_sessions(proc.pid, 1)
    assert len(one) == 1 and one < two, (one, two)
    # q in the page quits that console: the page says so and offers a new one
    second.press("q")
    second.page.wait_for_selector("#ended", state="visible", timeout=15_000)
    assert "session ended" in second.page.inner_text("#ended")
    assert settle_sessions(proc.pid, 0) == set()
    second.page.close()


def test_the_session_limit_has_a_page_of_its_own(tutorial, chromium, tmp_path):  # noqa: F811
    """Also: --allow-changes brings the changing keys back (not edit: see console/access.py),
    and stopping the server ends the sessions it still had."""
    lab = tutorial
    log = tmp_path / "limit.log"
    extra = ("--max-sessions", "1", "--allow-changes")
    with web_console(lab.etcd_endpoints, lab.name, *extra, log=log) as (proc, port):
        url = f"http://127.0.0.1:{port}/"
        first = open_tab(chromium, url)
        first.wait_for_text("Nodes (2)")
        first.command("profiles")
        footer = first.wait_for_text("Profiles (", "delete").splitlines()[-1]
        assert "new pod" in footer and "read-only" not in first.text(), footer
        # ... except editing: $EDITOR would open on the server, not in the browser
        assert "edit" not in footer, footer
        first.press("e")
        first.wait_for_text("editing a resource is off in a browser", timeout=10)
        page = chromium.new_page()
        response = page.goto(url)
        assert response is not None and response.status == 503
        assert "all 1 console sessions are in use" in page.inner_text("body")
        assert len(children(proc.pid)) == 1
        page.close()
        first.page.close()
        settle_sessions(proc.pid, 0)
        again = open_tab(chromium, url)  # a freed seat is usable again
        again.wait_for_text("Nodes (2)")
        left = settle_sessions(proc.pid, 1)
        argv = Path(f"/proc/{next(iter(left))}/cmdline").read_bytes().split(b"\0")
        assert b"--read-only" not in argv, argv
    # the server is stopped (SIGTERM) with that tab still open: its console went with it
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in left) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in left), left
    again.page.close()


# a client with a cookie jar, as a browser is: prints the status, the final URL, the body
ASK = """
import http.cookiejar, sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
try:
    r = opener.open(sys.argv[1], timeout=10)
    print(r.status, r.url, r.read().decode()[:2000])
except urllib.error.HTTPError as e:
    print(e.code, e.url, e.read().decode()[:2000])
"""


@pytest.fixture
def netns():
    """A network namespace of our own with one non-loopback address, so a
    non-loopback listener is reachable from nowhere else (a veth pair with both ends inside:
    this kernel has no dummy links); removed on exit."""
    name = "cweb" + secrets.token_hex(3)
    address = "198.51.100.7"  # TEST-NET-2: documentation space, routed nowhere
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["ip", "-n", name, "link", "set", "lo", "up"],
            ["ip", "-n", name, "link", "add", "web0", "type", "veth", "peer", "name", "web1"],
            ["ip", "-n", name, "link", "set", "web1", "up"],
            ["ip", "-n", name, "addr", "add", f"{address}/24", "dev", "web0"],
            ["ip", "-n", name, "link", "set", "web0", "up"],
        ):
            subprocess.run(cmd, check=True)
        yield name, address
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_off_loopback_without_the_token_is_401_and_nothing_runs(tutorial, netns, tmp_path):  # noqa: F811
    lab = tutorial
    name, address = netns
    log = tmp_path / "token.log"
    inside = ["ip", "netns", "exec", name]
    with web_console(lab.etcd_endpoints, lab.name, "--host", address, prefix=inside, log=log) as (
        proc,
        port,
    ):
        printed = log.read_text()
        token = re.search(r"\?token=([\w-]+)", printed)
        assert token, printed  # generated and printed, in the address to open
        base = f"http://{address}:{port}"

        def ask(path: str) -> tuple[int, str, str]:
            out = subprocess.run(
                [*inside, sys.executable, "-c", ASK, base + path],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            code, url, body = out.split(" ", 2)
            return int(code), url, body

        for path in ("/", "/ws", "/static/js/textual.js", "/?token=not-it"):
            code, _, body = ask(path)
            assert code == 401 and "needs its token" in body, (path, code, body)
        assert children(proc.pid) == set()  # no console was started for any of them
        code, landed, body = ask(f"/?token={token.group(1)}")
        assert code == 200 and "textual-terminal" in body
        assert "token" not in landed, landed  # the cookie has it; the address bar does not
