"""calico.kinds says what the resource classes say, and finds kinds the same way."""

from __future__ import annotations

import pytest

from calico import kinds, resources
from calico.keys import kind_prefix, resource_key


def test_the_table_is_the_resource_classes():
    got = [(k.KIND, k.PLURAL, k.NAMESPACED, k.ALIASES) for k in kinds.KINDS]
    want = [(c.KIND, c.PLURAL, c.NAMESPACED, c.ALIASES) for c in resources.KINDS]
    assert got == want


@pytest.mark.parametrize(
    "name", ["profiles", "Profile", "PROFILE", "pro", "wep", "workloadendpoint", "gnp", "np",
             "policies", "ippool", "pools", "bgppeers", "bgpconfig", "no", "nodes"],
)  # fmt: skip
def test_every_name_means_the_same_kind_and_the_same_keys(name):
    info = kinds.kind_info(name)
    cls = resources.kind_class(name)
    assert info.KIND == cls.KIND
    assert kind_prefix(info, "ns1") == kind_prefix(cls, "ns1") == kind_prefix(name, "ns1")
    assert resource_key(info, "x") == resource_key(cls, "x")


@pytest.mark.parametrize("name", ["foo", "", None])
def test_an_unknown_kind_is_the_same_error_both_ways(name):
    with pytest.raises(kinds.UnknownKind) as info:
        kinds.kind_info(name)
    with pytest.raises(resources.ValidationError) as validation:
        resources.kind_class(name)
    assert info.value.message == validation.value.message
    if name:
        assert info.value.message.startswith("unknown resource kind 'foo' (known: Profile, IPPool")
