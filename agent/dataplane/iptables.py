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
from collections.abc import Set
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


@dataclass
class RestorePlan:
    """What one `iptables-restore --noflush` commit must say to turn the kernel's filter table
    into the desired one: the chains to (re)write and to delete, the hook rules to fix."""

    desired: Dataplane
    changed: list[str]
    stale: list[str]
    hook_lines: list[str]

    def __bool__(self) -> bool:
        return bool(self.changed or self.stale or self.hook_lines)

    def lines(self, written: Set[str] = frozenset(), declared: Set[str] = frozenset()) -> list[str]:
        """The commit's lines after `*filter`, less the chains already `written` and the
        declarations already made (what a `StreamedCommit` sent while the calculation ran)."""
        rest = [n for n in self.changed if n not in written]
        # Declaring a chain creates it, or flushes it if it exists: every chain to rewrite or
        # delete is declared first, so references between them are resolved in any order.
        out = [f":{n} - [0:0]" for n in (*rest, *self.stale) if n not in declared]
        for name in rest:
            out += self.desired.chains[name].lines()
        out += self.hook_lines
        out += [f"-X {n}" for n in self.stale]
        out.append("COMMIT")
        return out

    def text(self) -> str:
        """The whole restore input; "" when nothing differs."""
        return "\n".join(["*filter", *self.lines()]) + "\n" if self else ""


def plan(desired: Dataplane, current: KernelFilter) -> RestorePlan:
    """The commit that turns `current` into `desired` (false when nothing differs)."""
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
    return RestorePlan(desired, changed, stale, hook_lines)


def plan_restore(desired: Dataplane, current: KernelFilter) -> tuple[str, list[str], list[str]]:
    """`plan(...)` as (restore input, chains rewritten, chains deleted); "" when nothing
    differs."""
    p = plan(desired, current)
    return p.text(), p.changed, p.stale


class StreamedCommit:
    """The same one commit as `plan(...)`, with most of its input written while the
    calculation is still running: the calculation hands over each chain as it makes it
    (`chain`), the restore parses it on the other core, and `finish(desired)` writes the
    rest and COMMIT. At 10,000 endpoints the restore's ~500 ms of parsing then overlaps the
    calculation's ~450 ms instead of following it.

    A chain is written early only when the kernel lacks it or holds other rules, and only
    when it matches no ipset (a set must exist when its rule is parsed, and sets are
    restored just before `finish`); the chains it jumps to are declared ahead of it. The
    kernel sees nothing before COMMIT, so a failure anywhere leaves the table as it was."""

    def __init__(self, current: KernelFilter, size: int = 1 << 18):
        self.current = current
        self.size = size
        self.proc: kernel_iptables.RestoreProcess | None = None
        self.declared: set[str] = set()
        self.written: set[str] = set()
        self._pending: list[str] = []
        self._length = 0

    def chain(self, chain: Chain) -> None:
        name = chain.name
        if name in self.written or self.current.chains.get(name) == chain.hashes:
            return
        lines: list[str] = []
        for rule in chain.rules:
            if "--match-set" in rule.match:
                return  # written by `finish`, after the sets
            target = rule.target
            if len(target) > 1 and target[0] in ("-j", "-g") and target[1].startswith(CHAIN_PREFIX):
                ref = target[1]
                if ref not in self.declared and ref not in self.current.chains:
                    lines.append(f":{ref} - [0:0]")
                    self.declared.add(ref)
        if name not in self.declared:
            lines.append(f":{name} - [0:0]")
            self.declared.add(name)
        lines += chain.lines()
        self.written.add(name)
        self._add("\n".join(lines))
        if self._length >= self.size:
            self._flush()

    def finish(self, desired: Dataplane) -> tuple[list[str], list[str]]:
        """Write what is left and commit: (chains rewritten, chains deleted); IptablesError
        (nothing changed) when the restore refuses."""
        todo = plan(desired, self.current)  # every chain written is among todo.changed
        if self.proc is None and not todo:
            return [], []
        self._add("\n".join(todo.lines(self.written, self.declared)))
        self._flush()
        assert self.proc is not None
        self.proc.finish()
        return todo.changed, todo.stale

    def abort(self) -> None:
        if self.proc is not None:
            self.proc.abort()

    def _add(self, text: str) -> None:
        self._pending.append(text)
        self._length += len(text)

    def _flush(self) -> None:
        if not self._pending:
            return
        if self.proc is None:
            self.proc = kernel_iptables.RestoreProcess()
            self._pending.insert(0, "*filter")
        self.proc.write("\n".join(self._pending) + "\n")
        self._pending, self._length = [], 0


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
