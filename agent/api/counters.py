"""The node API's view of the agent's chains as the kernel has them, with per-rule packet
and byte counters (GET /v1/dataplane). The save and its parse are kernel.iptables's.

    python -m agent.api.counters < iptables-save-c.txt    # the JSON for a saved table
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from kernel.iptables import IptablesError, parse_save, save

CHAIN_PREFIX = "cali"  # every chain whose name starts so, as the node API has always shown


def chain_counters(text: str) -> dict[str, list[dict[str, Any]]]:
    """`iptables-save -c` output -> {chain: [{packets, bytes, rule}]} for cali* chains, a
    declared chain with no rule included; `rule` is the save line without its counters."""
    chains: dict[str, list[dict[str, Any]]] = {}
    for table in parse_save(text).values():
        for chain, rules in table.rules.items():
            if not chain.startswith(CHAIN_PREFIX):
                continue
            out = chains.setdefault(chain, [])
            for r in rules:
                if r.packets is None:
                    continue  # saved without -c
                rule = f"-A {chain} {r.spec}" if r.spec else f"-A {chain}"
                out.append({"packets": r.packets, "bytes": r.bytes, "rule": rule})
    return chains


def read_chain_counters() -> dict[str, list[dict[str, Any]]]:
    """The filter table's cali* chains with counters, or {} when it cannot be read (the
    route still answers with the agent's own view)."""
    try:
        return chain_counters(save("filter", counters=True, timeout=10))
    except (IptablesError, OSError, subprocess.SubprocessError):
        return {}


if __name__ == "__main__":  # pragma: no cover - manual poking
    print(json.dumps(chain_counters(sys.stdin.read()), indent=2))
