"""The isolation matrix as data: who should reach whom (policy) beside who did (probes).

Rows are sources, columns destinations, either pods or networks. A pod is one target per
WorkloadEndpoint (per interface: a pod on two networks is two rows, each with its own
address and profiles, probed from its own address). "Expected" comes from the core policy
evaluation (calico/policy.py, the same truth the agent renders); "observed" from probes
through the node API. A wrong cell carries the command that reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from calico.keys import key_of
from calico.policy import Flow, PolicySet, Verdict, evaluate
from calico.resources import WorkloadEndpoint

ALLOWED, DENIED, UNKNOWN = ".", "X", "?"


@dataclass(frozen=True)
class Target:
    """One end of a probe: a pod's endpoint (one interface) or a network on a node."""

    label: str  # what the matrix prints on the axis
    node: str
    network: str
    address: str = ""  # the endpoint's address; empty for a "fresh pod on network" source
    pod: str | None = None  # pod uuid to probe from (None: a fresh pod on `network`)
    endpoint: WorkloadEndpoint | None = None
    interface: str = ""  # the pod's interface for this endpoint (eth0, eth1, ...)


@dataclass
class Cell:
    source: Target
    destination: Target
    expected: str = UNKNOWN
    observed: str = UNKNOWN
    verdict: Verdict | None = None
    detail: str = ""  # probe outcome, e.g. "timed out after 3.0 s"
    note: str = ""  # why there is no policy verdict although both ends are endpoints
    staged: str = ""  # what-if: the expected mark after the staged changes ("" = none staged)
    staged_verdict: Verdict | None = None

    @property
    def flips(self) -> bool:
        """The staged changes would turn this cell's expected verdict around."""
        return (
            bool(self.staged)
            and UNKNOWN not in (self.staged, self.expected)
            and (self.staged != self.expected)
        )

    @property
    def wrong(self) -> bool:
        return UNKNOWN not in (self.expected, self.observed) and self.expected != self.observed

    def reproduce(self, port: int, timeout: int = 3) -> str:
        """The shell command an operator runs to see this cell with their own eyes."""
        net = self.source.network
        url = f"http://{self.destination.address}:{port}/"
        return (
            f"calico-lab exec {self.source.node} -- rkt run --net={net} docker://busybox "
            f"--exec=/bin/wget -- -T {timeout} -O - {url}"
        )


@dataclass
class Matrix:
    sources: list[Target]
    destinations: list[Target]
    port: int = 80
    protocol: str = "TCP"
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)

    def cell(self, i: int, j: int) -> Cell:
        return self.cells[(i, j)]

    @property
    def staged(self) -> bool:
        return any(c.staged for c in self.cells.values())

    def flips(self) -> list[tuple[int, int]]:
        return sorted(k for k, c in self.cells.items() if c.flips)

    def summary(self) -> str:
        judged = [c for c in self.cells.values() if UNKNOWN not in (c.expected, c.observed)]
        wrong = sum(1 for c in judged if c.wrong)
        pending = len(self.cells) - len(judged)
        text = f"{len(judged) - wrong} correct, {wrong} wrong"
        return text + (f", {pending} pending" if pending else "")

    def probe_requests(self) -> list[tuple[tuple[int, int], dict[str, Any]]]:
        """What to ask the node agents, one request per cell (grouped by node by the caller)."""
        out = []
        for (i, j), cell in self.cells.items():
            src, dst = cell.source, cell.destination
            req = {
                "node": src.node,
                "pod": src.pod,
                "network": None if src.pod else src.network,
                "address": dst.address,
                "port": self.port,
            }
            if src.pod and src.address:
                req["source_ip"] = src.address  # from this endpoint's interface
            out.append(((i, j), req))
        return out

    def record(self, key: tuple[int, int], result: dict[str, Any]) -> None:
        """A probe answered: connected / refused / timed out (or an error)."""
        cell = self.cells[key]
        outcome = result.get("result", "error")
        cell.observed = (
            ALLOWED
            if outcome in ("connected", "refused")
            else (DENIED if outcome == "timed out" else UNKNOWN)
        )
        took = result.get("seconds")
        cell.detail = f"{outcome}" + (
            f" after {took:.2f} s" if isinstance(took, int | float) else ""
        )
        if result.get("error"):
            cell.detail += f": {result['error']}"


