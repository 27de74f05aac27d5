"""The node API's pod logs (agent/api/logs.py): line splitting, the last N lines, and the
follow loop on a real file written by another thread (no root, no agent)."""

from __future__ import annotations

import threading
import time

import pytest

from agent.api import logs
from agent.api.logs import MAX_LINE, follow_log, split_lines, tail_offset


def test_split_lines_keeps_the_unfinished_line():
    assert split_lines(b"a\nb\r\nc") == (["a", "b"], b"c")
    assert split_lines(b"a\nb\r\nc", final=True) == (["a", "b", "c"], b"")
    assert split_lines(b"\n\n") == (["", ""], b"")
    assert split_lines(b"caf\xc3\xa9 \xff\n") == (["café \ufffd"], b"")


def test_a_very_long_line_goes_out_in_pieces():
    lines, rest = split_lines(b"x" * (MAX_LINE * 2 + 5))
    assert lines == ["x" * MAX_LINE, "x" * MAX_LINE] and rest == b"xxxxx"
    lines, rest = split_lines(b"y" * (MAX_LINE + 1) + b"\n")
    assert [len(line) for line in lines] == [MAX_LINE, 1] and rest == b""


@pytest.mark.parametrize(
    ("data", "n", "want"),
    [
        (b"a\nb\nc\n", 1, b"c\n"),
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 9, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 3, b""),
        (b"\n\n\n", 2, b"\n\n"),
    ],
)
def test_tail_offset_is_tail_n(data, n, want):
    off = tail_offset(lambda o, k: data[o : o + k], len(data), n)
    assert data[off:] == want


def test_tail_offset_across_read_blocks(monkeypatch):
    monkeypatch.setattr(logs, "BLOCK", 7)
    data = b"".join(f"line {i}\n".encode() for i in range(100))
    off = tail_offset(lambda o, k: data[o : o + k], len(data), 3)
    assert data[off:] == b"line 97\nline 98\nline 99\n"


def test_no_follow_sends_the_log_then_the_state(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"one\ntwo\nthree")

    def st():
        return {"state": "running", "exit_code": None}

    got = list(follow_log(str(path), None, False, st))
    assert got == [
        {"type": "line", "line": "one"},
        {"type": "line", "line": "two"},
        {"type": "line", "line": "three"},
        {"type": "end", "state": "running", "exit_code": None},
    ]
    got = list(follow_log(str(path), 1, False, st))
    assert [g.get("line") for g in got] == ["three", None]


def test_follow_streams_new_lines_until_the_pod_ends(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"old\n")
    state = {"state": "running", "exit_code": None}

    def writer():
        time.sleep(0.1)
        with open(path, "ab", buffering=0) as f:
            f.write(b"new 1\n")
            time.sleep(0.1)
            f.write(b"new 2\nno newline yet")
        time.sleep(0.1)
        state.update(state="exited", exit_code=3)

    t = threading.Thread(target=writer)
    t.start()
    started = time.monotonic()
    got = list(follow_log(str(path), 0, True, lambda: dict(state)))
    t.join()
    assert got == [
        {"type": "line", "line": "new 1"},
        {"type": "line", "line": "new 2"},
        {"type": "line", "line": "no newline yet"},  # sent at the end, not lost
        {"type": "end", "state": "exited", "exit_code": 3},
    ]
    assert time.monotonic() - started < 5


def test_follow_waits_for_a_log_that_does_not_exist_yet_and_keeps_alive(tmp_path):
    path = tmp_path / "log"
    state = {"state": "prepared", "exit_code": None}
    stream = follow_log(str(path), None, True, lambda: dict(state), heartbeat=0.2)
    assert next(stream)["type"] == "keepalive"
    path.write_bytes(b"hello\n")
    assert next(stream) == {"type": "line", "line": "hello"}
    state["state"] = "exited"
    assert [g["type"] for g in stream] == ["end"]


def _pod_dir(tmp_path, interactive=False, state="exited"):
    from rkt.pods import Runtime
    from rkt.state import AppState, PodState, write_state

    rt = Runtime(str(tmp_path), str(tmp_path / "cfg"), warn=lambda m: None)
    uuid = "0123abcd-0000-4000-8000-000000000000"
    pdir = tmp_path / "pods" / uuid
    pdir.mkdir(parents=True)
    app = AppState(name="busybox", image_name="busybox", image_id="x", exit_code=0)
    write_state(str(pdir), PodState(uuid=uuid, state=state, app=app, created=0.0,
                                    interactive=interactive))  # fmt: skip
    return rt, uuid, pdir


def test_route_refuses_what_it_cannot_serve_before_streaming(tmp_path):
    from agent.api.logs import pod_log_stream
    from agent.api.server import APIError

    rt, uuid, pdir = _pod_dir(tmp_path, interactive=True)
    with pytest.raises(APIError) as exc:
        pod_log_stream(rt, uuid, {})
    assert exc.value.status == 404 and "runs interactively" in exc.value.message
    with pytest.raises(APIError) as exc:
        pod_log_stream(rt, uuid, {"tail": ["ten"]})
    assert exc.value.status == 400


def test_route_streams_an_exited_pods_log_with_its_exit_code(tmp_path):
    from agent.api.logs import pod_log_stream

    rt, uuid, pdir = _pod_dir(tmp_path)
    (pdir / "log").write_bytes(b"a\nb\n")
    got = list(pod_log_stream(rt, uuid, {"follow": ["1"], "tail": ["1"]}))
    assert got == [
        {"type": "line", "line": "b"},
        {"type": "end", "state": "exited", "exit_code": 0},
    ]
