"""The console's listing decoded page by page while it is read (console.sync.DecodeAhead)
ends in exactly the state a plain decode gives; a page of an older revision is not used."""

from __future__ import annotations

from console.model import ClusterState
from console.sync import DecodeAhead
from tests.unit.test_sync_pages import wep_kv


def test_pages_decoded_ahead_give_the_plain_state():
    kvs = [wep_kv(f"ep{i}", f"10.2.0.{i}/32", 20 + i) for i in range(8)]
    broken = wep_kv("broken", "10.2.0.99/32", 40)
    broken = type(broken)(broken.key, b"{not json", 40, 40)
    kvs.append(broken)
    ahead = DecodeAhead()
    ahead.put(kvs[:4])
    ahead.put(kvs[4:])
    decoded = ahead.take()
    assert set(decoded) == {kv.key for kv in kvs}

    plain, paged = ClusterState(), ClusterState()
    plain.replace_all(kvs)
    paged.replace_all(kvs, decoded)
    assert paged.resources == plain.resources and len(paged.resources) == 8
    assert paged.bad_keys == plain.bad_keys and broken.key in paged.bad_keys
    assert ahead.take() == {}  # the next listing starts afresh


def test_a_page_of_another_revision_is_decoded_again():
    old = wep_kv("ep1", "10.2.0.1/32", 5)
    new = wep_kv("ep1", "10.2.0.2/32", 9)
    ahead = DecodeAhead()
    ahead.put([old])
    state = ClusterState()
    state.replace_all([new], ahead.take())
    (res,) = state.resources.values()
    assert res.spec.ip_networks == ["10.2.0.2/32"] and res.metadata.resource_version == "9"
