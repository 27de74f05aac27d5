"""Selector, CIDR-list and named-port sets through `ipset save` / `ipset restore`.

A set that changed is rebuilt under a temporary name and swapped in, so a rule matching
it never sees a half-filled set; the temporary then holds the old members and is destroyed.
New sets are created before the iptables commit that references them; sets nobody wants
any more are destroyed after it. Only sets named `cali4...` are read or touched.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field

from agent.calc.model import Dataplane, IPSet
from agent.calc.names import IPSET_PREFIX, TEMP_IPSET_PREFIX, temp_ipset_name
from kernel.fed import run_fed

IPSET = "ipset"


class IpsetError(RuntimeError):
    pass


@dataclass
class KernelSets:
    sets: dict[str, IPSet] = field(default_factory=dict)

    def member_count(self) -> int:
        return sum(len(s.members) for s in self.sets.values())


def parse_save(text: str) -> KernelSets:
    """`ipset save` output -> our sets (type and members)."""
    types: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[1].startswith(IPSET_PREFIX):
            continue
        if parts[0] == "create":
            types[parts[1]] = parts[2]
            members.setdefault(parts[1], set())
        elif parts[0] == "add":
            members.setdefault(parts[1], set()).add(parts[2])
    return KernelSets({n: IPSet(n, types.get(n, "?"), frozenset(m)) for n, m in members.items()})


def _create(name: str, s: IPSet) -> str:
    maxelem = max(65536, 2 * len(s.members))
    return f"create {name} {s.type} family inet maxelem {maxelem}"


def plan(desired: Dataplane, current: KernelSets) -> tuple[str, str, list[str]]:
    """(before-iptables restore input, after-iptables restore input, sets rewritten)."""
    pre: list[str] = []
    post: list[str] = []
    changed: list[str] = []
    for name in sorted(current.sets):
        if name.startswith(TEMP_IPSET_PREFIX):  # left behind by a crash mid-swap
            pre.append(f"destroy {name}")
    for name, want in sorted(desired.ipsets.items()):
        have = current.sets.get(name)
        if have is not None and have.members == want.members and have.type == want.type:
            continue
        changed.append(name)
        if have is None:
            pre.append(_create(name, want))
            pre += [f"add {name} {m}" for m in sorted(want.members)]
        elif have.type != want.type:
            # Cannot swap across types; rebuild after the commit stops referring to it.
            # (Only a hand-made set could get here: the type is part of the name.)
            post.append(f"destroy {name}")
            post.append(_create(name, want))
            post += [f"add {name} {m}" for m in sorted(want.members)]
        else:
            tmp = temp_ipset_name(name)
            pre.append(_create(tmp, want))
            pre += [f"add {tmp} {m}" for m in sorted(want.members)]
            pre.append(f"swap {tmp} {name}")
            pre.append(f"destroy {tmp}")
    for name in sorted(current.sets):
        if name not in desired.ipsets and not name.startswith(TEMP_IPSET_PREFIX):
            post.append(f"destroy {name}")
    text = lambda lines: "\n".join(lines) + "\n" if lines else ""  # noqa: E731
    return text(pre), text(post), changed


def apply_to_cache(desired: Dataplane) -> KernelSets:
    return KernelSets(dict(desired.ipsets))


def _run(args: list[str], stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise IpsetError("ipset is not installed (Debian package ipset)") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise IpsetError(f"{shlex.join(args)} failed: {detail}")
    return proc.stdout


def read_sets() -> KernelSets:
    return parse_save(_run([IPSET, "save"]))


def restore(text: str) -> None:
    """`ipset restore` of `text` (10,000 members: 400 kB, written in large blocks, see
    kernel.fed)."""
    if not text:
        return
    try:
        code, output = run_fed([IPSET, "restore"], text)
    except FileNotFoundError as exc:
        raise IpsetError("ipset is not installed (Debian package ipset)") from exc
    if code != 0:
        raise IpsetError(f"ipset restore failed: {output.strip() or f'exit status {code}'}")
