"""plugin/veth.py's names, tables and MACs (no sockets)."""

from __future__ import annotations

import hashlib
import re

from kernel import rtnetlink
from plugin import veth


def test_host_ifname_is_a_hash_of_container_and_interface() -> None:
    cid = "0123456789abcdef"
    want = "cali" + hashlib.sha1(f"{cid}.eth0".encode()).hexdigest()[:11]
    assert veth.host_ifname(cid, "eth0") == want
    assert len(want) == 15  # the kernel's limit
    assert veth.host_ifname(cid, "eth0") == veth.host_ifname(cid, "eth0")  # stable


def test_host_ifname_unique_per_interface_and_per_id() -> None:
    # Regression (issue 12): `cali` + cid[:11] gave a pod's eth0 and eth1 one name, and
    # two IDs sharing their first 11 characters one name.
    cid = "abcdefghijk-one"
    assert veth.host_ifname(cid, "eth0") != veth.host_ifname(cid, "eth1")
    assert veth.host_ifname(cid, "eth0") != veth.host_ifname("abcdefghijk-two", "eth0")
    names = {veth.host_ifname(f"{i:040x}", f"eth{j}") for i in range(2000) for j in range(3)}
    assert len(names) == 6000
    assert all(re.fullmatch(r"cali[0-9a-f]{11}", n) for n in names)


def test_route_tables_of_secondary_interfaces() -> None:
    assert veth.route_table("eth1") == 101 and veth.route_table("eth7") == 107
    other = veth.route_table("net-b")
    assert other == veth.route_table("net-b") and other >= veth.HASH_TABLE_BASE
    reserved = {0, 252, 253, 254, 255}
    assert all(veth.route_table(n) not in reserved for n in ("eth0", "x", "ETH_1", "a" * 15))
    assert all(veth.route_table(n) < 2**32 for n in ("x", "y" * 15))


def test_pod_mac() -> None:
    mac = rtnetlink.mac_bytes(veth.random_mac())
    assert mac[0] & 0x01 == 0 and mac[0] & 0x02 == 2  # unicast, locally administered
