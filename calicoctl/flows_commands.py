"""`calicoctl flows`: every node's flow log, merged by time, with `hubble observe`'s habits.

    calicoctl flows                                   # the last 20 flows of every node
    calicoctl flows -f --verdict DENIED               # follow the denies as they happen
    calicoctl flows --from-pod 6876aae5 --not --to-port 53 --since 5m -o json | jq .dst
    calicoctl flows --aggregate --since 1h            # who talks to whom, how often

Each node's agent keeps its flows in a ring (10,000 records) whether or not anyone reads
them, and serves them at `GET /v1/flows` of its node API, whose address the node publishes
on its Node resource (annotation `calico-rkt.io/api`), as `calicoctl ipam check` finds it.
This command asks every node (or those named by `--node`) at once with the same filter
(calico.flowfilter: what the console's `:flows` filter means, so a filter typed there
means the same here), merges what they answer by time and prints the newest `--last`.
With `--follow` it then keeps one stream per node open and prints each record as it
comes. Verdicts are this project's words: ALLOWED (hubble's FORWARDED) and DENIED
(hubble's DROPPED); hubble's words are accepted too.

A node that cannot be asked is one line on stderr naming it and why, and the exit status
is 1, while the other nodes' flows are still printed: a partial answer is still worth
having, but never silently partial.
"""

from __future__ import annotations

import argparse
import datetime
import json
import queue
import shlex
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from calicoctl.context import CliError

API_ANNOTATION = "calico-rkt.io/api"
DEFAULT_LAST = 20  # hubble observe's default without --follow
NODE_API_TIMEOUT = 5.0  # seconds to connect and to answer a one-shot read
RETRY = 2.0  # seconds between attempts to reopen a node's stream that broke
TABLE_HEADERS = ("TIMESTAMP", "NODE", "SOURCE", "DESTINATION", "VERDICT", "DECIDED BY")
GROUP_HEADERS = ("SOURCE", "DESTINATION", "VERDICT", "COUNT", "FIRST SEEN", "LAST SEEN",
                 "DECIDED BY", "NODES")  # fmt: skip

# hubble observe's filter flags, in the order `--help` lists them: (flag, metavar, help)
FILTER_FLAGS = (
    ("--verdict", "VERDICT", "ALLOWED or DENIED (hubble's FORWARDED / DROPPED accepted)"),
    ("--from-pod", "POD", "source pod: a uuid prefix, as rkt list shows it"),
    ("--to-pod", "POD", "destination pod"),
    ("--pod", "POD", "either end's pod"),
    ("--from-ip", "IP", "source address or CIDR"),
    ("--to-ip", "IP", "destination address or CIDR"),
    ("--ip", "IP", "either end's address or CIDR"),
    ("--from-network", "NET", "source endpoint's network"),
    ("--to-network", "NET", "destination endpoint's network"),
    ("--network", "NET", "either end's network"),
    ("--from-port", "PORT", "source port"),
    ("--to-port", "PORT", "destination port"),
    ("--port", "PORT", "either port"),
    ("--protocol", "PROTO", "tcp, udp, icmp, ..."),
    ("--since", "TIME", "flows from then on: 5m, 1h30m, 14:05, 2026-12-02T14:05:00Z"),
    ("--until", "TIME", "flows up to then (same forms)"),
)