def build(
    policy_set: PolicySet,
    sources: list[Target],
    destinations: list[Target],
    port: int = 80,
    protocol: str = "TCP",
) -> Matrix:
    """Every source × destination cell with its expected verdict filled in.

    Two endpoints of one pod (or one endpoint and itself) share a network namespace: the
    connection goes over the pod's loopback and never meets a policy, so it is expected
    allowed whatever the policies say."""
    matrix = Matrix(sources, destinations, port, protocol)
    for i, src in enumerate(sources):
        for j, dst in enumerate(destinations):
            cell = Cell(src, dst)
            if src.pod is not None and src.pod == dst.pod and src.node == dst.node:
                cell.expected = ALLOWED
                cell.note = SAME_POD
            elif dst.endpoint is not None and dst.address:
                source_end: WorkloadEndpoint | str = src.endpoint or _network_stand_in(src)
                flow = Flow(
                    source_end,
                    dst.endpoint,
                    protocol,
                    dst_port=port,
                    src_ip=src.address if src.endpoint is not None and src.address else None,
                    dst_ip=dst.address,
                )
                verdict = evaluate(policy_set, flow)
                cell.verdict = verdict
                cell.expected = ALLOWED if verdict.allowed else DENIED
            matrix.cells[(i, j)] = cell
    return matrix


def stage_into(matrix: Matrix, after: PolicySet) -> Matrix:
    """Fill every cell's `staged` mark: the same cells built again on the policy set after
    the staged changes (the same `build`, so the same evaluator), each target's endpoint
    replaced by its staged version (a label edit changes the endpoint itself). A target
    whose endpoint the staging deletes gets `?`."""
    by_key = {key_of(ep): ep for ep in after.endpoints}

    def restaged(t: Target) -> Target:
        if t.endpoint is None:
            return t
        return replace(t, endpoint=by_key.get(key_of(t.endpoint)))

    again = build(
        after,
        [restaged(t) for t in matrix.sources],
        [restaged(t) for t in matrix.destinations],
        matrix.port,
        matrix.protocol,
    )
    for key, cell in matrix.cells.items():
        other = again.cells[key]
        cell.staged, cell.staged_verdict = other.expected, other.verdict
    return matrix


def clear_staged(matrix: Matrix) -> Matrix:
    for cell in matrix.cells.values():
        cell.staged, cell.staged_verdict = "", None
    return matrix


SAME_POD = (
    "Both ends are in the same pod: the connection stays inside the pod's network namespace "
    "(over its loopback), so no Calico policy sees it and it is always allowed."
)


def _network_stand_in(target: Target) -> WorkloadEndpoint:
    """A source that is 'a fresh pod on network N': an endpoint with only that profile."""
    from calico.resources import Metadata, WorkloadEndpointSpec

    return WorkloadEndpoint(
        metadata=Metadata(name=f"probe-{target.node}-{target.network}", namespace="default"),
        spec=WorkloadEndpointSpec(
            orchestrator="cni",
            node=target.node,
            profiles=[target.network],
            ip_networks=[],
            endpoint="eth0",
        ),
    )


def render_text(matrix: Matrix) -> list[str]:
    """The matrix as text lines: `expected/observed` per cell, wrong cells marked with !"""
    width = max([len(t.label) for t in matrix.sources] + [6])
    col = max([len(t.label) for t in matrix.destinations] + [5])
    lines = [" " * width + " │ " + " ".join(t.label.ljust(col) for t in matrix.destinations)]
    lines.append("─" * width + "─┼─" + "─" * ((col + 1) * len(matrix.destinations)))
    for i, src in enumerate(matrix.sources):
        cells = []
        for j in range(len(matrix.destinations)):
            c = matrix.cell(i, j)
            mark = "!" if c.wrong else ("*" if c.flips else " ")
            now = f"{c.expected}>{c.staged}" if c.staged else c.expected
            cells.append(f"{now}/{c.observed}{mark}".ljust(col))
        lines.append(src.label.ljust(width) + " │ " + " ".join(cells))
    lines.append("")
    if matrix.staged:
        lines.append(
            matrix.summary() + f", {len(matrix.flips())} would flip   (now>after/observed: "
            ". allowed, X denied, ? unknown; ! wrong, * flips)"
        )
    else:
        lines.append(
            matrix.summary() + "   (expected/observed: . allowed, X denied, ? unknown; ! wrong)"
        )
    return lines
