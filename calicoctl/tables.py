"""Table columns for resources, as `calicoctl get -o ps|wide` prints them.

Pure functions shared by calicoctl and the console: a resource (a `calico.resources`
object or its wire dict, camelCase as stored in etcd) -> one row of strings. Working on
the wire dict lets a listing of thousands of endpoints skip decoding and validating
every object; a typed resource is turned into its dict first.

    headers("Profile", wide=False)             -> ["NAME"]
    row(profile, wide=True)                    -> ["network1", "network1="]
    render([headers, *rows])                   -> the aligned text, one line per row
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

# The ASN calicoctl shows, in parentheses, for a node that inherits the global default.
DEFAULT_ASN = "64512"

Cell = Callable[[Mapping[str, Any]], str]


def _meta(res: Mapping[str, Any]) -> Mapping[str, Any]:
    return res.get("metadata") or {}


def _spec(res: Mapping[str, Any]) -> Mapping[str, Any]:
    return res.get("spec") or {}


def _name(res: Mapping[str, Any]) -> str:
    return str(_meta(res).get("name", ""))


def _namespace(res: Mapping[str, Any]) -> str:
    return str(_meta(res).get("namespace", ""))


def _join(values: Iterable[Any]) -> str:
    return ",".join(str(v) for v in values)


def _labels(labels: Mapping[str, Any] | None) -> str:
    """`k=v,k2=v2` sorted by key, as Go templates range over a map."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def _bool(value: Any) -> str:
    return "true" if value else "false"


def _number(value: Any) -> str:
    """100.0 -> "100", 100.5 -> "100.5", None -> ""."""
    if value is None or value == "":
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _pool_selector(res: Mapping[str, Any]) -> str:
    return _spec(res).get("nodeSelector") or "all()"


def _node_bgp(res: Mapping[str, Any]) -> Mapping[str, Any]:
    return _spec(res).get("bgp") or {}


def _node_asn(res: Mapping[str, Any]) -> str:
    bgp = _spec(res).get("bgp")
    if not bgp:
        return ""
    asn = bgp.get("asNumber")
    return str(asn) if asn not in (None, "") else f"({DEFAULT_ASN})"


# kind -> (ps columns, wide columns); each column is (HEADER, cell function).
_COLUMNS: dict[str, tuple[list[tuple[str, Cell]], list[tuple[str, Cell]]]] = {
    "Profile": (
        [("NAME", _name)],
        [("NAME", _name), ("LABELS", lambda r: _labels(_spec(r).get("labelsToApply")))],
    ),
    "IPPool": (
        [
            ("NAME", _name),
            ("CIDR", lambda r: str(_spec(r).get("cidr", ""))),
            ("SELECTOR", _pool_selector),
        ],
        [
            ("NAME", _name),
            ("CIDR", lambda r: str(_spec(r).get("cidr", ""))),
            ("NAT", lambda r: _bool(_spec(r).get("natOutgoing"))),
            ("IPIPMODE", lambda r: _spec(r).get("ipipMode") or "Never"),
            ("VXLANMODE", lambda r: _spec(r).get("vxlanMode") or "Never"),
            ("DISABLED", lambda r: _bool(_spec(r).get("disabled"))),
            ("SELECTOR", _pool_selector),
        ],
    ),
    "WorkloadEndpoint": (
        [
            ("WORKLOAD", lambda r: str(_spec(r).get("workload", ""))),
            ("NODE", lambda r: str(_spec(r).get("node", ""))),
            ("NETWORKS", lambda r: _join(_spec(r).get("ipNetworks") or ())),
            ("INTERFACE", lambda r: str(_spec(r).get("interfaceName", ""))),
        ],
        [
            ("NAME", _name),
            ("WORKLOAD", lambda r: str(_spec(r).get("workload", ""))),
            ("NODE", lambda r: str(_spec(r).get("node", ""))),
            ("NETWORKS", lambda r: _join(_spec(r).get("ipNetworks") or ())),
            ("INTERFACE", lambda r: str(_spec(r).get("interfaceName", ""))),
            ("PROFILES", lambda r: _join(_spec(r).get("profiles") or ())),
        ],
    ),
    "Node": (
        [("NAME", _name)],
        [
            ("NAME", _name),
            ("ASN", _node_asn),
            ("IPV4", lambda r: str(_node_bgp(r).get("ipv4Address") or "")),
            ("IPV6", lambda r: str(_node_bgp(r).get("ipv6Address") or "")),
        ],
    ),
    "BGPConfiguration": (
        [
            ("NAME", _name),
            ("LOGSEVERITY", lambda r: str(_spec(r).get("logSeverityScreen") or "Info")),
            ("MESHENABLED", lambda r: _bool(_spec(r).get("nodeToNodeMeshEnabled", True))),
            ("ASNUMBER", lambda r: _number(_spec(r).get("asNumber")) or f"({DEFAULT_ASN})"),
        ],
        [
            ("NAME", _name),
            ("LOGSEVERITY", lambda r: str(_spec(r).get("logSeverityScreen") or "Info")),
            ("MESHENABLED", lambda r: _bool(_spec(r).get("nodeToNodeMeshEnabled", True))),
            ("ASNUMBER", lambda r: _number(_spec(r).get("asNumber")) or f"({DEFAULT_ASN})"),
        ],
    ),
    "BGPPeer": (
        [
            ("NAME", _name),
            ("PEERIP", lambda r: str(_spec(r).get("peerIP") or "")),
            (
                "NODE",
                lambda r: str(_spec(r).get("node") or _spec(r).get("nodeSelector") or "(global)"),
            ),
            ("ASN", lambda r: _number(_spec(r).get("asNumber"))),
        ],
        [
            ("NAME", _name),
            ("PEERIP", lambda r: str(_spec(r).get("peerIP") or "")),
            (
                "NODE",
                lambda r: str(_spec(r).get("node") or _spec(r).get("nodeSelector") or "(global)"),
            ),
            ("ASN", lambda r: _number(_spec(r).get("asNumber"))),
        ],
    ),
    "NetworkPolicy": (
        [("NAME", _name)],
        [
            ("NAME", _name),
            ("ORDER", lambda r: _number(_spec(r).get("order"))),
            ("SELECTOR", lambda r: str(_spec(r).get("selector") or "")),
        ],
    ),
    "GlobalNetworkPolicy": (
        [("NAME", _name)],
        [
            ("NAME", _name),
            ("ORDER", lambda r: _number(_spec(r).get("order"))),
            ("SELECTOR", lambda r: str(_spec(r).get("selector") or "")),
        ],
    ),
}

