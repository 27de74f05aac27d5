"""What the agent calls the kernel objects it owns, and the constants those names are made of.

Everything the agent programs is recognisable by name alone (the dataplane removes stale
objects by these prefixes and never touches anything else): chains start `cali-`, ipsets
`cali4`, routes carry `proto 80`. Names longer than the kernel allows become a prefix plus
a hash, so any resource name fits and two names never collide.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
from typing import TYPE_CHECKING

from calico.policy import INGRESS
from calico.resources import NetworkPolicy

if TYPE_CHECKING:
    from agent.calc.model import Policy

CHAIN_PREFIX = "cali-"
IFACE_PREFIX = "cali"
IPSET_PREFIX = "cali4"  # every set the agent owns: cali40s: / cali40n: / cali40p: and temps
TEMP_IPSET_PREFIX = "cali4t"
ROUTE_PROTO = 80  # `ip route ... proto 80`: only routes with this protocol are the agent's

ACCEPT_MARK = 0x10000
PASS_MARK = 0x20000
SCRATCH_MARK = 0x40000  # anti-spoofing with several addresses
ALL_MARKS = ACCEPT_MARK | PASS_MARK | SCRATCH_MARK

MAX_CHAIN_NAME = 28  # iptables: XT_EXTENSION_MAXNAMELEN - 1
MAX_IPSET_NAME = 31  # ipset: IPSET_MAXNAMELEN - 1

CHAIN_FORWARD = "cali-FORWARD"
CHAIN_INPUT = "cali-INPUT"
CHAIN_OUTPUT = "cali-OUTPUT"
CHAIN_FROM_DISPATCH = "cali-from-wl-dispatch"
CHAIN_TO_DISPATCH = "cali-to-wl-dispatch"
CHAIN_WL_TO_HOST = "cali-wl-to-host"


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def hash_text(text: str, length: int) -> str:
    """The first `length` characters of the URL-safe base64 SHA-256 of `text`.

    A 10,000-endpoint calculation hashes 50,000 rules: encoding only the bytes the prefix
    needs, in C (binascii), took hashing from 13 to 4 µs a rule; the text is the same."""
    digest = hashlib.sha256(text.encode()).digest()
    need = -(-length // 4) * 3  # whole 3-byte groups: their base64 is the prefix's
    encoded = binascii.b2a_base64(digest[:need], newline=False).translate(_URLSAFE)
    return encoded[:length].decode()


def chain_name(prefix: str, name: str) -> str:
    """`prefix + name`, or `prefix + "_" + hash` when that is longer than iptables allows.

    Resource names never start with "_", so a hashed name cannot collide with a plain one.
    """
    full = prefix + name
    if len(full) <= MAX_CHAIN_NAME:
        return full
    return prefix + "_" + hash_text(name, MAX_CHAIN_NAME - len(prefix) - 1)


def policy_id(pol: Policy) -> str:
    """`namespace/name` for a NetworkPolicy, the plain name for a global one."""
    if isinstance(pol, NetworkPolicy):
        return f"{pol.metadata.namespace or 'default'}/{pol.metadata.name}"
    return pol.metadata.name


def policy_chain(pol: Policy, direction: str) -> str:
    return chain_name("cali-pi-" if direction == INGRESS else "cali-po-", policy_id(pol))


@functools.lru_cache(maxsize=4096)
def profile_chain(name: str, direction: str) -> str:
    """Asked twice per endpoint per calculation, for a handful of profiles: remembered."""
    return chain_name("cali-pri-" if direction == INGRESS else "cali-pro-", name)


def endpoint_chain(iface: str, direction: str) -> str:
    return chain_name("cali-tw-" if direction == INGRESS else "cali-fw-", iface)


def program_chain(
    direction: str, policy_chains: tuple[str, ...], profile_chains: tuple[str, ...]
) -> str:
    """The shared chain for one sequence of policies and profiles (`cali-tp-`/`cali-fp-`)."""
    prefix = "cali-tp-" if direction == INGRESS else "cali-fp-"
    key = "|".join((direction, ",".join(policy_chains), ",".join(profile_chains)))
    return prefix + hash_text(key, MAX_CHAIN_NAME - len(prefix))


def ipset_name(kind: str, key: str) -> str:
    """`cali40<kind>:<hash of key>`, 31 characters."""
    prefix = f"{IPSET_PREFIX}0{kind}:"
    return prefix + hash_text(key, MAX_IPSET_NAME - len(prefix))


def temp_ipset_name(name: str) -> str:
    """The scratch set used to replace `name` atomically (same length, `cali4t` prefix)."""
    return TEMP_IPSET_PREFIX + name[len(TEMP_IPSET_PREFIX) :]


def mark_match(value: int, mask: int) -> tuple[str, ...]:
    """Match tokens: the packet's mark bits under `mask` equal `value`."""
    return ("-m", "mark", "--mark", f"{value:#x}/{mask:#x}")


def set_mark(value: int, mask: int) -> tuple[str, ...]:
    """Target tokens: set the mark bits under `mask` to `value`, leave the others."""
    return ("-j", "MARK", "--set-xmark", f"{value:#x}/{mask:#x}")
