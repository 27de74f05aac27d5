"""Where a rendered iptables rule came from: which policy or profile, which direction, which
rule of it. The one owner of that fact.

The renderer (`agent.calc.rules`, `agent.calc.endpoints`) stamps a `RuleOrigin` on every rule
it makes from a Calico rule, and on the drops that end a policy tier or an endpoint's
profiles; the NFLOG prefix of each deny is made from the same origin (`nflog_rule`), so the
flow log's "denied by" and the node API's "this rule came from" cannot disagree. The kernel
never sees an origin: it lives beside the rule in the agent's desired dataplane, and the node
API joins it to the kernel's counters by the rule's `cali:<hash>` comment (agent/api/
dataplane.py). Putting it into the comment instead would make every rule longer and turn a
renamed policy into a rewrite of every chain that uses it.

As data an origin is the flow log's `rule` dict (`agent.flows.prefix.parse_prefix`):
``{"kind": "policy"|"profile"|"default", "name", "direction": "ingress"|"egress",
"rule_index": int|None}``, so a reader matches a denied flow to its rule by equality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.flows.prefix import DIRECTIONS, KINDS, nflog_prefix

_SHORT_DIRECTION = {long: short for short, long in DIRECTIONS.items()}


@dataclass(frozen=True)
class RuleOrigin:
    """A rule's source: `kind` one of the prefix kinds (`pol`, `pro`, `def`), `name` the
    policy's `ns/name` (a global policy's name) or the profile's, several joined by `,` for
    an end-of-tier or default drop, `direction` ingress/egress (either case, kept lower),
    `index` the rule's position
    in the policy's or profile's ingress/egress list, None for an end-of-chain drop."""

    kind: str
    name: str
    direction: str
    index: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"origin kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        direction = self.direction.lower()  # calico.policy says "Ingress", the flow log "ingress"
        if direction not in _SHORT_DIRECTION:
            raise ValueError(f"origin direction must be ingress or egress: {self.direction!r}")
        object.__setattr__(self, "direction", direction)

    def nflog_prefix(self) -> str:
        """The flow log prefix of a deny with this origin (agent.flows.prefix's contract)."""
        return nflog_prefix(
            _SHORT_DIRECTION[self.direction], self.kind, self.name or "-", self.index
        )

    def to_dict(self) -> dict[str, Any]:
        """The flow log's `rule` shape, so a denied flow's rule equals its origin's dict."""
        return {
            "kind": KINDS[self.kind],
            "name": self.name,
            "direction": self.direction,
            "rule_index": self.index,
        }
