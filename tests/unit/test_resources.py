"""Resources load from and dump to calicoctl's YAML/JSON, and bad input names the bad field."""

import pytest

from calico.protocols import protocol_number
from calico.resources import (
    IPPool,
    Profile,
    ValidationError,
    WorkloadEndpoint,
    kind_class,
    load,
    load_documents,
    parse_port,
    policy_types,
)

V3 = "projectcalico.org/v3"


def profile_doc(name="network1", **spec):
    return {"apiVersion": V3, "kind": "Profile", "metadata": {"name": name}, "spec": spec}


SEED_PROFILE = profile_doc(
    ingress=[{"action": "Allow", "source": {"selector": "has(network1)"}}],
    egress=[{"action": "Allow"}],
    labelsToApply={"network1": ""},
)

EVERY_KIND = [
    SEED_PROFILE,
    {
        "apiVersion": V3,
        "kind": "IPPool",
        "metadata": {"name": "pool1"},
        "spec": {
            "cidr": "192.168.0.0/16",
            "blockSize": 26,
            "ipipMode": "Never",
            "natOutgoing": True,
        },
    },
    {
        "apiVersion": V3,
        "kind": "Node",
        "metadata": {"name": "calico-01", "annotations": {"calico-rkt.io/api": "unix:///x.sock"}},
        "spec": {"bgp": {"ipv4Address": "10.213.0.11/24"}},
    },
    {
        "apiVersion": V3,
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": "calico--01-cni-abcdef-eth0",
            "namespace": "default",
            "labels": {
                "projectcalico.org/namespace": "default",
                "projectcalico.org/orchestrator": "cni",
            },
        },
        "spec": {
            "orchestrator": "cni",
            "node": "calico-01",
            "containerID": "abcdef",
            "endpoint": "eth0",
            "interfaceName": "caliabcdef",
            "mac": "ee:ee:ee:ee:ee:ee",
            "ipNetworks": ["192.168.0.1/32"],
            "profiles": ["network1"],
        },
    },
    {
        "apiVersion": V3,
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-80", "namespace": "default"},
        "spec": {
            "order": 10,
            "selector": "has(network1)",
            "types": ["Ingress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "has(network2)", "notNets": ["10.0.0.0/8"]},
                    "destination": {"ports": [80, "8000:8080"]},
                }
            ],
        },
    },
    {
        "apiVersion": V3,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "deny-all"},
        "spec": {
            "order": 1000.5,
            "selector": "all()",
            "types": ["Ingress", "Egress"],
            "ingress": [{"action": "Deny"}],
            "egress": [{"action": "Pass"}],
        },
    },
]


@pytest.mark.parametrize("doc", EVERY_KIND, ids=lambda d: d["kind"])
def test_every_kind_round_trips(doc):
    res = load(doc)
    assert res.to_dict() == doc
    assert load(res.to_dict()).to_dict() == doc


def test_snake_case_fields_map_to_calicos_camel_case():
    wep = load(EVERY_KIND[3])
    assert isinstance(wep, WorkloadEndpoint)
    assert wep.spec.container_id == "abcdef"
    assert wep.spec.ip_networks == ["192.168.0.1/32"]
    pool = load(EVERY_KIND[1])
    assert isinstance(pool, IPPool) and pool.spec.ipip_mode == "Never" and pool.block_size == 26


def test_namespaced_kind_defaults_to_default_namespace():
    doc = dict(EVERY_KIND[4])
    doc["metadata"] = {"name": "p"}
    assert load(doc).metadata.namespace == "default"


