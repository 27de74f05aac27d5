"""Flow enrichment from the agent's synced cache: which endpoint an address is, and which
policy or profile rule allowed a flow.

Both are closures the collector calls per record (agent.flows.collector's `lookup` and
`allow_resolver`). Each rebuilds its table only when the cache's revision moves, so a
record costs one dict lookup (or one policy evaluation) and never a walk of the resources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from agent.flows.collector import AllowResolver, EndpointLookup
from agent.flows.records import FlowRecord
from calico.policy import Flow, PolicySet, evaluate
from calico.resources import WorkloadEndpoint

if TYPE_CHECKING:  # for the annotation only: agent.sync loads the etcd client (~84 ms)
    from agent.sync import ClusterCache


class SyncedAgent(Protocol):
    """What enrichment reads from the agent: its node and its synced cache (the node API's
    AgentView includes both)."""

    nodename: str
    cache: ClusterCache


def agent_lookup(agent: SyncedAgent) -> EndpointLookup:
    """ip -> endpoint info for flow records, from the agent's synced cache."""
    cache_state: dict[str, Any] = {"rev": -1, "map": {}}

    def lookup(ip: str) -> dict[str, Any] | None:
        cache = agent.cache
        if cache_state["rev"] != cache.revision:
            table = {}
            for res in list(cache.resources.values()):
                if isinstance(res, WorkloadEndpoint):
                    info = {
                        "name": res.metadata.name,
                        "namespace": res.metadata.namespace,
                        "networks": tuple(res.spec.profiles),
                        "profiles": tuple(res.spec.profiles),
                        "pod": res.spec.container_id,
                    }
                    for net in res.spec.ip_networks:
                        table[net.split("/")[0]] = info
            cache_state.update(rev=cache.revision, map=table)
        return cache_state["map"].get(ip)

    return lookup


def _local(end: Any, node: str | None) -> bool:
    """Whether a flow end (an endpoint, or a bare address) is an endpoint on `node`."""
    spec = getattr(end, "spec", None)
    return spec is not None and getattr(spec, "node", None) == node


def agent_allow_resolver(agent: SyncedAgent) -> AllowResolver:
    """Names the policy/profile rule that allowed a flow (the same evaluation the agent renders)."""
    memo: dict[str, Any] = {"rev": -1, "set": None}

    def resolve(record: FlowRecord) -> str | None:
        cache = agent.cache
        if memo["rev"] != cache.revision:
            memo.update(
                rev=cache.revision, set=PolicySet.from_resources(list(cache.resources.values()))
            )
        ps = memo["set"]
        src = ps.endpoint_for_ip(record.src) or record.src
        dst = ps.endpoint_for_ip(record.dst) or record.dst
        proto = str(record.protocol).upper()
        if proto not in ("TCP", "UDP", "ICMP", "SCTP"):
            return None
        port = record.dport if proto in ("TCP", "UDP", "SCTP") else None
        verdict = evaluate(ps, Flow(src, dst, proto, dst_port=port))
        # A node enforces egress for its own sources and ingress for its own destinations:
        # name the rule this node applied (a flow allowed out of here may still be denied
        # on the destination's node, which reports that deny itself).
        node = agent.nodename
        enforced = [
            d for d in verdict.directions
            if (d.direction == "Egress" and _local(src, node))
            or (d.direction == "Ingress" and _local(dst, node))
        ]  # fmt: skip
        if not enforced:
            return None
        here = next((d for d in enforced if d.direction == "Ingress"), enforced[0])
        return str(here.decision)

    return resolve
