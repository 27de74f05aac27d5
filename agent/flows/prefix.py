"""The NFLOG prefix: the one piece of vocabulary the rule renderer and the flow log share.

`agent.calc.rules` writes it into every deny's `--nflog-prefix` (with `NFLOG_GROUP`), and
`agent.flows.nflog` parses it back out of each packet, so the format lives here, below both,
with no import of either. Where the NFLOG rules go and how they look is the contract in
`agent.flows.nflog`'s docstring; this module is its prefix:

    D|<I or E>|<kind>|<name>|<rule index or ->

at most 63 bytes (`xt_nflog_info.prefix` is 64 with the NUL; iptables silently cuts longer).
"""

from __future__ import annotations

import hashlib

NFLOG_GROUP = 1  # the collector binds it; every NFLOG rule sends here
PREFIX_MAX = 63  # bytes, without the NUL the kernel adds

# ---------------------------------------------------------------- the prefix contract

DIRECTIONS = {"I": "ingress", "E": "egress"}
KINDS = {"pol": "policy", "pro": "profile", "def": "default"}
_DIRECTION_ALIASES = {
    "i": "I",
    "in": "I",
    "ingress": "I",
    "inbound": "I",
    "e": "E",
    "eg": "E",
    "egress": "E",
    "outbound": "E",
}
_HASH_LEN = 8


def _name_hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:_HASH_LEN]


def _cut_utf8(text: str, max_bytes: int) -> str:
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode(errors="ignore")


def nflog_prefix(direction: str, kind: str, name: str, rule_index: int | None) -> str:
    """The NFLOG prefix for a deny: ``D|<I|E>|<kind>|<name>|<index or ->``, <= 63 bytes.

    `direction` is ``I``/``E`` (or ``ingress``/``egress``), `kind` ``pol``/``pro``/``def``,
    `rule_index` the 0-based rule index or None for an end-of-chain drop.
    """
    d = _DIRECTION_ALIASES.get(direction.lower())
    if d is None:
        raise ValueError(f"direction must be I or E, not {direction!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if rule_index is not None and (not isinstance(rule_index, int) or rule_index < 0):
        raise ValueError(f"rule index must be a non-negative int or None, not {rule_index!r}")
    index = "-" if rule_index is None else str(rule_index)
    # Names never need a newline or NUL; keep the prefix printable and one line.
    clean = "".join(ch if ch.isprintable() and ch != '"' else "?" for ch in name)
    head = f"D|{d}|{kind}|"
    tail = f"|{index}"
    room = PREFIX_MAX - len(head.encode()) - len(tail.encode())
    if len(clean.encode()) > room:
        clean = _cut_utf8(clean, room - 1 - _HASH_LEN) + "~" + _name_hash(name)
    return head + clean + tail


def parse_prefix(prefix: str) -> dict:
    """Reverse :func:`nflog_prefix`: direction, kind, name, rule index (None for ``-``).

    Returns ``{"direction": "ingress"|"egress", "kind": "policy"|"profile"|"default",
    "name": str, "rule_index": int|None, "truncated": bool, "name_hash": str|None,
    "raw": prefix}``; anything else gives ``{"kind": "unknown", "raw": prefix}``.
    """
    unknown = {"kind": "unknown", "raw": prefix}
    head = prefix.split("|", 3)
    if len(head) != 4 or head[0] != "D" or head[1] not in DIRECTIONS or head[2] not in KINDS:
        return unknown
    name, sep, index = head[3].rpartition("|")
    if not sep:
        return unknown
    if index == "-":
        rule_index = None
    elif index.isdigit():
        rule_index = int(index)
    else:
        return unknown
    truncated = False
    name_hash = None
    # Calico names never contain "~": a "~" + 8 hex digits tail only comes from cutting.
    cut, tilde, digest = name.rpartition("~")
    if tilde and len(digest) == _HASH_LEN and all(c in "0123456789abcdef" for c in digest):
        name, truncated, name_hash = cut, True, digest
    return {
        "direction": DIRECTIONS[head[1]],
        "kind": KINDS[head[2]],
        "name": name,
        "rule_index": rule_index,
        "truncated": truncated,
        "name_hash": name_hash,
        "raw": prefix,
    }


def prefix_name_matches(parsed: dict, full_name: str) -> bool:
    """Whether `full_name` is the name a (possibly truncated) parsed prefix stands for."""
    if not parsed.get("truncated"):
        return parsed.get("name") == full_name
    return full_name.startswith(parsed["name"]) and _name_hash(full_name) == parsed["name_hash"]
