"""The resource kinds by name: what a user may type for each, its plural (the etcd key
level), whether it is namespaced. Plain data, no imports.

Why a table apart from calico.resources: `calicoctl get profiles` needs a kind's name and
key prefix, not its dataclasses and validators, and importing calico.resources costs
~23 ms of a command whose budget is ~40. `calico.resources.kind_class` looks names up here,
so both give the same answer and the same error; tests/unit/test_kinds.py checks that
this table says what the resource classes say.
"""

from __future__ import annotations


class KindInfo:
    """A kind's names, with the attribute names of the resource classes (KIND, PLURAL,
    NAMESPACED, ALIASES), so calico.keys takes either."""

    __slots__ = ("KIND", "PLURAL", "NAMESPACED", "ALIASES")

    def __init__(self, kind: str, plural: str, namespaced: bool, aliases: tuple[str, ...]):
        self.KIND = kind
        self.PLURAL = plural
        self.NAMESPACED = namespaced
        self.ALIASES = aliases

    def __repr__(self) -> str:
        return f"KindInfo({self.KIND!r})"


# In calico.resources.KINDS order (the order of "known: ..." in the error).
KINDS: tuple[KindInfo, ...] = (
    KindInfo("Profile", "profiles", False, ("pro", "pros")),
    KindInfo("IPPool", "ippools", False, ("ippool", "pool", "pools", "ipp", "ipps")),
    KindInfo("Node", "nodes", False, ("no",)),
    KindInfo("BGPConfiguration", "bgpconfigurations", False, ("bgpconfig", "bgpconfigs")),
    KindInfo("BGPPeer", "bgppeers", False, ("bgppeer", "bgpp", "bgpps", "bp", "bps")),
    KindInfo("WorkloadEndpoint", "workloadendpoints", True, ("wep", "weps")),
    KindInfo(
        "NetworkPolicy",
        "networkpolicies",
        True,
        ("netpol", "netpols", "policy", "policies", "np", "nps"),
    ),
    KindInfo(
        "GlobalNetworkPolicy",
        "globalnetworkpolicies",
        False,
        ("gnp", "gnps", "globalpolicy", "globalpolicies"),
    ),
)


class UnknownKind(ValueError):
    """A kind name nobody knows; `message` is the one line to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def kind_info(name: str | None) -> KindInfo:
    """The kind a user means: any case, singular, plural or short alias."""
    if not name:
        raise UnknownKind("missing kind")
    low = name.lower()
    for info in KINDS:
        if low in (info.KIND.lower(), info.PLURAL, info.KIND.lower() + "s", *info.ALIASES):
            return info
    known = ", ".join(info.KIND for info in KINDS)
    raise UnknownKind(f"unknown resource kind {name!r} (known: {known})")
