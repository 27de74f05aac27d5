"""A small stand-in for agent.main.Agent that implements the node API's AgentView: an empty
synced cache, fresh health, nothing applied yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.api.metrics import Histogram
from agent.calc.model import Dataplane
from agent.status import Health
from agent.sync import ClusterCache


@dataclass
class FakeAgent:
    nodename: str
    cache: ClusterCache = field(default_factory=ClusterCache)
    health: Health = field(init=False)
    desired: Dataplane | None = None
    apply_histogram: Histogram = field(default_factory=Histogram)
    resyncs: int = 0
    status: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.health = Health(self.nodename)

    def endpoint_status(self) -> dict[str, dict[str, Any]]:
        return self.status
