"""ClusterCache's pages: a listing decoded page by page while it is read ends in exactly the
cache a Snapshot alone gives, and nothing of a page counts before its Snapshot."""

from __future__ import annotations

import json

from agent.sync import ClusterCache, Page
from calico.datastore import KV, Snapshot
from calico.keys import RESOURCE_ROOT, resource_key


def wep_kv(name: str, ip: str, revision: int) -> KV:
    data = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"node": "n1", "interfaceName": f"cali{name[:8]}", "ipNetworks": [ip]},
    }
    key = resource_key("WorkloadEndpoint", name, "default")
    return KV(key, json.dumps(data).encode(), revision, revision)


def test_pages_then_snapshot_give_the_snapshots_cache():
    kvs = [wep_kv(f"ep{i}", f"10.1.0.{i}/32", 10 + i) for i in range(6)]
    kvs.append(wep_kv("bad", "10.1.0.300/32", 99))  # rejected, with its reason
    plain = ClusterCache()
    plain.update(RESOURCE_ROOT, Snapshot({kv.key: kv for kv in kvs}, 120))

    paged = ClusterCache()
    assert paged.update(RESOURCE_ROOT, Page(kvs[:3])) is False
    assert paged.update(RESOURCE_ROOT, Page(kvs[3:])) is False
    assert paged.resources == {} and not paged.ready  # nothing counts before the Snapshot
    assert paged.update(RESOURCE_ROOT, Snapshot({kv.key: kv for kv in kvs}, 120)) is True
    assert paged.resources == plain.resources
    assert (
        paged.rejected == plain.rejected and "10.1.0.300/32" in paged.rejected[kvs[-1].key].reason
    )
    assert paged._prepared == {}


def test_a_page_of_an_older_revision_is_decoded_again():
    old = wep_kv("ep1", "10.1.0.1/32", 5)
    new = wep_kv("ep1", "10.1.0.2/32", 7)  # the listing that completed read it changed
    cache = ClusterCache()
    cache.update(RESOURCE_ROOT, Page([old]))
    cache.update(RESOURCE_ROOT, Snapshot({new.key: new}, 8))
    assert cache.resources[new.key].spec.ip_networks == ["10.1.0.2/32"]
    assert cache.resources[new.key].metadata.resource_version == "7"
