"""The filter table through `iptables-legacy-save` / `iptables-legacy-restore --noflush`.

Legacy backend everywhere: python-iptables (which may read counters) speaks only legacy, and
whoever writes and whoever reads must share a backend. One restore call per apply carries
every change, and the kernel swaps the whole table in one commit, so no packet ever sees a
half-written chain.

The plan compares hash lists: a chain whose `cali:<hash>` comments differ from the desired
ones (a rule edited, added or deleted by hand included) is declared again, which flushes it,
and rewritten; a chain the agent owns but no longer wants is flushed and deleted in the same
commit after every rule referring to it was rewritten. Other chains and rules are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.calc.model import Chain, Dataplane
from agent.calc.names import CHAIN_PREFIX
from kernel import iptables as kernel_iptables
from kernel.iptables import IptablesError as IptablesError  # the applier catches it here

BUILTINS = ("INPUT", "FORWARD", "OUTPUT")

_COMMENT_RE = re.compile(r'--comment "?cali:([A-Za-z0-9_-]+)"?')


@dataclass
class KernelFilter:
    """What the filter table holds, as far as the agent cares."""

    chains: dict[str, tuple[str | None, ...]] = field(default_factory=dict)  # cali-* hashes
    builtins: dict[str, list[tuple[str | None, str]]] = field(default_factory=dict)

    def rule_count(self) -> int:
        return sum(len(h) for h in self.chains.values())


def parse_save(text: str) -> KernelFilter:
    """Parse `iptables-save -t filter` output: our chains' hash lists, built-in rules."""
    out = KernelFilter()
    table = kernel_iptables.parse_save(text).get("filter")
    if table is None:
        return out
    for name in table.policies:
        if name.startswith(CHAIN_PREFIX):
            out.chains[name] = tuple(rule_hash(r.spec) for r in table.rules[name])
        elif name in BUILTINS:
            out.builtins[name] = [(rule_hash(r.spec), r.spec) for r in table.rules[name]]
    return out


def rule_hash(spec: str) -> str | None:
    """The `cali:<hash>` of a saved rule (its comment), None for a rule the agent did not write."""
    m = _COMMENT_RE.search(spec)
    return m.group(1) if m else None


def plan_restore(desired: Dataplane, current: KernelFilter) -> tuple[str, list[str], list[str]]:
    """The `iptables-restore --noflush` input that turns `current` into `desired`.

    Returns (text, chains rewritten, chains deleted); text is "" when nothing differs.
    """
    changed = [n for n, c in desired.chains.items() if current.chains.get(n) != c.hashes]
    stale = sorted(n for n in current.chains if n not in desired.chains)
    hook_lines: list[str] = []
    for builtin, hook in desired.hooks.items():
        present = current.builtins.get(builtin, [])
        wanted = set(hook.hashes)
        for h, spec in present:
            # A rule of ours (cali: comment) that is not the current jump: an old version.
            if h is not None and h not in wanted:
                hook_lines.append(f"-D {builtin} {spec}")
        if not any(h in wanted for h, _ in present):
            hook_lines.append(f"-I {builtin} 1 {_spec_of(hook)}")
    if not changed and not stale and not hook_lines:
        return "", [], []
    lines = ["*filter"]
    # Declaring a chain creates it, or flushes it if it exists: every chain to rewrite or
    # delete is declared first, so references between them are resolved in any order.
    lines += [f":{n} - [0:0]" for n in (*changed, *stale)]
    for name in changed:
        lines += desired.chains[name].lines()
    lines += hook_lines
    lines += [f"-X {n}" for n in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n", changed, stale


def apply_to_cache(desired: Dataplane, current: KernelFilter) -> KernelFilter:
    """What the kernel holds after a successful restore of `plan_restore(desired, current)`."""
    out = KernelFilter(
        chains={n: c.hashes for n, c in desired.chains.items()},
        builtins={b: list(rules) for b, rules in current.builtins.items()},
    )
    for builtin, hook in desired.hooks.items():
        rules = [(h, s) for h, s in out.builtins.get(builtin, []) if h is None or h in hook.hashes]
        if not any(h in hook.hashes for h, _ in rules):
            rules.insert(0, (hook.hashes[0], _spec_of(hook)))
        out.builtins[builtin] = rules
    return out


def _spec_of(hook: Chain) -> str:
    return hook.lines()[0].split(" ", 2)[2]


# ---------------------------------------------------------------- kernel I/O


def read_filter() -> KernelFilter:
    return parse_save(kernel_iptables.save("filter"))


def save_text() -> str:
    return kernel_iptables.save("filter")


def restore(text: str) -> None:
    """One atomic commit of the filter table (waits for the xtables lock)."""
    kernel_iptables.restore(text)
