"""plugin/veth.py's names and MACs (no sockets)."""

from __future__ import annotations

from kernel import rtnetlink
from plugin import veth


def test_host_ifname_and_pod_mac() -> None:
    assert veth.host_ifname("0123456789abcdef") == "cali0123456789a"
    assert len(veth.host_ifname("0123456789abcdef")) == 15
    mac = rtnetlink.mac_bytes(veth.random_mac())
    assert mac[0] & 0x01 == 0 and mac[0] & 0x02 == 2  # unicast, locally administered
