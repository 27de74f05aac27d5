"""The filter table's streamed commit (agent.dataplane.apply.ApplySession) against the real
`iptables-legacy-restore`, in a namespace of our own: what the calculation hands over while
it runs and what `finish` adds is one commit the tool accepts, and a stream that fails or
is abandoned half-way changes nothing and leaves no process behind."""

from __future__ import annotations

import copy
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from agent.calc.calculator import Calculator
from agent.calc.model import IptRule, make_chain
from agent.dataplane import iptables
from agent.dataplane.apply import Applier
from kernel.ns import run_in_netns
from tests.unit.test_agent_calc import seed_inputs

ENDPOINTS_PER_NET = 1000  # 2,000 local endpoints: 4,000 chains, pieces of 256 kB streamed


@pytest.fixture
def netns():
    name = "cstrm" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def saved(ns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "iptables-legacy-save", "-t", "filter"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def table(ns: str) -> list[str]:
    """The filter table's chains and rules (save's comment lines carry a timestamp)."""
    return [line for line in saved(ns).splitlines() if not line.startswith("#")]


def restores_running() -> list[int]:
    """Our children that are an iptables-legacy-restore."""
    out = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if "iptables-legacy-restore" in Path(f"/proc/{pid}/cmdline").read_text():
                    out.append(int(pid))
            except OSError:
                pass
    return out


def apply_streamed(ns: str, applier: Applier, inputs, full: bool = True, extra=None):
    """One apply as the agent does it: the calculation streams into the session."""

    def go():
        with applier.begin(full) as session:

            def emit(chain):
                session.chain(chain)
                if extra is not None and chain.name.startswith("cali-fw-"):
                    session.chain(extra)  # handed over like any other chain

            dp = Calculator().calculate(inputs, emit=emit)
            return dp, session.finish(dp)

    return run_in_netns(ns, go)


def test_streamed_apply_programs_exactly_the_calculation_then_only_its_changes(netns):
    applier = Applier()
    inputs = seed_inputs(n_per_net=ENDPOINTS_PER_NET)
    dp, result = apply_streamed(netns, applier, inputs)
    assert result.ok, result.errors
    kernel = iptables.parse_save(saved(netns))
    assert kernel.chains == {name: chain.hashes for name, chain in dp.chains.items()}
    assert kernel.builtins["FORWARD"][0][0] == dp.hooks["FORWARD"].hashes[0]
    assert result.chains_rewritten == len(dp.chains) > 4000

    changed = copy.deepcopy(inputs)
    local = [ep for ep in changed.endpoints if ep.spec.node == changed.node]
    changed.endpoints.remove(local[0])  # one endpoint gone: its chains are stale
    dp2, result2 = apply_streamed(netns, applier, changed, full=False)
    assert result2.ok, result2.errors
    kernel = iptables.parse_save(saved(netns))
    assert kernel.chains == {name: chain.hashes for name, chain in dp2.chains.items()}
    assert result2.chains_deleted == 2 and 0 < result2.chains_rewritten < 40
    assert restores_running() == []


def test_a_chain_the_tool_refuses_mid_stream_changes_nothing_and_says_why(netns):
    applier = Applier()
    inputs = seed_inputs(n_per_net=ENDPOINTS_PER_NET)
    apply_streamed(netns, applier, inputs)
    before = table(netns)

    changed = copy.deepcopy(inputs)
    changed.endpoints = changed.endpoints[3:]
    bogus = make_chain("cali-tw-bogus", [IptRule(("-p", "tcp"), ("-j", "NO-SUCH-TARGET"))])
    _, result = apply_streamed(netns, applier, changed, full=False, extra=bogus)
    assert not result.ok
    assert "iptables-legacy-restore --noflush failed" in result.errors[0]
    assert "NO-SUCH-TARGET" in result.errors[0]
    assert table(netns) == before  # not one chain of the good ones either
    assert restores_running() == []
    assert applier.filter is None  # the next apply reads the kernel again

    _, result = apply_streamed(netns, applier, changed, full=False)
    assert result.full and result.ok, result.errors


def test_a_calculation_that_fails_half_way_leaves_the_table_and_no_process(netns):
    applier = Applier()
    inputs = seed_inputs(n_per_net=ENDPOINTS_PER_NET)
    before = table(netns)  # a fresh table: every chain is streamed
    started = []

    def go():
        with applier.begin(full=True) as session:

            def emit(chain):
                session.chain(chain)
                if session.commit is not None and session.commit.proc is not None:
                    started.append(True)
                    raise RuntimeError("the calculation broke")

            Calculator().calculate(inputs, emit=emit)

    with pytest.raises(RuntimeError, match="the calculation broke"):
        run_in_netns(netns, go)
    assert started  # the restore was running and had input when it was abandoned
    assert table(netns) == before
    assert restores_running() == []
