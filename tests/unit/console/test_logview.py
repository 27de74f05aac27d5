"""The log screen's model (console/logview.py) and its keys on fixed lines (no node API)."""

from __future__ import annotations

import asyncio

from textual.widgets import RichLog

from console import logview
from console.app import CalicoConsole
from console.logview import LogModel
from console.screens.logs import LogScreen

from .fixtures import seed_state


def model(lines):
    m = LogModel(node="calico-01", uuid="6876aae5-0000", app="busybox")
    m.add(lines)
    return m


def test_search_steps_round_the_matches_and_stops_following():
    m = model(["ok", "ERROR one", "ok", "error two", "ok"])
    m.search = "error"
    assert m.matches() == [1, 3]  # case-insensitive
    assert m.step(forward=True) == 1 and not m.follow
    assert m.step(forward=True) == 3
    assert m.step(forward=True) == 1  # round again
    assert m.step(forward=False) == 3
    assert "/error 2/2" in m.header()
    m.search = "nothing"
    assert m.step(forward=True) is None and "/nothing 0" in m.header()


def test_an_invalid_regex_is_searched_as_text():
    m = model(["call f(x", "other"])
    m.search = "f("
    assert m.matches() == [0]


def test_the_window_is_bounded_and_says_what_it_dropped(monkeypatch):
    monkeypatch.setattr(logview, "CAPACITY", 3)
    m = LogModel(node="n", uuid="u", lines=__import__("collections").deque(maxlen=3))
    m.add(["a", "b"])
    m.add(["c", "d", "e"])
    assert list(m.lines) == ["c", "d", "e"] and m.dropped == 2
    assert "3 lines (+2 dropped)" in m.header()


def test_header_says_where_it_starts_and_how_the_pod_ended():
    m = model([])
    assert "last 100" in m.header() and "connecting" in m.header()
    m.connected = True
    m.restart(None)
    m.end({"state": "exited", "exit_code": 3})
    assert "from the start" in m.header() and "pod exited (code 3)" in m.header()


def test_keys_follow_wrap_search_and_back():
    async def run():
        app = CalicoConsole(endpoints="http://127.0.0.1:1", follow=False, state=seed_state())
        async with app.run_test(size=(100, 24)) as pilot:
            screen = LogScreen("calico-01", "6876aae5-0000", "busybox", "", stream=False)
            await app.push_screen(screen)
            screen.feed([f"line {i}" for i in range(50)] + ["needle here"])
            await pilot.pause()
            log = screen.query_one(RichLog)
            assert log.scroll_y == log.max_scroll_y  # following: the newest line in view
            await pilot.press("f")
            assert not screen.model.follow and "follow off" in screen.model.header()
            await pilot.press("w")
            assert screen.model.wrap and log.wrap
            await pilot.press("slash", *"line 1", "enter")
            await pilot.pause()
            # last match first (as a search from the bottom finds it), then round
            assert screen.model.current == 19
            await pilot.press("n")
            assert screen.model.current == 1
            await pilot.press("N")
            assert screen.model.current == 19
            await pilot.press("0")
            assert screen.model.tail is None and not screen.model.lines
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is app.browse

    asyncio.run(run())


def test_l_and_s_live_on_pods_and_a_node_without_api_is_said():
    async def run():
        app = CalicoConsole(endpoints="http://127.0.0.1:1", follow=False, state=seed_state())
        async with app.run_test(size=(120, 32)) as pilot:
            app.switch_view("nodes")
            await pilot.pause()
            assert not app.browse.check_action("logs", ())  # out of the footer
            assert not app.browse.check_action("shell", ())
            await pilot.press("l")
            assert app.screen is app.browse  # nothing on :nodes
            app.switch_view("pods")
            await pilot.pause()
            assert app.browse.check_action("logs", ()) and app.browse.check_action("shell", ())
            await pilot.press("l")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, LogScreen)
            # the fixture's nodes publish no API address: said on screen, not a silent blank
            for _ in range(100):
                if screen.model.error:
                    break
                await pilot.pause(0.02)
            assert "publishes no API address" in screen.model.header()

    asyncio.run(run())
