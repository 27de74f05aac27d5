"""Moving through the tables as k9s does, as plain data: drill-down, sorting, marks.

- `drill(view, row, state)`: what `enter` opens from a row: a node's pods, a pod's
  endpoints, an endpoint's policies and profiles (in the order Calico asks them), a
  network's pods, the endpoints a profile or a policy applies to. The result is the
  target view and a `Scope` (the rows it keeps, and the breadcrumb's words); `Trail` is
  the stack `esc` walks back.
- `Arrangement`: the scope, then the `/` filter, then the sort, applied to a view's rows
  in that one order wherever rows are shown.
- `sort_rows`: by one column, in natural order (`calico-2` before `calico-10`,
  `192.168.0.9` before `192.168.0.10`), empty cells last; shift+letter picks the column
  whose header starts with that letter (`sort_column`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from calico.policy import PolicySet, applicable_policies
from calico.resources import GlobalNetworkPolicy, NetworkPolicy, Profile, WorkloadEndpoint
from console.model import VIEWS, ClusterState, Row, RowFilter, View

BREADCRUMB = " › "


@dataclass(frozen=True)
class Scope:
    """The rows a drilled-into view keeps; `label` is the breadcrumb (`pod 40ebff0f`)."""

    label: str
    keep: Callable[[Row], bool]


@dataclass(frozen=True)
class Sort:
    column: int
    reverse: bool = False


@dataclass(frozen=True)
class Arrangement:
    scope: Scope | None = None
    row_filter: RowFilter = field(default_factory=RowFilter)
    sort: Sort | None = None

    def apply(self, rows: Iterable[Row]) -> list[Row]:
        kept = [r for r in rows if self.scope.keep(r)] if self.scope else list(rows)
        kept = self.row_filter.apply(kept)
        if self.sort is not None:
            kept = sort_rows(kept, self.sort.column, self.sort.reverse)
        return kept


# ---------------------------------------------------------------- sorting

_PARTS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """`calico-10` after `calico-2`; numbers compare as numbers, the rest case-blind."""
    parts = _PARTS.split(text.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "")


def sort_rows(rows: list[Row], column: int, reverse: bool = False) -> list[Row]:
    """Rows by one column; empty cells last whichever way round (a stable sort)."""
    filled = [r for r in rows if column < len(r.cells) and r.cells[column]]
    empty = [r for r in rows if not (column < len(r.cells) and r.cells[column])]
    filled.sort(key=lambda r: natural_key(r.cells[column]), reverse=reverse)
    return filled + empty


def sort_column(columns: tuple[str, ...], letter: str) -> int | None:
    """The first column whose header starts with `letter` (shift+letter sorts by it)."""
    for i, name in enumerate(columns):
        if name[:1].upper() == letter.upper():
            return i
    return None


def next_sort(current: Sort | None, column: int) -> Sort:
    """The same column again reverses it; another column sorts ascending."""
    if current is not None and current.column == column:
        return replace(current, reverse=not current.reverse)
    return Sort(column)


def sort_text(view: View, sort: Sort | None) -> str:
    if sort is None or sort.column >= len(view.columns):
        return ""
    return f"sort {view.columns[sort.column]} {'↓' if sort.reverse else '↑'}"


# ---------------------------------------------------------------- drilling down

APPLIES_COLUMNS = ("#", "DIRECTION", "KIND", "NAME", "NAMESPACE", "ORDER", "SELECTOR")


def applies_rows(state: ClusterState, endpoint_key: str) -> list[Row]:
    """An endpoint's policies, in the order Calico asks them, per direction, then its
    profiles (asked last, in the order the endpoint lists them)."""
    wep = state.resources.get(endpoint_key)
    if not isinstance(wep, WorkloadEndpoint):
        return []
    pset = PolicySet.from_resources(state.resources.values())
    rows = []
    for direction in ("Ingress", "Egress"):
        asked = applicable_policies(pset, wep, direction)
        for i, pol in enumerate(asked, 1):
            spec = pol.spec
            rows.append(
                Row(
                    key=f"applies/{direction}/{pol.KIND}/{pol.metadata.namespace or ''}/"
                    f"{pol.metadata.name}",
                    cells=(
                        str(i),
                        direction,
                        pol.KIND,
                        pol.metadata.name,
                        ""
                        if isinstance(pol, GlobalNetworkPolicy)
                        else pol.metadata.namespace or "",
                        "" if spec.order is None else f"{spec.order:g}",
                        spec.selector or "all()",
                    ),  # fmt: skip
                    resource=pol,
                )
            )
        for j, name in enumerate(wep.spec.profiles, len(asked) + 1):
            prof = pset.profiles.get(name)
            rows.append(
                Row(
                    key=f"applies/{direction}/Profile//{name}",
                    cells=(
                        str(j),
                        direction,
                        "Profile",
                        name,
                        "",
                        "",
                        "(the endpoint's profile)" if prof else "(missing)",
                    ),  # fmt: skip
                    state="" if prof else "error",
                    resource=prof,
                )
            )
    return rows


def applies_view(endpoint_key: str, title: str) -> View:
    return View(
        name="applies",
        title=f"Policies and profiles of {title}",
        columns=APPLIES_COLUMNS,
        rows=lambda state: applies_rows(state, endpoint_key),
        empty_hint="No policy selects this endpoint and it has no profile.",
    )


def _endpoints_under(state: ClusterState, wanted: Callable[[WorkloadEndpoint], bool]) -> set[str]:
    return {
        key
        for key, res in state.resources.items()
        if isinstance(res, WorkloadEndpoint) and wanted(res)
    }


def drill(view: View, row: Row, state: ClusterState) -> tuple[View, Scope | None] | None:
    """What `enter` on `row` of `view` opens, or None when nothing lies below it."""
    name, res, data = view.name, row.resource, row.data or {}
    if name == "nodes":
        node = row.cells[0]
        return VIEWS["pods"], Scope(node, lambda r: (r.data or {}).get("node") == node)
    if name == "pods" and data.get("uuid"):
        uuid = str(data["uuid"])

        def of_pod(r: Row) -> bool:
            return isinstance(r.resource, WorkloadEndpoint) and r.resource.spec.container_id == uuid

        return VIEWS["endpoints"], Scope(f"pod {uuid[:8]}", of_pod)
    if name == "endpoints" and isinstance(res, WorkloadEndpoint):
        key = next((k for k, v in state.resources.items() if v is res), "")
        return applies_view(key, row.cells[0]), None
    if name == "networks":
        net = row.cells[0]

        def on_network(r: Row) -> bool:
            return any(n.get("name") == net for n in (r.data or {}).get("networks", []))

        return VIEWS["pods"], Scope(f"network {net}", on_network)
    if name == "profiles" and isinstance(res, Profile):
        prof = res.metadata.name
        keys = _endpoints_under(state, lambda w: prof in w.spec.profiles)
        return VIEWS["endpoints"], Scope(f"profile {prof}", _key_in(keys))
    if name in ("policies", "applies") and isinstance(res, NetworkPolicy | GlobalNetworkPolicy):
        pset = PolicySet.from_resources(state.resources.values())

        def governed(w: WorkloadEndpoint) -> bool:
            return any(
                p is res
                or (p.KIND, p.metadata.name, p.metadata.namespace)
                == (res.KIND, res.metadata.name, res.metadata.namespace)
                for d in ("Ingress", "Egress")
                for p in applicable_policies(pset, w, d)
            )

        keys = _endpoints_under(state, governed)
        return VIEWS["endpoints"], Scope(f"policy {res.metadata.name}", _key_in(keys))
    if name == "applies" and isinstance(res, Profile):
        prof = res.metadata.name
        keys = _endpoints_under(state, lambda w: prof in w.spec.profiles)
        return VIEWS["endpoints"], Scope(f"profile {prof}", _key_in(keys))
    return None


def _key_in(keys: set[str]) -> Callable[[Row], bool]:
    wanted = {f"wep/{k.rsplit('/', 2)[-2]}/{k.rsplit('/', 1)[-1]}" for k in keys}
    return lambda r: r.key in wanted


# ---------------------------------------------------------------- the trail back


@dataclass(frozen=True)
class Crumb:
    """Where `esc` goes back to: a view as it was arranged, and the row the cursor was on."""

    view: View
    arrangement: Arrangement
    cursor: str | None


@dataclass
class Trail:
    crumbs: list[Crumb] = field(default_factory=list)

    def push(self, crumb: Crumb) -> None:
        self.crumbs.append(crumb)

    def pop(self) -> Crumb | None:
        return self.crumbs.pop() if self.crumbs else None

    def clear(self) -> None:
        self.crumbs.clear()

    def text(self, here: View, scope: Scope | None) -> str:
        """`Nodes › calico-01 › Pods`: each view walked through, with what was drilled."""
        parts = []
        for c in self.crumbs:
            parts.append(c.view.name)
            if c.arrangement.scope:
                parts.append(c.arrangement.scope.label)
        parts.append(here.name)
        if scope:
            parts.append(scope.label)
        return BREADCRUMB.join(parts) if self.crumbs else ""
