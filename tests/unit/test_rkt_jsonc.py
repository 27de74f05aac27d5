"""rkt/jsonc.py writes and reads exactly what `json` does (it exists only to skip importing
json, re and enum on every `rkt run`), on the records rkt writes and on awkward values."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rkt import jsonc
from rkt.state import AppState, NetworkState, PodState

SAMPLES = [
    {},
    [],
    {"a": [], "b": {}, "c": [{}], "d": [[]]},
    {"z": 1, "a": [1, 2.5, -0.0, 1e300, 3, True, False, None], "m": 'é\u2603\n"\\\x00'},
    [1, [2, [3, {"x": "y"}]]],
    {"nested": {"b": 1, "a": {"d": None, "c": [1.0, 0.1, 1234567890123456789]}}},
    {2: "int key", 1: 0, 1.5: True},
    {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")},
    "just a string",
    12,
    None,
    (1, 2),
]


def pod_record() -> dict:
    pod = PodState(
        uuid="0a1b2c3d-0000-4000-8000-000000000000",
        state="running",
        app=AppState("web", "registry-1.docker.io/library/busybox:latest", "sha512-ab",
                     exec=["httpd", "-f", "-h", "/"], exit_code=None),
        created=1796224106.5849206,
        started=1796224106.634,
        pid=4242,
        networks=[NetworkState("network1", "eth0", args="IP=10.0.0.2",
                               conf={"cniVersion": "0.1.0", "name": "network1", "type": "calico",
                                     "ipam": {"type": "calico-ipam"}},
                               result={"ip4": {"ip": "10.0.0.2/32", "gateway": "169.254.1.1"}},
                               ip4="10.0.0.2", added=True)],
    )  # fmt: skip
    return json.loads(pod.to_json())


@pytest.mark.parametrize("obj", [*SAMPLES, pod_record()])
def test_dumps_is_json_dumps(obj):
    assert jsonc.dumps(obj) == json.dumps(obj)
    assert jsonc.dumps(obj, sort_keys=True) == json.dumps(obj, sort_keys=True)
    assert jsonc.dumps(obj, indent=1, sort_keys=True) == json.dumps(obj, indent=1, sort_keys=True)
    assert jsonc.dumps(obj, indent=4) == json.dumps(obj, indent=4)


@pytest.mark.parametrize("obj", [s for s in SAMPLES if not isinstance(s, tuple)] + [pod_record()])
def test_loads_is_json_loads(obj):
    for text in (json.dumps(obj), json.dumps(obj, indent=2), f" \n\t{json.dumps(obj)}\r\n "):
        got, want = jsonc.loads(text), json.loads(text)
        assert json.dumps(got) == json.dumps(want)  # NaN != NaN: compare their text
        assert jsonc.loads(text.encode()) is not None or want is None


@pytest.mark.parametrize(
    "text", ["", "   ", "{", '{"a": 1} x', "[1,]", "{'a': 1}", '"\ufeff"x', "tru", "01"]
)
def test_what_json_rejects_is_a_value_error(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        jsonc.loads(text)


def test_bytes_with_a_bom_and_str_with_one_as_json_does():
    assert jsonc.loads(b'\xef\xbb\xbf{"a": 1}') == json.loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError):
        jsonc.loads('\ufeff{"a": 1}')


def test_unserializable_is_a_type_error():
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonc.dumps({"a": object()})
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonc.dumps({"a": object()}, indent=1)


def test_importing_it_imports_neither_json_nor_re():
    code = "import sys, rkt.jsonc; print(sorted({'json', 're', 'enum'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[2])!r}); {code}"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
