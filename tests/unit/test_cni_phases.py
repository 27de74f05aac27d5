"""plugin/phases.py: the per-request trace the agent writes for CALICO_CNI_TRACE and the
benchmark's summary of it (pure: clocks are real, nothing else)."""

from __future__ import annotations

import contextvars
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from agent.cni_server import CNIServer
from plugin import phases, shim


def test_phases_without_a_trace_record_nothing_and_cost_nothing_visible() -> None:
    assert phases.current() is None
    with phases.phase("ipam"):
        pass
    phases.mark("spawn", 0.0)
    assert phases.current() is None


def test_a_trace_gets_its_phases_also_from_a_thread_in_a_copied_context() -> None:
    trace = phases.Trace()
    token = phases.start(trace)
    try:
        with phases.phase("ipam"):
            ctx = contextvars.copy_context()

            def kernel() -> None:
                with phases.phase("veth.create"):
                    pass

            t = threading.Thread(target=ctx.run, args=(kernel,), name="cni-kernel")
            t.start()
            t.join()
        # A thread started without the copied context is not part of the request.
        stray = threading.Thread(target=lambda: phases.mark("stray", 0.0))
        stray.start()
        stray.join()
    finally:
        phases.stop(token)
    assert phases.current() is None
    names = {name: thread for name, _s, _e, thread in trace.spans}
    assert names == {"veth.create": "cni-kernel", "ipam": threading.current_thread().name}
    rec = trace.record("ADD", "c1")
    assert rec["command"] == "ADD" and rec["container"] == "c1"
    assert all(0.0 <= s <= e for _n, s, e, _t in rec["spans"])


def test_phase_records_also_when_the_step_fails() -> None:
    trace = phases.Trace()
    token = phases.start(trace)
    try:
        with pytest.raises(ValueError), phases.phase("wep.write"):
            raise ValueError("etcd said no")
    finally:
        phases.stop(token)
    assert [s[0] for s in trace.spans] == ["wep.write"]


def test_write_appends_one_line_only_when_the_environment_names_a_file(tmp_path: Path) -> None:
    trace = phases.Trace(origin=100.0)
    trace.add("recv", 100.001, 100.002)
    out = tmp_path / "trace.jsonl"
    phases.write(trace, {}, "ADD", "c1")
    phases.write(trace, {phases.TRACE_ENV: ""}, "ADD", "c1")
    assert not out.exists()
    phases.write(trace, {phases.TRACE_ENV: str(out)}, "ADD", "c1")
    phases.write(trace, {phases.TRACE_ENV: str(out)}, "DEL", "c1")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["command"] for r in lines] == ["ADD", "DEL"]
    assert lines[0]["accept"] == 100.0
    ((name, s, e, _thread),) = lines[0]["spans"]
    assert name == "recv" and s == pytest.approx(0.001) and e == pytest.approx(0.002)
    # An unwritable file loses the record, not the request.
    phases.write(trace, {phases.TRACE_ENV: str(tmp_path / "no" / "such" / "dir")}, "ADD", "c")


def _rec(*spans: tuple[str, float, float, str]) -> dict:
    return {"command": "ADD", "container": "c", "accept": 0.0, "spans": [list(s) for s in spans]}


def test_summary_orders_by_median_start_and_takes_median_durations() -> None:
    records = [
        _rec(("parse", 0.001, 0.002, "req"), ("ipam", 0.002, 0.006, "req"),
             ("veth.create", 0.0025, 0.005, "kernel")),
        _rec(("parse", 0.001, 0.0015, "req"), ("ipam", 0.002, 0.004, "req"),
             ("veth.create", 0.0021, 0.004, "kernel")),
        _rec(("parse", 0.001, 0.0012, "req"), ("ipam", 0.003, 0.005, "req"),
             ("veth.create", 0.0022, 0.003, "kernel"), ("wep.append", 0.005, 0.007, "req")),
    ]  # fmt: skip
    out = phases.summarize(records)
    assert [p.name for p in out] == ["parse", "ipam", "veth.create", "wep.append"]
    by = {p.name: p for p in out}
    assert by["ipam"].p50 == pytest.approx(0.002)
    assert by["parse"].p50 == pytest.approx(0.0005)
    assert by["veth.create"].thread == "kernel" and by["veth.create"].count == 3
    assert by["wep.append"].count == 1  # only the requests that have it


def test_a_phase_run_twice_in_one_request_counts_both_times() -> None:
    rec = _rec(("host_route", 0.001, 0.002, "r"), ("host_route", 0.003, 0.005, "r"))
    assert phases.durations(rec) == {"host_route": pytest.approx(0.003)}
    (only,) = phases.summarize([rec])
    assert only.start == pytest.approx(0.001) and only.p50 == pytest.approx(0.003)


def _ask(path: str, request: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(shim.encode_request(request))
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return shim.decode_reply(data)


def test_the_cni_server_writes_a_record_for_a_request_that_asks(tmp_path: Path) -> None:
    """The agent's side as the benchmark reads it: its own phases and the handler's, in
    order, in seconds after the accept (the same clock as the caller's perf_counter)."""

    def handler(request: dict) -> dict:
        with phases.phase("ipam"):
            time.sleep(0.002)
        return {"exit_code": 0, "stdout": "ok", "stderr": ""}

    out = tmp_path / "trace.jsonl"
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1"}
    before = time.perf_counter()
    with CNIServer(tmp_path / "cni.sock", handlers={"calico": handler}) as server:
        plain = _ask(server.socket_path, {"plugin": "calico", "env": env, "stdin": "{}"})
        traced_env = {**env, phases.TRACE_ENV: str(out)}
        traced = _ask(server.socket_path, {"plugin": "calico", "env": traced_env, "stdin": ""})
    assert plain["stdout"] == traced["stdout"] == "ok"
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (rec["command"], rec["container"]) == ("ADD", "c1")
    assert before < rec["accept"] < time.perf_counter()
    names = [name for name, _s, _e, _t in rec["spans"]]
    assert names == ["spawn", "recv", "decode", "ipam", "reply"]
    ipam = phases.durations(rec)["ipam"]
    assert 0.002 <= ipam < 1.0