@pytest.mark.parametrize(
    "doc, path, words",
    [
        ({**EVERY_KIND[1], "spec": {"cidr": "10.0.0.0/33"}}, "spec.cidr", "not a valid CIDR"),
        ({**EVERY_KIND[1], "spec": {"cidr": "10.0.0.1/16"}}, "spec.cidr", "host bits"),
        (
            {**EVERY_KIND[1], "spec": {"cidr": "10.0.0.0/16", "blockSize": 12}},
            "spec.blockSize",
            "between",
        ),
        (profile_doc("Net_1"), "metadata.name", "illegal name"),
        (profile_doc(ingress=[{"action": "Accept"}]), "spec.ingress[0].action", "unknown action"),
        (profile_doc(ingres=[]), "spec.ingres", "unknown field"),
        (
            profile_doc(ingress=[{"action": "Allow", "source": {"selector": "has(a"}}]),
            "spec.ingress[0].source.selector",
            "does not parse",
        ),
        (
            profile_doc(
                ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [70000]}}]
            ),
            "spec.ingress[0].destination.ports[0]",
            "out of range",
        ),
        (
            profile_doc(ingress=[{"action": "Allow", "destination": {"ports": [80]}}]),
            "spec.ingress[0].destination.ports",
            "need protocol",
        ),
        (
            profile_doc(egress=[{"action": "Allow", "protocol": "TCPX"}]),
            "spec.egress[0].protocol",
            "unknown protocol",
        ),
        ({**SEED_PROFILE, "apiVersion": "v1"}, "apiVersion", "expected"),
        ({**SEED_PROFILE, "kind": "Pod"}, "kind", "unknown resource kind"),
        ({**SEED_PROFILE, "kind": 5}, "kind", "kind must be a string, not int"),
        ({**SEED_PROFILE, "kind": ["Profile"]}, "kind", "kind must be a string, not list"),
        (
            {**SEED_PROFILE, "metadata": {"name": "p", "namespace": "x"}},
            "metadata.namespace",
            "not namespaced",
        ),
        ({**EVERY_KIND[4], "spec": {"types": ["Sideways"]}}, "spec.types[0]", "unknown type"),
    ],
)
def test_validation_names_the_bad_field(doc, path, words):
    with pytest.raises(ValidationError) as err:
        load(doc)
    assert err.value.path == path
    assert words in str(err.value)


def test_kinds_are_case_insensitive_singular_plural_and_short():
    for name in ("profile", "Profiles", "PROFILE", "pro"):
        assert kind_class(name) is Profile
    assert kind_class("ipp") is IPPool
    assert kind_class("wep").KIND == "WorkloadEndpoint"
    assert kind_class("gnp").KIND == "GlobalNetworkPolicy"


def test_multi_document_yaml_and_lists():
    text = """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: network1}
---
apiVersion: projectcalico.org/v3
kind: ProfileList
items:
- apiVersion: projectcalico.org/v3
  kind: Profile
  metadata: {name: network2}
"""
    assert [r.name for r in load_documents(text)] == ["network1", "network2"]


def test_bad_document_says_which_document():
    text = "kind: Profile\napiVersion: projectcalico.org/v3\nmetadata: {name: a}\n---\nkind: Profile\napiVersion: projectcalico.org/v3\nmetadata: {name: B}\n"
    with pytest.raises(ValidationError, match=r"document 2 \(Profile B\)"):
        load_documents(text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "apiVersion: projectcalico.org/v3\nkind: 5\nmetadata: {name: a}\n",
            "must be a string, not int",
        ),
        ("kind: [Profile]\nmetadata: {name: a}\n", "must be a string, not list"),
        ("kind: ProfileList\nitems: 5\n", "expected a list, got int [document 1]"),
    ],
)
def test_a_kind_or_items_of_the_wrong_type_is_a_validation_error(text, words):
    """`kind: 5` in a file was AttributeError, "unexpected error" from calicoctl."""
    with pytest.raises(ValidationError) as err:
        load_documents(text)
    assert words in str(err.value)


def test_ports_and_protocols():
    assert parse_port(80) == (80, 80)
    assert parse_port("8000:8080") == (8000, 8080)
    assert parse_port("http") == "http"
    with pytest.raises(ValueError):
        parse_port("9:1")
    assert (
        protocol_number("tcp") == 6 and protocol_number(17) == 17 and protocol_number("132") == 132
    )


def test_policy_types_default_like_calico():
    pol = load(EVERY_KIND[4])
    pol.spec.types = []
    assert policy_types(pol.spec) == ["Ingress"]
    pol.spec.egress = pol.spec.ingress
    assert policy_types(pol.spec) == ["Ingress", "Egress"]


def test_cidr_check_agrees_with_ipaddress_on_tricky_spellings():
    """The fast path for plain IPv4 CIDRs accepts nothing ipaddress refuses."""
    import ipaddress

    from calico.resources import ValidationError, _check_cidr

    spellings = ["10.0.0.1/32", "10.0.0.1", "0.0.0.0/0", "255.255.255.255/32", "1.2.3.4/9"]
    spellings += ["256.1.1.1/32", "01.1.1.1/8", "1.1.1.1/33", "1.1.1.1/", "1.1.1/24"]
    spellings += ["\u0661.2.3.4/32", "1.2.3.4/08", "1.2.3.4\n", " 1.2.3.4", "1.2.3.4/255.0.0.0"]
    spellings += ["10.1.2.0/24", "fd00::1/128", "-1.2.3.4/8", "1.2.3.4/+8"]
    for text in spellings:
        try:
            ipaddress.ip_network(text, strict=False)
            valid = True
        except ValueError:
            valid = False
        try:
            _check_cidr(text, "spec.ipNetworks[0]")
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted == valid, text
