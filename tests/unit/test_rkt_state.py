"""Pod state: transitions, JSON round trip, UUIDs and prefix resolution, without root."""

from __future__ import annotations

import json

import pytest

from rkt.record import factory, record
from rkt.state import (
    AppState,
    NetworkState,
    PodState,
    StateError,
    check_transition,
    effective_state,
    new_uuid,
    read_state,
    resolve_uuid,
    write_state,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("prepared", "running"),
        ("prepared", "deleting"),
        ("running", "exited"),
        ("exited", "garbage"),
        ("exited", "deleting"),
        ("garbage", "deleting"),
    ],
)
def test_allowed_transitions(a, b):
    check_transition(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("running", "deleting"), ("running", "garbage"), ("exited", "running"), ("deleting", "exited"),
     ("garbage", "exited"), ("garbage", "running")],
)  # fmt: skip
def test_forbidden_transitions(a, b):
    with pytest.raises(StateError):
        check_transition(a, b)


def test_effective_state_notices_a_dead_supervisor():
    assert effective_state("running", managed=True) == "running"
    assert effective_state("running", managed=False) == "exited"
    assert effective_state("exited", managed=False) == "exited"


def test_round_trip_and_atomic_write(tmp_path):
    p = PodState(uuid=new_uuid(), state="prepared", app=AppState("busybox", "img", "sha512-x"),
                 created=1.5)  # fmt: skip
    p.networks.append(NetworkState("n1", "eth0", args="IP=1.2.3.4", conf={"type": "ptp"},
                                   result={"ip4": {"ip": "1.2.3.4/24"}}, ip4="1.2.3.4", added=True))  # fmt: skip
    p.set_state("running")
    write_state(str(tmp_path), p)
    assert [f.name for f in tmp_path.iterdir()] == ["pod.json"]  # no temp file left
    assert json.loads((tmp_path / "pod.json").read_text())["networks"][0]["args"] == "IP=1.2.3.4"
    assert read_state(str(tmp_path)) == p


def test_uuid_shape():
    u = new_uuid()
    parts = u.split("-")
    assert [len(x) for x in parts] == [8, 4, 4, 4, 12]
    assert parts[2][0] == "4" and parts[3][0] in "89ab"
    assert new_uuid() != u


KNOWN = ["6876aae5-0000-4000-8000-000000000001", "6876aae6-0000-4000-8000-000000000002",
         "b52bba11-0000-4000-8000-000000000003"]  # fmt: skip


def test_resolve_prefixes():
    assert resolve_uuid("b52bba11", KNOWN) == KNOWN[2]
    assert resolve_uuid("6876AAE5", KNOWN) == KNOWN[0]  # case-insensitive
    assert resolve_uuid(KNOWN[1], KNOWN) == KNOWN[1]
    assert resolve_uuid("b", KNOWN) == KNOWN[2]


@pytest.mark.parametrize(("prefix", "msg"), [("6876aae", "ambiguous"), ("ffff", "no pod"),
                                              ("", "invalid"), ("xyz", "invalid")])  # fmt: skip
def test_resolve_rejects(prefix, msg):
    with pytest.raises(StateError, match=msg):
        resolve_uuid(prefix, KNOWN)


def test_record_behaves_like_a_small_dataclass():
    @record
    class R:
        a: int
        b: list[int] = factory(list)
        c: str = "x"

    r1, r2 = R(1), R(1)
    r1.b.append(1)
    assert r2.b == [] and r1 != r2 and R(2, c="y") == R(2, [], "y")
    assert repr(R(3)) == "R(a=3, b=[], c='x')"
    with pytest.raises(TypeError):
        R()
    with pytest.raises(TypeError):
        R(1, a=2)

    @record(frozen=True)
    class F:
        x: int

    with pytest.raises(AttributeError):
        F(1).x = 2
    assert hash(F(1)) == hash(F(1))
