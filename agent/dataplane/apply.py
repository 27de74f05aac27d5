"""Bring the kernel to a desired `Dataplane`, writing only the difference.

Order within one apply: ipsets that are new or changed (a rule must never name a missing
set), then ONE `iptables-legacy-restore --noflush` commit, then ipsets nobody references any
more, then tunl0's address, MTU and state (when an IPIP pool exists, `agent.dataplane.tunnel`),
then routes (`ip -batch`) and the host-side sysctls of new interfaces. The agent's applies
go through an `ApplySession`: the restore is started while the calculation runs and fed the
chains that need no ipset as they are made, so its parsing overlaps the calculation; the
commit itself stays where it was in this order.

Between full reads the applier trusts its cache of what it last wrote, so an incremental
apply costs one restore of the changed chains and nothing else. `apply(..., full=True)`
(every refresh interval, after any failure, at start) reads the kernel again, which is how
drift is found: a rule deleted by hand changes the chain's hash list, so the chain is
rewritten; a stale chain, set or route left by a killed predecessor is removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agent.calc.model import Chain, Dataplane
from agent.dataplane import ipsets, iptables, routes, tunnel


@dataclass
class ApplyResult:
    full: bool
    ms: float = 0.0
    chains_rewritten: int = 0
    chains_deleted: int = 0
    ipsets_rewritten: int = 0
    ipsets_deleted: int = 0
    routes_changed: int = 0
    interfaces_configured: int = 0
    tunnel_changes: int = 0
    errors: list[str] = field(default_factory=list)  # iptables/ipset: retried soon
    route_errors: list[str] = field(default_factory=list)  # e.g. a node not reachable yet

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def changed(self) -> bool:
        return bool(
            self.chains_rewritten
            or self.chains_deleted
            or self.ipsets_rewritten
            or self.ipsets_deleted
            or self.routes_changed
            or self.interfaces_configured
            or self.tunnel_changes
        )


class Applier:
    def __init__(self) -> None:
        self.filter: iptables.KernelFilter | None = None
        self.sets: ipsets.KernelSets | None = None
        self.routes: routes.KernelRoutes | None = None
        self.ifindex: dict[str, int] = {}  # interfaces configured, by ifindex
        self.missing_ifaces: set[str] = set()  # endpoints whose veth is not there yet
        self.tunnel: tuple[bool, str | None] | None = None  # (ipip, address) last made so
        self.tunnel_index: int | None = None  # tunl0's ifindex then (a new one: re-read routes)

    def invalidate(self) -> None:
        self.filter = self.sets = self.routes = None

    def apply(self, desired: Dataplane, full: bool = False) -> ApplyResult:
        with self.begin(full) as session:
            return session.finish(desired)

    def begin(self, full: bool = False) -> ApplySession:
        """An apply whose filter-table input may be handed over chain by chain while the
        calculation runs (`session.chain`), then completed by `session.finish(desired)`."""
        return ApplySession(self, full)

    def _apply_tunnel(self, desired: Dataplane, full: bool, result: ApplyResult) -> None:
        want = (desired.ipip, desired.tunnel_address)
        if not full and self.tunnel == want:
            return
        if not desired.ipip and self.tunnel is None and not full:
            return
        index, changes, errors = tunnel.ensure(*want)
        if index != self.tunnel_index:
            self.routes = None  # a new tunl0 came without the routes through it
        self.tunnel_index = index
        result.tunnel_changes = changes
        result.errors += errors
        self.tunnel = None if errors else want

    def retry_interfaces(self, desired: Dataplane) -> ApplyResult:
        """Look again for endpoint veths that were missing; configure and route new ones."""
        started = time.perf_counter()
        result = ApplyResult(full=False)
        try:
            self._apply_routes(desired, False, result)
        except (routes.RouteError, OSError, ValueError) as exc:
            self.routes = None
            result.route_errors.append(str(exc))
        result.ms = (time.perf_counter() - started) * 1000
        return result

    def _apply_routes(self, desired: Dataplane, full: bool, result: ApplyResult) -> None:
        wanted = {ep.iface for ep in desired.endpoints}
        check = wanted if full else (wanted - set(self.ifindex)) | self.missing_ifaces
        present = routes.present_interfaces(check)
        for iface in list(self.ifindex):
            if iface not in wanted or (iface in check and iface not in present):
                del self.ifindex[iface]
        new_ifaces = {i for i, idx in present.items() if self.ifindex.get(i) != idx}
        for iface in sorted(new_ifaces):
            errors = routes.configure_interface(iface)
            if errors:
                result.route_errors += errors
            else:
                self.ifindex[iface] = present[iface]
                result.interfaces_configured += 1
        self.missing_ifaces = wanted - set(self.ifindex) - set(present)
        if full or self.routes is None or new_ifaces:
            self.routes = routes.read_routes()
        lines = routes.plan(desired, self.routes, set(self.ifindex) | set(present))
        if lines:
            errors = routes.apply(lines)
            result.routes_changed = len(lines) - sum(e.startswith("Command failed") for e in errors)
            result.route_errors += errors
            self.routes = routes.read_routes()


class ApplySession:
    """One apply in three steps: `Applier.begin` reads the kernel (on a full apply), the
    calculation passes each chain it makes to `chain` (streamed to the restore, see
    `iptables.StreamedCommit`), `finish(desired)` does everything else in the module's
    order. As a context manager, an exception before `finish` kills the restore unseen.

    `ApplyResult.ms` is the kernel's own share: the reads here and `finish`; what the
    stream costs the calculation (writes that wait for a full pipe) is the caller's."""

    def __init__(self, applier: Applier, full: bool):
        self.applier = applier
        a = applier
        self.full = full or a.filter is None or a.sets is None or a.routes is None
        self.result = ApplyResult(full=self.full)
        self.commit: iptables.StreamedCommit | None = None
        self.error: Exception | None = None
        started = time.perf_counter()
        try:
            if self.full:
                routes.ensure_forwarding()
                a.filter = iptables.read_filter()
                a.sets = ipsets.read_sets()
            assert a.filter is not None
            self.commit = iptables.StreamedCommit(a.filter)
        except (iptables.IptablesError, ipsets.IpsetError, OSError) as exc:
            self.error = exc
        self.kernel_s = time.perf_counter() - started

    def __enter__(self) -> ApplySession:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.commit is not None:
            self.commit.abort()  # after finish: nothing left to stop

    def chain(self, chain: Chain) -> None:
        """The calculation's sink: one chain, as it is made."""
        if self.commit is None:
            return
        try:
            self.commit.chain(chain)
        except (iptables.IptablesError, OSError) as exc:
            self.commit.abort()
            self.commit, self.error = None, exc

    def finish(self, desired: Dataplane) -> ApplyResult:
        started = time.perf_counter()
        a, result = self.applier, self.result
        try:
            if self.error is not None:
                raise self.error
            assert a.filter is not None and a.sets is not None and self.commit is not None
            pre, post, sets_changed = ipsets.plan(desired, a.sets)
            ipsets.restore(pre)
            changed, stale = self.commit.finish(desired)
            a.filter = iptables.apply_to_cache(desired, a.filter)
            ipsets.restore(post)
            a.sets = ipsets.apply_to_cache(desired)
            result.chains_rewritten, result.chains_deleted = len(changed), len(stale)
            result.ipsets_rewritten = len(sets_changed)
            result.ipsets_deleted = post.count("destroy ")
        except (iptables.IptablesError, ipsets.IpsetError, OSError) as exc:
            if self.commit is not None:
                self.commit.abort()
            a.invalidate()
            result.errors.append(str(exc))
        try:
            a._apply_tunnel(desired, self.full, result)
        except (OSError, ValueError) as exc:
            a.tunnel = None
            result.errors.append(f"tunl0: {exc}")
        try:
            a._apply_routes(desired, self.full, result)
        except (routes.RouteError, OSError, ValueError) as exc:
            a.routes = None
            result.route_errors.append(str(exc))
        result.ms = (self.kernel_s + time.perf_counter() - started) * 1000
        return result
