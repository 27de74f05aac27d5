"""Endpoints held as stored JSON (console.model.StoredEndpoint) until something reads their
typed fields: the Endpoints table reads the same cells from the JSON as from the typed
resource, everything else sees a WorkloadEndpoint, and JSON that does not decode is a row
that says error rather than a row that vanishes."""

from __future__ import annotations

import copy
import json

import pytest

from calico.datastore import KV
from calico.keys import resource_key
from calico.resources import WorkloadEndpoint, load
from console.model import (
    VIEWS,
    ClusterState,
    StoredEndpoint,
    _fields_from_json,
    decode,
    endpoint_fields,
)


def doc(name, node="n1", cid="c1", endpoint="eth0", **spec):
    body = {"orchestrator": "cni", "node": node, "containerID": cid, "endpoint": endpoint,
            "interfaceName": f"cali{name[:8]}", "ipNetworks": ["10.0.0.1/32"],
            "profiles": ["network1"]}  # fmt: skip
    body.update(spec)
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": body,
    }


def kv_of(d, revision=7):
    key = resource_key("WorkloadEndpoint", d["metadata"]["name"], "default")
    return KV(key, json.dumps(d).encode(), revision, revision)


SHAPES = [
    doc("plain"),
    doc("two-ips", ipNetworks=["10.0.0.1/32", "10.0.0.2/32"], profiles=["a", "b"]),
    doc("workload", workload="web-1"),
    {**doc("no-namespace"), "metadata": {"name": "no-namespace"}},
    {**doc("bare"), "spec": {"node": "n2"}},
]


@pytest.mark.parametrize("d", SHAPES, ids=lambda d: d["metadata"]["name"])
def test_fields_from_json_are_the_typed_ones(d):
    stored, _ = decode(kv_of(d))
    assert type(stored) is StoredEndpoint and not stored.decoded
    from_json = endpoint_fields(stored)
    typed = load(copy.deepcopy(d), validate=False)
    assert from_json == endpoint_fields(typed)
    assert not stored.decoded  # the table did not need the typed resource


def test_it_is_a_workload_endpoint_to_everything_else():
    d = doc("ep")
    stored, error = decode(kv_of(d, revision=42))
    assert error == "" and isinstance(stored, WorkloadEndpoint)
    assert stored.spec.ip_networks == ["10.0.0.1/32"] and stored.decoded
    assert stored.metadata.resource_version == "42"
    typed = load(copy.deepcopy(d), validate=False)
    typed.metadata.resource_version = "42"
    assert stored == typed and typed == stored
    assert stored.to_dict() == typed.to_dict()
    assert copy.deepcopy(stored) == stored


def test_the_table_rows_are_the_same_either_way():
    docs = [doc(f"ep{i}", cid=f"c{i // 2}", endpoint=f"eth{i % 2}") for i in range(6)]
    lazy, typed = ClusterState(), ClusterState()
    lazy.replace_all([kv_of(d) for d in docs])
    for d in docs:
        res = load(copy.deepcopy(d), validate=False)
        res.metadata.resource_version = "7"
        typed.resources[kv_of(d).key] = res
    rows = VIEWS["endpoints"].rows
    assert [(r.key, r.cells, r.state) for r in rows(lazy)] == [
        (r.key, r.cells, r.state) for r in rows(typed)
    ]
    assert not any(r.decoded for r in lazy.resources.values())


@pytest.mark.parametrize(
    "spec", [{"ipNetworks": "10.0.0.1/32"}, {"node": 7}, {"profiles": ["a", 3]}, {"nosuch": 1}]
)
def test_json_that_does_not_decode_is_a_row_saying_error(spec):
    d = doc("broken", **spec)
    state = ClusterState()
    state.replace_all([kv_of(d)])
    (row,) = VIEWS["endpoints"].rows(state)
    assert row.state == "error" and row.cells[-1] == "error"
    assert row.key == "wep/default/broken"
    assert row.resource.error  # what is wrong, for describe


def test_the_odd_shape_is_not_read_from_json():
    assert _fields_from_json(doc("x", ipNetworks="10.0.0.1/32")) is None
    assert _fields_from_json({"metadata": {}, "spec": {}}) is None  # no name
