"""A listing taken in page by page with the fields the follower process read for each key
(console.sync.ListedPages, console.model.listed_fields) ends in exactly the state a plain
decode gives; a page of an older revision is not used."""

from __future__ import annotations

from console.model import ClusterState, StoredEndpoint, endpoint_rows, listed_fields
from console.sync import ListedPages
from tests.unit.test_sync_pages import wep_kv


def test_pages_taken_in_with_their_fields_give_the_plain_state():
    kvs = [wep_kv(f"ep{i}", f"10.2.0.{i}/32", 20 + i) for i in range(8)]
    broken = wep_kv("broken", "10.2.0.99/32", 40)
    broken = type(broken)(broken.key, b"{not json", 40, 40)
    kvs.append(broken)
    fields = [listed_fields(kv) for kv in kvs]  # as the follower process sends them
    assert fields[-1] is None and all(f is not None for f in fields[:-1])
    pages = ListedPages()
    pages.put(kvs[:4], fields[:4])
    pages.put(kvs[4:], fields[4:])
    decoded = pages.take()
    assert set(decoded) == {kv.key for kv in kvs}

    plain, paged = ClusterState(), ClusterState()
    plain.replace_all(kvs)
    paged.replace_all(kvs, decoded)
    listed = paged.resources[kvs[0].key]
    assert type(listed) is StoredEndpoint and not listed.decoded  # not parsed here yet
    # the Endpoints table of the two is the same, and building it parses nothing
    assert [(r.key, r.cells) for r in endpoint_rows(paged)] == [
        (r.key, r.cells) for r in endpoint_rows(plain)
    ]
    assert not listed.decoded
    assert paged.resources == plain.resources and len(paged.resources) == 8  # (parses)
    assert paged.bad_keys == plain.bad_keys and broken.key in paged.bad_keys
    assert listed.spec.ip_networks == ["10.2.0.0/32"]
    assert listed.metadata.resource_version == "20"
    assert pages.take() == {}  # the next listing starts afresh


def test_a_page_of_another_revision_is_decoded_again():
    old = wep_kv("ep1", "10.2.0.1/32", 5)
    new = wep_kv("ep1", "10.2.0.2/32", 9)
    pages = ListedPages()
    pages.put([old], [listed_fields(old)])
    state = ClusterState()
    state.replace_all([new], pages.take())
    (res,) = state.resources.values()
    assert res.spec.ip_networks == ["10.2.0.2/32"] and res.metadata.resource_version == "9"


def test_listed_fields_are_the_fields_decode_gives():
    """The follower process reads the fields without making the StoredEndpoint: the same
    fields, for the same keys, as decode()'s, odd shapes and other kinds included."""
    import json

    from console.model import decode

    good = wep_kv("ep1", "10.2.0.1/32", 5)
    doc = json.loads(good.value)
    odd = [
        {**doc, "spec": {**doc["spec"], "ipNetworks": "10.2.0.1/32"}},  # a string, not a list
        {**doc, "metadata": {"namespace": "default"}},  # no name
        {**doc, "spec": {**doc["spec"], "unknown": 1}},  # a field the decoder does not know
        {**doc, "kind": "Profile"},
        {**doc, "apiVersion": "v1"},
        [doc],
    ]
    kvs = [good] + [type(good)(good.key, json.dumps(d).encode(), 5, 5) for d in odd]
    kvs.append(type(good)(good.key, b"{not json", 5, 5))
    kvs.append(type(good)("/calico/felix/v2/x", b"{}", 5, 5))  # not a resource key
    for kv in kvs:
        res = decode(kv)[0] if kv.key.startswith("/calico/resources/") else None
        expected = tuple(res.fields) if type(res) is StoredEndpoint and res.fields else None
        assert listed_fields(kv) == expected, kv.value
    assert listed_fields(good) is not None
