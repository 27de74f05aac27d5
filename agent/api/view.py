"""What the node API reads from the running agent, as a Protocol: agent.main.Agent is one,
and a test can hand the API a small fake instead (tests/unit/fake_agent.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agent.flows.enrich import SyncedAgent

if TYPE_CHECKING:  # annotations only: agent.sync loads the etcd client (~84 ms)
    from agent.api.metrics import Histogram
    from agent.calc.model import Dataplane
    from agent.status import Health
    from agent.sync import ClusterCache


@runtime_checkable
class AgentView(SyncedAgent, Protocol):
    """The agent as the node API sees it; the API only reads these."""

    nodename: str
    cache: ClusterCache  # the synced etcd state: endpoints, policies, in_sync, revision
    health: Health
    desired: Dataplane | None  # the dataplane last calculated and applied; None before
    apply_histogram: Histogram  # change -> dataplane applied, seconds
    resyncs: int  # full reads of the kernel state so far

    def endpoint_status(self) -> dict[str, dict[str, Any]]:
        """Status key -> {status, namespace, name, interface, since} per local endpoint."""
        ...

    def bgp_status(self) -> dict[str, Any]:
        """backend, running, router_id, peers (calico.bgp.PeerStatus dicts), error."""
        ...