class _Term(argparse.Action):
    """Keeps every filter flag in the order given (with `--not` as a flag of its own), so
    `--not` negates the flag that follows it, as in hubble observe."""

    def __call__(self, parser: Any, ns: argparse.Namespace, values: Any, option: Any = None):
        terms = list(getattr(ns, "terms", None) or [])
        terms.append([option] if option == "--not" else [option, str(values)])
        ns.terms = terms


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "flows",
        parents=[common],
        help="every node's flows, merged by time (hubble observe's flags)",
        description="Every node's allowed and denied flows, merged by time. Filter flags "
        "are AND'ed (comma lists OR'ed); --not negates the flag after it. Verdicts: "
        "ALLOWED = hubble's FORWARDED, DENIED = hubble's DROPPED.",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new flows")
    last = p.add_mutually_exclusive_group()
    last.add_argument("--last", type=int, metavar="N",
                      help=f"first print the newest N stored flows, all nodes together (default "
                      f"{DEFAULT_LAST}; with --follow 0; with --since/--until all)")  # fmt: skip
    last.add_argument("--all", action="store_true", help="every flow the agents still keep")
    p.add_argument("--not", nargs=0, action=_Term, dest="terms",
                   help="negate the next filter flag (--not --to-port 53)")  # fmt: skip
    for flag, metavar, text in FILTER_FLAGS:
        p.add_argument(flag, metavar=metavar, action=_Term, dest="terms", help=text)
    p.add_argument("--node", action="append", metavar="NODE",
                   help="ask only this node (repeat, or a comma list); default every node")  # fmt: skip
    p.add_argument("--aggregate", action="store_true",
                   help="one line per source, destination, port and verdict, with counts and "
                   "first/last seen")  # fmt: skip
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="table (default) or json: one JSON object per line, for jq")  # fmt: skip
    p.set_defaults(func=cmd_flows, terms=None)


# ---------------------------------------------------------------- pure parts


def filter_of(terms: Sequence[Sequence[str]] | None, now: float) -> Any:
    """The FlowFilter the flags say, through the console's own parser (calico.flowfilter)."""
    from calico.flowfilter import FlowFilter, QueryError

    tokens = [tok for term in terms or () for tok in term]
    try:
        return FlowFilter.parse(shlex.join(tokens), now=now)
    except QueryError as exc:
        raise CliError(f"calicoctl flows: {exc}") from None


def backlog_size(last: int | None, all_: bool, follow: bool, windowed: bool) -> int | None:
    """How many stored flows to print first (None: all of them), hubble's defaults: 20, or
    none when following, or all within a window."""
    if last is not None:
        if last < 0:
            raise CliError("calicoctl flows: --last needs a number of 0 or more")
        return last
    if all_ or windowed:
        return None
    return 0 if follow else DEFAULT_LAST


def merge(answers: Mapping[str, Iterable[Mapping[str, Any]]], last: int | None) -> list[dict]:
    """Every node's flow records as one list by time (oldest first), each with its `node`;
    only the newest `last` (None: all). Non-flow wire items are left out."""
    out = [
        {**r, "node": node}
        for node, items in answers.items()
        for r in items
        if r.get("type", "flow") == "flow"
    ]
    out.sort(key=lambda r: r.get("time") if isinstance(r.get("time"), int | float) else 0.0)
    if last is not None:
        out = out[-last:] if last > 0 else []
    return out


def stamp(when: Any) -> str:
    """hubble's timestamp: `Dec  2 14:55:01.123` (local time)."""
    if not isinstance(when, int | float):
        return "?"
    at = datetime.datetime.fromtimestamp(when)
    return at.strftime("%b %e %H:%M:%S.") + f"{at.microsecond // 1000:03d}"


def flow_cells(r: Mapping[str, Any]) -> list[str]:
    """TIMESTAMP, NODE, SOURCE, DESTINATION (port/PROTOCOL, network), VERDICT, DECIDED BY."""
    from calico.flowagg import deciding_rule_text, end_text

    dst = end_text(r.get("dst", "?"), r.get("dport"), r.get("dst_endpoint"))
    proto = str(r.get("protocol") or "").upper()
    if proto:
        where, _, net = dst.partition(" ")
        dst = f"{where}/{proto}" + (f" {net}" if net else "")
    return [
        stamp(r.get("time")),
        str(r.get("node", "")),
        end_text(r.get("src", "?"), r.get("sport"), r.get("src_endpoint")),
        dst,
        str(r.get("verdict", "?")).upper(),
        deciding_rule_text(r),
    ]


