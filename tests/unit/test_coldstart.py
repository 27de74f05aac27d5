"""agent/coldstart.py: the cold start's phases, the line the agent logs, the bench's parse."""

from __future__ import annotations

import time

from agent.coldstart import Timeline, parse_line, process_started


def test_phases_run_from_the_end_of_the_one_before():
    t = Timeline(started=100.0)
    for phase, at in (("imports", 100.4), ("connect", 100.5), ("snapshot", 101.3),
                      ("calc", 101.8), ("kernel", 102.2)):  # fmt: skip
        t.mark(phase, at)
    d = t.durations()
    assert list(d) == ["imports", "connect", "snapshot", "calc", "kernel"]
    assert [round(v, 2) for v in d.values()] == [0.4, 0.1, 0.8, 0.5, 0.4]
    assert round(t.total(), 2) == 2.2


def test_the_first_mark_wins_a_reconnect_is_not_a_cold_start():
    t = Timeline(started=0.0)
    t.mark("connect", 1.0)
    t.mark("connect", 9.0)
    assert t.marks["connect"] == 1.0


def test_the_logged_line_parses_back():
    t = Timeline(started=10.0)
    t.mark("imports", 10.25)
    t.mark("connect", 10.5)
    log = f"2026-12-02 calico-agent[1] INFO apply ...\n2026-12-02 calico-agent[1] INFO {t.line()}\n"
    got = parse_line(log)
    assert got == {"total": 0.5, "imports": 0.25, "connect": 0.25}
    assert parse_line("no such line") is None


def test_this_process_started_before_now():
    started = process_started()
    assert 0 <= time.monotonic() - started < 3600
