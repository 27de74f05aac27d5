"""BGP status as data: what `birdc show protocols` says about a node's BGP sessions.

    peers = parse_birdc_protocols(text)    # text: birdc's output, header and all
    [PeerStatus(peer_address="10.213.0.12", peer_type="node-to-node mesh", state="up",
                since="07:06:46.775", info="Established", name="mesh_10_213_0_12")]

The agent names each BGP protocol `<type>_<address with _>` (agent/bgp/render.py), so the
peer's address and type come from the name, as Calico's `calicoctl node status` reads
them; other protocols (device, kernel, static...) are not peers and are left out.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

PEER_TYPES = {
    "mesh": "node-to-node mesh",
    "global": "global",
    "node": "node specific",
    "rrc": "route reflector client",
}

_NAME_RE = re.compile(r"^(?P<type>[a-z]+)_(?P<addr>\d+_\d+_\d+_\d+)$")
_TIME_RE = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)?$")


@dataclass(frozen=True)
class PeerStatus:
    peer_address: str
    peer_type: str
    state: str  # BIRD's protocol state: up, start, down, flush...
    since: str
    info: str  # "Established", "Active        Socket: Connection refused" squeezed
    name: str  # the BIRD protocol

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def established(self) -> bool:
        return self.info.split(" ", 1)[0] == "Established"


def peer_of(name: str) -> tuple[str, str] | None:
    """(address, peer type) of a protocol the agent named, else None."""
    m = _NAME_RE.match(name)
    if not m or m.group("type") not in PEER_TYPES:
        return None
    return m.group("addr").replace("_", "."), PEER_TYPES[m.group("type")]


@dataclass(frozen=True)
class BirdProtocol:
    """One BGP protocol as `birdc show protocols` lists it, whoever named it."""

    name: str
    state: str  # BIRD's: up, start, down, flush...
    since: str
    info: str  # "Established", "Active Socket: Connection refused" (spaces squeezed)


def parse_bgp_protocols(text: str) -> list[BirdProtocol]:
    """Every BGP protocol in `birdc show protocols` output, in its order (the header,
    device, kernel, static... left out)."""
    out: list[BirdProtocol] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[1] != "BGP":
            continue
        state, rest = fields[3], fields[4:]
        since = rest.pop(0) if rest else ""
        if rest and _TIME_RE.match(rest[0]):  # an older "since" is "2026-12-01 07:06:45"
            since = f"{since} {rest.pop(0)}"
        out.append(BirdProtocol(fields[0], state, since, " ".join(rest)))
    return out


def parse_birdc_protocols(text: str) -> list[PeerStatus]:
    """The node's BGP peers in `birdc show protocols` output: the protocols the agent
    named (`<type>_<address>`), in its order."""
    out: list[PeerStatus] = []
    for proto in parse_bgp_protocols(text):
        peer = peer_of(proto.name)
        if peer is None:
            continue
        out.append(
            PeerStatus(
                peer_address=peer[0],
                peer_type=peer[1],
                state=proto.state,
                since=proto.since,
                info=proto.info,
                name=proto.name,
            )
        )
    return out


def peer_from_dict(data: dict[str, Any]) -> PeerStatus:
    return PeerStatus(**{k: str(data.get(k) or "") for k in PeerStatus.__dataclass_fields__})