def group_cells(g: Any) -> list[str]:
    return [g.source_text(), g.destination_text(), g.verdict.upper(), str(g.count),
            stamp(g.first), stamp(g.last), g.rule_text(), ",".join(sorted(g.nodes))]  # fmt: skip


def json_line(item: Mapping[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"), sort_keys=False) + "\n"


# ---------------------------------------------------------------- asking the nodes


def node_apis(cli: Any, wanted: list[str] | None) -> dict[str, str]:
    """Node name -> node API URL from the Node resources, only `wanted` if given; a named
    node that does not exist is an error."""
    from calico.keys import kind_prefix

    urls: dict[str, str] = {}
    for kv in cli.datastore().kv_list(kind_prefix("Node"))[0]:
        meta = (kv.json() or {}).get("metadata") or {}
        if meta.get("name"):
            urls[str(meta["name"])] = str((meta.get("annotations") or {}).get(API_ANNOTATION, ""))
    if not urls:
        raise CliError("calicoctl flows: no Node resources in the datastore (no nodes to ask)")
    if wanted:
        names = [n for item in wanted for n in item.split(",") if n]
        unknown = [n for n in names if n not in urls]
        if unknown:
            raise CliError(
                f"calicoctl flows: no node {', '.join(unknown)} (nodes: {', '.join(sorted(urls))})"
            )
        urls = {n: urls[n] for n in names}
    return urls


def _read(url: str, query: Mapping[str, str], last: int | None) -> list[dict[str, Any]]:
    from calico.nodeapi import NodeClient

    params = dict(query)
    if last is not None:
        params["last"] = str(last)
    with NodeClient(url, timeout=NODE_API_TIMEOUT) as client:
        return list(client.flows(follow=False, **params))


class Follower(threading.Thread):
    """One node's stream: records from `since` on into `out` as (node, item); reopened
    after RETRY seconds when it breaks, from the newest record it delivered, so nothing
    is printed twice nor lost while the agent keeps it. Errors go to `out` as (node,
    {"type": "error", ...}) for the main thread to print."""

    def __init__(self, node: str, url: str, query: Mapping[str, str], since: float | None,
                 seen: set[str], out: queue.Queue) -> None:  # fmt: skip
        super().__init__(name=f"flows-{node}", daemon=True)
        self.node, self.url, self.query, self.out = node, url, dict(query), out
        self.since = since  # newest record time already printed (None: none yet)
        self.seen = seen  # the records printed at exactly `since` (JSON), not to repeat

    def run(self) -> None:
        from calico.nodeapi import NodeAPIError, NodeClient

        while True:
            params = dict(self.query)
            if self.since is not None:
                params["since"] = repr(max(self.since, float(params.get("since", self.since))))
            try:
                with NodeClient(self.url, timeout=NODE_API_TIMEOUT) as client:
                    for item in client.flows(follow=True, **params):
                        self._deliver(item)
                error = "flow stream ended (agent restarting?)"
            except NodeAPIError as exc:
                error = " ".join(str(exc).split())
            self.out.put((self.node, {"type": "error", "error": f"{error}; retrying"}))
            time.sleep(RETRY)

    def _deliver(self, item: dict[str, Any]) -> None:
        if item.get("type", "flow") != "flow":
            if item.get("type") == "dropped":
                self.out.put((self.node, item))
            return
        when = item.get("time")
        if isinstance(when, int | float):
            key = json.dumps(item, sort_keys=True)
            if self.since is not None and (
                when < self.since or (when == self.since and key in self.seen)
            ):
                return
            if self.since is None or when > self.since:
                self.since, self.seen = float(when), set()
            self.seen.add(key)
        self.out.put((self.node, item))


# ---------------------------------------------------------------- the command


def cmd_flows(cli: Any) -> int:
    a = cli.args
    now = time.time()
    flt = filter_of(a.terms, now)
    windowed = flt.since is not None or flt.until is not None
    if a.follow and flt.until is not None:
        raise CliError("calicoctl flows: --until ends the window and --follow has no end; use one")
    if a.follow and a.aggregate:
        raise CliError("calicoctl flows: --aggregate counts what is stored; drop --follow")
    last = backlog_size(a.last, a.all, a.follow, windowed)
    urls = node_apis(cli, a.node)
    query = flt.to_query()
    failed = False

    def say(node: str, text: str) -> None:
        cli.err(f"calicoctl flows: {node}: {text}")

    # One read per node at once. Following with nothing to print first still reads the
    # newest record, to know where each node's stream must start (gap- and repeat-free).
    ask_last = last if not a.follow or last is None or last > 0 else 1
    answers: dict[str, list[dict[str, Any]]] = {}
    from concurrent.futures import ThreadPoolExecutor

    from calico.nodeapi import NodeAPIError

    def ask(node: str) -> tuple[str, list[dict[str, Any]] | str]:
        if not urls[node]:
            return node, f"publishes no node API (annotation {API_ANNOTATION} on its Node)"
        try:
            return node, _read(urls[node], query, ask_last)
        except NodeAPIError as exc:
            return node, f"node API not reachable: {' '.join(str(exc).split())}"

    with ThreadPoolExecutor(min(16, len(urls))) as pool:
        for node, answer in pool.map(ask, sorted(urls)):
            if isinstance(answer, str):
                say(node, answer)
                failed = True
                continue
            answers[node] = answer
            lost = sum(int(i.get("count", 0)) for i in answer if i.get("type") == "dropped")
            if lost:
                say(node, f"{lost} flows were overwritten in its ring while being read")

    backlog = merge(answers, last)
    if a.aggregate:
        from calico.flowagg import aggregate

        groups = aggregate(backlog)
        if a.output == "json":
            cli.out("".join(json_line(g.to_dict()) for g in groups))
        elif groups:
            from calicoctl.tables import render

            cli.out(render([list(GROUP_HEADERS), *(group_cells(g) for g in groups)]))
        return 1 if failed else 0

    widths = _widths(backlog)
    if a.output == "json":
        cli.out("".join(json_line(r) for r in backlog))
    else:
        cli.out(_line(list(TABLE_HEADERS), widths))
        cli.out("".join(_line(flow_cells(r), widths) for r in backlog))
    sys.stdout.flush()
    if not a.follow:
        return 1 if failed else 0

    out: queue.Queue = queue.Queue()
    for node in sorted(answers):
        newest = [r for r in answers[node] if isinstance(r.get("time"), int | float)]
        since = max((r["time"] for r in newest), default=None)
        seen = {
            json.dumps(r, sort_keys=True) for r in answers[node] if since and r.get("time") == since
        }
        Follower(node, urls[node], query, since, seen, out).start()
    if not answers:
        raise CliError("calicoctl flows: no node could be asked; nothing to follow")
    while True:
        node, item = out.get()
        kind = item.get("type", "flow")
        if kind == "error":
            say(node, item["error"])
            continue
        if kind == "dropped":
            say(node, f"{item.get('count', 0)} flows were overwritten in its ring while being read")
            continue
        record = {**item, "node": node}  # the agent applied the filter
        cli.out(json_line(record) if a.output == "json" else _line(flow_cells(record), widths))
        sys.stdout.flush()


def _widths(records: list[dict[str, Any]]) -> list[int]:
    """Column widths from the stored flows, at least wide enough for typical live ones (a
    followed line is printed as it comes, so the table cannot be laid out afterwards)."""
    widths = [19, 10, 28, 34, 7, 0]
    for r in records:
        for i, cell in enumerate(flow_cells(r)):
            widths[i] = max(widths[i], len(cell))
    for i, header in enumerate(TABLE_HEADERS):
        widths[i] = max(widths[i], len(header))
    return widths


def _line(cells: list[str], widths: list[int]) -> str:
    padded = [c.ljust(w + 2) for c, w in zip(cells[:-1], widths[:-1], strict=True)]
    return ("".join(padded) + cells[-1]).rstrip() + "\n"
