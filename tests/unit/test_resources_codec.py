"""The quick decoder and the exact one (calico.resources._from_wire) give the same answers:
the same resource for valid data, the same ValidationError (path and words) for invalid."""

from __future__ import annotations

import copy
import random

import pytest

from calico import resources as r
from calico.resources import ValidationError, load

VALID = [
    {
        "apiVersion": r.API_VERSION,
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": "n1-cni-abc-eth0",
            "namespace": "default",
            "labels": {"app": "web", "projectcalico.org/namespace": "default"},
        },
        "spec": {
            "orchestrator": "cni",
            "node": "n1",
            "containerID": "abc",
            "endpoint": "eth0",
            "interfaceName": "cali0123456789a",
            "mac": "ee:ee:ee:ee:ee:ee",
            "ipNetworks": ["10.0.0.1/32"],
            "profiles": ["network1"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
        },
    },
    {
        "apiVersion": r.API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "order": 10,
            "selector": "app == 'web'",
            "types": ["Ingress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "role == 'client'", "nets": ["10.0.0.0/8"]},
                    "destination": {"ports": [80, "http"]},
                    "icmp": {"type": 8},
                }
            ],
        },
    },
    {
        "apiVersion": r.API_VERSION,
        "kind": "Profile",
        "metadata": {"name": "network1", "labels": {}},
        "spec": {"ingress": [{"action": "Allow"}], "labelsToApply": {"network1": ""}},
    },
    {
        "apiVersion": r.API_VERSION,
        "kind": "IPPool",
        "metadata": {"name": "pool1"},
        "spec": {"cidr": "10.0.0.0/16", "blockSize": 26, "ipipMode": "Never", "disabled": False},
    },
]

# (where, bad value): each spliced into a copy of a valid document
BAD = [
    (("spec", "node"), 7),
    (("spec", "profiles"), ["ok", 3]),
    (("spec", "profiles"), "network1"),
    (("metadata", "labels"), {"app": 1}),
    (("metadata", "labels"), {1: "x"}),
    (("spec", "nosuch"), "x"),
    (("spec", "ports"), [{"port": "eighty"}]),
    (("spec", "ports"), [{"port": True}]),
    (("spec",), ["not", "a", "mapping"]),
    (("metadata", "name"), None),
]


def exact(doc):
    """The same load with the quick path switched off."""
    saved = r._quick
    r._quick = lambda tp: r._unsure  # every value goes to the exact decoder
    try:
        return load(copy.deepcopy(doc), validate=False)
    finally:
        r._quick = saved


def both_ways(doc):
    """What the quick path and the exact one each make of `doc`: the resource or the error."""
    got = []
    for decode in (lambda d: load(copy.deepcopy(d), validate=False), exact):
        try:
            got.append(("ok", decode(doc)))
        except ValidationError as exc:
            got.append(("error", exc.path, str(exc)))
    return got


@pytest.mark.parametrize("doc", VALID, ids=[d["kind"] for d in VALID])
def test_valid_documents_decode_the_same(doc):
    assert load(copy.deepcopy(doc), validate=False) == exact(doc)
    assert load(copy.deepcopy(doc)).to_dict() == exact(doc).to_dict()


@pytest.mark.parametrize("where, bad", BAD, ids=[".".join(w) + f"={b!r}" for w, b in BAD])
def test_invalid_values_are_worded_the_same(where, bad):
    doc = copy.deepcopy(VALID[0])
    node = doc
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = bad
    quick, exact_ = both_ways(doc)
    assert quick == exact_


def test_yaml_oddities_still_decode_through_the_exact_path():
    """An integer label key (YAML) is not the quick path's: the exact one turns it into "1"."""
    doc = copy.deepcopy(VALID[0])
    doc["metadata"]["labels"] = {1: "x"}
    assert load(doc, validate=False).metadata.labels == {"1": "x"}


def test_random_mutations_agree():
    rnd = random.Random(15)
    values = [None, 0, 1, 1.5, True, "", "x", [], ["a"], [1], {}, {"a": "b"}, {"a": 1}]
    for _ in range(400):
        doc = copy.deepcopy(rnd.choice(VALID))
        node = doc["spec"] if rnd.random() < 0.7 else doc["metadata"]
        key = rnd.choice([*node.keys(), "extra"]) if node else "extra"
        node[key] = copy.deepcopy(rnd.choice(values))
        quick, exact_ = both_ways(doc)
        assert quick == exact_, (key, node[key])
