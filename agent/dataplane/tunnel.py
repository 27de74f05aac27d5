"""tunl0 as the agent wants it: the node's tunnel address as /32, MTU 1480, link up.

The device itself is `calico-tunl`'s (the kernel's ipip device, or a TUN device it
relays); the agent only configures it, as Felix does. While an IPIP pool exists and there
is no tunl0, every apply says so (an error: the agent's health turns unhealthy with the
reason), since routes through the tunnel cannot be made. With no IPIP pool the agent
takes its address off an existing tunl0: a released tunnel address may go to a pod.
Reads through netlink (a link and its addresses: well under 1 ms); writes, rare, through
one `ip -batch`.
"""

from __future__ import annotations

import ipaddress
import subprocess

from kernel.rtnetlink import Netlink

DEVICE = "tunl0"
MTU = 1480  # 1500 minus the outer IPv4 header


def plan(wanted: bool, address: str | None, mtu: int, up: bool, addresses: set[str]) -> list[str]:
    """`ip -batch` lines that bring an existing tunl0 to the wanted state (pure)."""
    if not wanted:
        return [f"address del {a} dev {DEVICE}" for a in sorted(addresses)]
    lines = []
    if mtu != MTU:
        lines.append(f"link set dev {DEVICE} mtu {MTU}")
    want = f"{ipaddress.IPv4Address(address)}/32" if address else None
    lines += [f"address del {a} dev {DEVICE}" for a in sorted(addresses) if a != want]
    if want and want not in addresses:
        lines.append(f"address add {want} dev {DEVICE}")
    if not up:
        lines.append(f"link set dev {DEVICE} up")
    return lines


def ensure(wanted: bool, address: str | None) -> tuple[int | None, int, list[str]]:
    """Configure tunl0; returns (its ifindex or None, changes made, errors)."""
    with Netlink() as nl:
        link = nl.link_get(DEVICE)
        if link is None:
            if wanted:
                return (
                    None,
                    0,
                    [f"an IPIP pool needs {DEVICE} and there is none (is calico-tunl running?)"],
                )
            return None, 0, []
        addresses = {str(a.address) for a in nl.addrs(link.index)}
    lines = plan(wanted, address, link.mtu, link.up, addresses)
    if not lines:
        return link.index, 0, []
    proc = subprocess.run(
        ["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n",
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    return link.index, len(lines), [f"{DEVICE}: {e}" for e in errors]
