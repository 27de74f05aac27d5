"""Output formats of `rkt list`, `rkt status` and `rkt image list` (pure functions).

Facts kept from rkt 1.x: list columns ``UUID APP IMAGE NAME STATE CREATED STARTED NETWORKS``
(``--full`` adds ``IMAGE ID`` and shows the whole UUID and absolute times), cells separated
and aligned by TABs (rkt used Go's tabwriter with a tab pad character, which is why
``cut -f1`` yields the UUID), times humanized as "10 seconds ago", networks as
``name:ip4=ADDR`` joined by ", ", and `rkt status` as key=value lines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from rkt.state import EXITED, GARBAGE, RUNNING, PodState

TYPE_CHECKING = False  # typing costs import time on every `rkt run`
if TYPE_CHECKING:
    from typing import Any

TAB_WIDTH = 8

# (limit in seconds, divisor, singular, plural): the first row whose limit exceeds the age wins.
_MAGNITUDES: tuple[tuple[float, float, str, str], ...] = (
    (1, 1, "now", "now"),
    (2, 1, "1 second", "1 second"),
    (60, 1, "", "seconds"),
    (120, 60, "1 minute", "1 minute"),
    (3600, 60, "", "minutes"),
    (7200, 3600, "1 hour", "1 hour"),
    (86400, 3600, "", "hours"),
    (2 * 86400, 86400, "1 day", "1 day"),
    (7 * 86400, 86400, "", "days"),
    (14 * 86400, 7 * 86400, "1 week", "1 week"),
    (30 * 86400, 7 * 86400, "", "weeks"),
    (60 * 86400, 30 * 86400, "1 month", "1 month"),
    (365 * 86400, 30 * 86400, "", "months"),
    (2 * 365 * 86400, 365 * 86400, "1 year", "1 year"),
)


def humanize_since(then: float, now: float) -> str:
    """'10 seconds ago', '1 minute ago', 'now'; a time in the future reads '3 seconds from now'."""
    delta = now - then
    suffix = "ago"
    if delta < 0:
        delta, suffix = -delta, "from now"
    for limit, div, single, plural in _MAGNITUDES:
        if delta < limit:
            if single == "now":
                return "now"
            if single:
                return f"{single} {suffix}"
            return f"{int(delta // div)} {plural} {suffix}"
    return f"{int(delta // (365 * 86400))} years {suffix}"


def absolute_time(t: float) -> str:
    """rkt's --full layout ('2006-01-02 15:04:05.999 -0700 MST'): local time, trimmed millis."""
    lt = time.localtime(t)
    millis = f"{int((t % 1) * 1000):03d}".rstrip("0")
    frac = f".{millis}" if millis else ""
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', lt)}{frac} {time.strftime('%z %Z', lt)}"


