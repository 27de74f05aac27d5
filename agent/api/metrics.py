"""The node API's Prometheus text: the agent's apply-time histogram, dataplane sizes, sync
state and the flow collector's counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.api.view import AgentView
    from agent.flows.collector import FlowCollector


@dataclass
class Histogram:
    buckets: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.n += 1
        self.total += value
        for i, upper in enumerate(self.buckets):
            if value <= upper:
                self.counts[i] += 1

    def lines(self, name: str, help_text: str) -> list[str]:
        out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for upper, count in zip(self.buckets, self.counts, strict=True):
            out.append(f'{name}_bucket{{le="{upper}"}} {count}')
        out += [
            f'{name}_bucket{{le="+Inf"}} {self.n}',
            f"{name}_sum {self.total:.6f}",
            f"{name}_count {self.n}",
        ]
        return out


def metrics_text(agent: AgentView, flows: FlowCollector | None) -> str:
    """/metrics in the Prometheus text format."""
    h = agent.health.to_dict()
    desired = agent.desired
    counts = desired.summary() if desired is not None else {}
    lines = agent.apply_histogram.lines(
        "calico_agent_apply_seconds", "Time from a change to the dataplane applied."
    )
    gauges = {
        "calico_agent_rules": counts.get("rules", 0),
        "calico_agent_chains": counts.get("chains", 0),
        "calico_agent_ipsets": counts.get("ipsets", 0),
        "calico_agent_ipset_members": counts.get("ipset_members", 0),
        "calico_agent_endpoints": counts.get("endpoints", 0),
        "calico_agent_in_sync": int(bool(h.get("in_sync"))),
        "calico_agent_resyncs_total": agent.resyncs,
    }
    for name, value in gauges.items():
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
    if flows is not None:
        stats = flows.stats()
        lines += [
            "# TYPE calico_agent_denied_packets_total counter",
            f"calico_agent_denied_packets_total {stats.get('denied', 0)}",
        ]
        lines += [
            "# TYPE calico_agent_allowed_flows_total counter",
            f"calico_agent_allowed_flows_total {stats.get('allowed', 0)}",
        ]
    return "\n".join(lines) + "\n"
