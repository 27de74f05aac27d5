"""A node API dataplane answer for console tests, made the way the agent makes it: the seed
cluster (tests/unit/console/fixtures.py) calculated for calico-01 by agent.calc, saved with
invented counters, joined by agent.api.dataplane. `bump` adds packets to the rules of one
chain, as traffic through it would."""

from __future__ import annotations

import json
from typing import Any

from agent.api.counters import chain_counters
from agent.api.dataplane import dataplane_view
from agent.calc.calculator import calculate
from agent.calc.model import Inputs
from calico.resources import GlobalNetworkPolicy, NetworkPolicy, Profile, WorkloadEndpoint
from tests.unit.test_dataplane_view import save_with_counters

from .fixtures import seed_state

NODE = "calico-01"
ENDPOINT = "calico--01-cni-6876aae5" + "0" * 24 + "-eth0"
IFACE = "cali6876aae5000"


def seed_inputs() -> Inputs:
    state = seed_state()
    return Inputs(
        node=NODE,
        profiles={p.metadata.name: p for p in state.of_kind(Profile)},
        policies=[*state.of_kind(GlobalNetworkPolicy), *state.of_kind(NetworkPolicy)],
        endpoints=list(state.of_kind(WorkloadEndpoint)),
    )


def dataplane_doc(
    endpoint: str | None = None, bump: dict[str, int] | None = None
) -> dict[str, Any]:
    dp = calculate(seed_inputs())
    kernel = chain_counters(save_with_counters(dp))
    for chain, extra in (bump or {}).items():
        for r in kernel[chain]:
            r["packets"] += extra
            r["bytes"] += extra * 60
    doc = dataplane_view(dp, kernel, endpoint)
    return json.loads(json.dumps({"node": NODE, **doc}))  # as it comes off the wire