def tab_align(rows: Sequence[Sequence[str]]) -> str:
    """Cells joined by TABs, padded with extra TABs so columns line up in a terminal.

    Every column but the last is padded to a common width (widest cell + 1, rounded up to a
    tab stop); a cell gets as many TABs as it takes to reach that width, so `cut -f1` still
    yields the first column and each row reads naturally in a terminal.
    """
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [0] * ncols
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(cell))
    stops = [((w + 1 + TAB_WIDTH - 1) // TAB_WIDTH) * TAB_WIDTH for w in widths]
    out = []
    for r in rows:
        parts = []
        for i, cell in enumerate(r):
            if i == len(r) - 1:
                parts.append(cell)
            else:
                tabs = max(1, (stops[i] - len(cell) + TAB_WIDTH - 1) // TAB_WIDTH)
                parts.append(cell + "\t" * tabs)
        out.append("".join(parts))
    return "\n".join(out) + "\n"


def format_networks(pod: PodState) -> str:
    """'network1:ip4=10.0.0.2, default-restricted:ip4=172.31.0.2' (rkt's fmtNets)."""
    if pod.state == GARBAGE:
        return ""
    return ", ".join(f"{n.name}:ip4={n.ip4}" for n in pod.networks if n.added)


def list_rows(
    pods: Sequence[tuple[PodState, str]], now: float, full: bool = False, legend: bool = True
) -> list[list[str]]:
    """Rows of `rkt list` for (pod, effective state) pairs, oldest first as rkt walks them."""
    rows: list[list[str]] = []
    if legend:
        head = ["UUID", "APP", "IMAGE NAME", "STATE", "CREATED", "STARTED", "NETWORKS"]
        if full:
            head.insert(3, "IMAGE ID")
        rows.append(head)
    for pod, state in pods:
        when = absolute_time if full else (lambda t: humanize_since(t, now))
        row = [
            pod.uuid if full else pod.uuid[:8],
            pod.app.name,
            pod.app.image_name,
            state,
            when(pod.created),
            when(pod.started) if pod.started else "",
            format_networks(pod),
        ]
        if full:
            row.insert(3, pod.app.image_id[:19])
        rows.append(row)
    return rows


def format_list(
    pods: Sequence[tuple[PodState, str]], now: float, full: bool = False, legend: bool = True
) -> str:
    return tab_align(list_rows(pods, now, full=full, legend=legend))


def pod_json(pod: PodState, state: str) -> dict[str, Any]:
    """rkt's v1 API pod object (name, state, networks, app_names, created_at/started_at in ns)
    plus the app's exit code and pid, which rkt reported in `apps`."""

    def ns(t: float | None) -> int | None:
        return None if t is None else int(t * 1e9)

    nets = [
        {
            "netName": n.name,
            "netConf": n.conf_file,
            "ifName": n.ifname,
            "ip": n.ip4,
            "args": n.args,
        }
        for n in pod.networks
        if n.added and pod.state != GARBAGE
    ]
    app: dict[str, Any] = {
        "name": pod.app.name,
        "state": state,
        "image_id": pod.app.image_id,
        "image_name": pod.app.image_name,
    }
    if pod.app.exit_code is not None:
        app["exit_code"] = pod.app.exit_code
    out: dict[str, Any] = {
        "name": pod.uuid,
        "state": state,
        "networks": nets,
        "app_names": [pod.app.name],
        "apps": [app],
        "created_at": ns(pod.created),
    }
    if pod.started is not None:
        out["started_at"] = ns(pod.started)
    if pod.pid is not None and state in (RUNNING, EXITED):
        out["pid"] = pod.pid
    return out


def format_json(objs: Any, pretty: bool) -> str:
    if pretty:
        return json.dumps(objs, indent="\t") + "\n"
    return json.dumps(objs, separators=(",", ":")) + "\n"


def status_lines(pod: PodState, state: str) -> list[str]:
    """`rkt status` key=value lines in rkt's order: state, created, started, networks, pid,
    exited, app-<name>=<exit code>."""
    lines = [f"state={state}", f"created={absolute_time(pod.created)}"]
    if pod.started is not None:
        lines.append(f"started={absolute_time(pod.started)}")
    if state in (RUNNING, EXITED) and pod.net_mode == "contained":
        lines.append(f"networks={format_networks(pod)}")
    if state in (RUNNING, EXITED, GARBAGE):
        pid = pod.pid if state == RUNNING and pod.pid is not None else -1
        lines.append(f"pid={pid}")
        lines.append(f"exited={'true' if state in (EXITED, GARBAGE) else 'false'}")
        if state != RUNNING and pod.app.exit_code is not None:
            lines.append(f"app-{pod.app.name}={pod.app.exit_code}")
    return lines


def human_bytes(n: int) -> str:
    """1.9 MiB style sizes for `rkt image list`."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def image_rows(
    images: Sequence[dict[str, Any]], now: float, full: bool = False, legend: bool = True
) -> list[list[str]]:
    """`rkt image list`: ID NAME SIZE IMPORT TIME LAST USED."""
    rows: list[list[str]] = []
    if legend:
        rows.append(["ID", "NAME", "SIZE", "IMPORT TIME", "LAST USED"])
    for img in images:
        when = absolute_time if full else (lambda t: humanize_since(t, now))
        last = img.get("last_used")
        rows.append(
            [
                img["id"] if full else img["id"][:19],
                img["display_name"],
                human_bytes(int(img.get("size", 0))),
                when(img["imported"]),
                when(last) if last else "",
            ]
        )
    return rows