NAMESPACED_KINDS = frozenset({"WorkloadEndpoint", "NetworkPolicy"})


def _wire(res: Any) -> Mapping[str, Any]:
    return res.to_dict() if hasattr(res, "to_dict") else res


def _kind_of(res: Mapping[str, Any]) -> str:
    return str(res.get("kind", ""))


def _columns(kind: str, wide: bool, all_namespaces: bool) -> list[tuple[str, Cell]]:
    try:
        ps, wide_cols = _COLUMNS[kind]
    except KeyError:
        raise ValueError(f"no table columns for kind {kind!r}") from None
    cols = list(wide_cols if wide else ps)
    if all_namespaces and kind in NAMESPACED_KINDS:
        cols.insert(0, ("NAMESPACE", _namespace))
    return cols


def headers(kind: str, wide: bool = False, all_namespaces: bool = False) -> list[str]:
    """Column titles for a kind (`NAMESPACE` first for namespaced kinds across namespaces)."""
    return [title for title, _ in _columns(kind, wide, all_namespaces)]


def row(res: Any, wide: bool = False, all_namespaces: bool = False) -> list[str]:
    """One resource (typed or wire dict) -> its cells, in `headers()` order."""
    data = _wire(res)
    return [cell(data) for _, cell in _columns(_kind_of(data), wide, all_namespaces)]


def rows(
    kind: str, resources: Iterable[Any], wide: bool = False, all_namespaces: bool = False
) -> list[list[str]]:
    """Many resources of one kind -> rows (columns looked up once)."""
    cells = [cell for _, cell in _columns(kind, wide, all_namespaces)]
    out = []
    for res in resources:
        data = _wire(res)
        out.append([cell(data) for cell in cells])
    return out


def render(table: Sequence[Sequence[str]], padding: int = 3, min_width: int = 5) -> str:
    """Left-aligned columns separated by spaces, as Go's tabwriter lays out calicoctl's
    tables (cell width = longest cell + 3, at least 5). No trailing spaces; ends in a
    newline unless the table is empty."""
    if not table:
        return ""
    ncols = max(len(r) for r in table)
    widths = [0] * ncols
    for r in table:
        for i, cell in enumerate(r):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    widths = [max(w + padding, min_width) for w in widths]
    # One format string per row width: cheaper than ljust per cell on 10,000-row tables.
    formats = {
        n: "".join(f"{{:<{w}}}" for w in widths[: n - 1]) + "{}" for n in range(1, ncols + 1)
    }
    lines = [formats[len(r)].format(*r).rstrip() if r else "" for r in table]
    return "\n".join(lines) + "\n"


def table(
    kind: str, resources: Iterable[Any], wide: bool = False, all_namespaces: bool = False
) -> str:
    """Headers plus rows, rendered."""
    return render(
        [headers(kind, wide, all_namespaces), *rows(kind, resources, wide, all_namespaces)]
    )
