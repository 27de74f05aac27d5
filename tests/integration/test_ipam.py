"""calico-ipam's etcd side (plugin/ipam_store.py) and `calicoctl ipam` against a real etcd.

No namespaces needed: these drive the store directly, plus racing processes, plus the
calicoctl commands as a user runs them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from calico import ipam, ipam_store, keys

pytestmark = pytest.mark.etcd

POOL_KEY = "/calico/resources/v3/projectcalico.org/ippools/"


def put_pool(ds, name: str, cidr: str, block: int = 26, disabled: bool = False) -> None:
    res = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "blockSize": block, "disabled": disabled},
    }
    ds.kv_put(POOL_KEY + name, json.dumps(res))


@pytest.fixture(autouse=True)
def fresh_cache():
    # The store's per-process view must not leak between tests (each empties etcd).
    ipam_store._caches.clear()
    yield
    ipam_store._caches.clear()


def test_claim_writes_block_and_affinity_together(datastore) -> None:
    put_pool(datastore, "p1", "10.60.0.0/24", block=28)
    ip = ipam_store.auto_assign(datastore, "n1", "net.c1")
    assert ip == ipaddress.IPv4Address("10.60.0.0")
    block = ipam.Block.from_json(datastore.kv_get(keys.block_key("10.60.0.0/28")).value)
    assert block.node == "n1" and block.handle_of(ip) == "net.c1"
    aff = datastore.kv_get(keys.affinity_key("n1", "10.60.0.0/28"))
    assert aff is not None and json.loads(aff.value)["state"] == "confirmed"
    handle = ipam.Handle.from_json(datastore.kv_get(keys.handle_key("net.c1")).value)
    assert handle.block == {"10.60.0.0/28": 1}


def test_node_blocks_then_new_block_then_borrow(datastore) -> None:
    put_pool(datastore, "p1", "10.61.0.0/29", block=30)  # two blocks of 4
    n1 = [ipam_store.auto_assign(datastore, "n1", f"net.a{i}") for i in range(4)]
    assert {str(b) for b in n1} == {"10.61.0.0", "10.61.0.1", "10.61.0.2", "10.61.0.3"}
    n2 = ipam_store.auto_assign(datastore, "n2", "net.b0")  # n2 claims the other block
    assert str(n2) == "10.61.0.4"
    more = [ipam_store.auto_assign(datastore, "n1", f"net.a{i}") for i in range(4, 7)]
    assert {str(b) for b in more} == {"10.61.0.5", "10.61.0.6", "10.61.0.7"}  # borrowed
    with pytest.raises(ipam_store.PoolsExhausted):
        ipam_store.auto_assign(datastore, "n1", "net.full")


def test_disabled_pools_and_ipv4_pools(datastore) -> None:
    put_pool(datastore, "off", "10.62.0.0/24", disabled=True)
    with pytest.raises(ipam_store.NoPools, match="disabled"):
        ipam_store.auto_assign(datastore, "n1", "net.c1")
    put_pool(datastore, "a", "10.63.0.0/24")
    put_pool(datastore, "b", "10.64.0.0/24")
    ipam_store._caches.clear()
    assert str(ipam_store.auto_assign(datastore, "n1", "net.c2", ["b"])).startswith("10.64.")
    assert str(ipam_store.auto_assign(datastore, "n1", "net.c3", ["10.63.0.0/24"])).startswith(
        "10.63."
    )
    with pytest.raises(ipam_store.NoPools, match="nope"):
        ipam_store.auto_assign(datastore, "n1", "net.c4", ["nope"])


def test_stale_view_never_uses_a_pool_disabled_since(datastore) -> None:
    put_pool(datastore, "a", "10.65.0.0/24")
    put_pool(datastore, "b", "10.66.0.0/24")
    ipam_store.auto_assign(datastore, "n1", "net.c1", ["a"])  # view now cached
    put_pool(datastore, "a", "10.65.0.0/24", disabled=True)  # changed behind our back
    ip = ipam_store.auto_assign(datastore, "n1", "net.c2")
    assert str(ip).startswith("10.66.")


def test_specific_address(datastore) -> None:
    put_pool(datastore, "p1", "10.67.0.0/24")
    ip = ipaddress.IPv4Address("10.67.0.77")
    assert ipam_store.assign_ip(datastore, "n1", "net.c1", ip) == ip
    with pytest.raises(ipam_store.AddressUnavailable, match="already assigned"):
        ipam_store.assign_ip(datastore, "n1", "net.c2", ip)
    with pytest.raises(ipam_store.AddressUnavailable, match="not in any IPPool"):
        ipam_store.assign_ip(datastore, "n1", "net.c3", ipaddress.IPv4Address("10.99.0.1"))


def test_release_by_handle_is_repeatable(datastore) -> None:
    put_pool(datastore, "p1", "10.68.0.0/24")
    ip = ipam_store.auto_assign(datastore, "n1", "net.c1")
    assert ipam_store.release_by_handle(datastore, "net.c1") == [ip]
    assert ipam_store.release_by_handle(datastore, "net.c1") == []
    assert datastore.kv_get(keys.handle_key("net.c1")) is None
    # The handle was released by another process (not through this one's view).
    ip2 = ipam_store.auto_assign(datastore, "n1", "net.c2")
    datastore.kv_delete(keys.handle_key("net.c2"))
    ipam_store.release_ips(datastore, [ip2])
    assert ipam_store.release_by_handle(datastore, "net.c2") == []


def test_threads_get_distinct_addresses(datastore) -> None:
    put_pool(datastore, "p1", "10.69.0.0/24", block=28)
    with ThreadPoolExecutor(32) as pool:
        ips = list(
            pool.map(lambda i: ipam_store.auto_assign(datastore, "n1", f"net.t{i}"), range(64))
        )
    assert len(set(ips)) == 64


def test_racing_processes_never_share_an_address(datastore, etcd_server) -> None:
    """Separate processes have no lock in common: only the CAS keeps them apart. All act
    as the same node, so they fight over the same blocks."""
    put_pool(datastore, "p1", "10.70.0.0/24", block=28)
    code = (
        "import sys\n"
        "from calico.datastore import Datastore\n"
        "from calico import ipam_store\n"
        "ds = Datastore.connect(sys.argv[1])\n"
        "for i in range(12):\n"
        "    print(ipam_store.auto_assign(ds, 'n1', f'net.p{sys.argv[2]}.{i}'))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, etcd_server.endpoints, str(k)],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        for k in range(6)
    ]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        outs += out.split()
    assert len(outs) == 72 and len(set(outs)) == 72
    blocks = [ipam.Block.from_json(kv.value) for kv in datastore.kv_list(keys.BLOCK_PREFIX)[0]]
    assert sorted(str(ip) for b in blocks for ip in b.allocated()) == sorted(outs)


def test_endpoints_riding_in_racing_assignments_on_two_nodes_match_their_address(
    datastore, etcd_server
) -> None:
    """The CNI plugin's endpoint rides in its address's transaction (ipam_store.Rider):
    processes acting as two nodes race for four /28 blocks (60 of their 64 addresses, so
    both claim and borrow), each with a stale view most of the time. Every endpoint must
    record exactly the address its handle holds (a lost race retries with the new
    address, never commits the old one), and no address may be handed out twice."""
    put_pool(datastore, "p1", "10.73.0.0/26", block=28)
    code = (
        "import sys\n"
        "from calico.datastore import Datastore\n"
        "from calico import ipam_store\n"
        "from plugin import endpoint\n"
        "ds = Datastore.connect(sys.argv[1])\n"
        "node, k = sys.argv[2], sys.argv[3]\n"
        "for i in range(10):\n"
        "    cid = f'c{node}-{k}-{i}'\n"
        "    info = endpoint.EndpointInfo(node=node, container_id=cid, ifname='eth0',\n"
        "        host_ifname='calitest', mac='02:00:00:00:00:01', ip_networks=[],\n"
        "        network='net')\n"
        "    rider = endpoint.Rider(ds, info)\n"
        "    ip = ipam_store.auto_assign(ds, node, f'net.{cid}', rider=rider)\n"
        "    assert rider.state == 'created', rider.state\n"
        "    print(cid, ip)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, etcd_server.endpoints, node, str(k)],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        for node in ("n1", "n2")
        for k in range(3)
    ]
    given: dict[str, str] = {}
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        for line in out.splitlines():
            cid, ip = line.split()
            given[cid] = ip
    assert len(given) == 60 and len(set(given.values())) == 60
    held = {}
    for kv in datastore.kv_list(keys.BLOCK_PREFIX)[0]:
        for ip, handle in ipam.Block.from_json(kv.value).allocated().items():
            held[str(ip)] = handle
    assert held == {ip: f"net.{cid}" for cid, ip in given.items()}
    weps = datastore.kv_list("/calico/resources/v3/projectcalico.org/workloadendpoints/")[0]
    recorded = {kv.json()["spec"]["containerID"]: kv.json()["spec"]["ipNetworks"] for kv in weps}
    assert recorded == {cid: [f"{ip}/32"] for cid, ip in given.items()}
    assert datastore.kv_get("/calico/resources/v3/projectcalico.org/profiles/net") is not None


def run_calicoctl(etcd_server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calicoctl", *args],
        env={**os.environ, "ETCD_ENDPOINTS": etcd_server.endpoints},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_calicoctl_ipam_show_check_release(datastore, etcd_server, tmp_path) -> None:
    put_pool(datastore, "p1", "10.71.0.0/24")
    used = ipam_store.auto_assign(datastore, "n1", "net.leaky")
    show = run_calicoctl(etcd_server, "ipam", "show")
    assert show.returncode == 0, show.stderr
    assert "10.71.0.0/24" in show.stdout and "10.71.0.0/26" in show.stdout
    assert "1 (0%)" in show.stdout  # in use in the pool
    one = run_calicoctl(etcd_server, "ipam", "show", f"--ip={used}")
    assert f"IP {used} is in use" in one.stdout and "net.leaky" in one.stdout

    report = tmp_path / "r.json"
    check = run_calicoctl(etcd_server, "ipam", "check", "-o", str(report))
    assert check.returncode == 0, check.stderr
    assert "Found 1 leaked IP addresses" in check.stdout
    assert json.loads(report.read_text())["leakedAddresses"][0]["ip"] == str(used)

    rel = run_calicoctl(etcd_server, "ipam", "release", f"--from-report={report}")
    assert rel.returncode == 0 and f"Released leaked IP address {used}" in rel.stdout
    assert datastore.kv_get(keys.handle_key("net.leaky")) is None
    again = run_calicoctl(etcd_server, "ipam", "release", f"--ip={used}")
    assert again.returncode == 1 and "not assigned" in again.stderr

    ip2 = ipam_store.auto_assign(datastore, "n1", "net.two")
    ok = run_calicoctl(etcd_server, "ipam", "release", f"--ip={ip2}")
    assert ok.returncode == 0 and f"Successfully released IP address {ip2}" in ok.stdout
    assert datastore.kv_get(keys.handle_key("net.two")) is None
