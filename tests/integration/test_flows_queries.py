"""Flows as people query them, on the real 2-node lab: `calicoctl flows` (hubble observe's
flags, -o json through jq, --follow, --not, the --since/--until window, --aggregate) and
`:flows` in the console (aggregation, negation, a window), all on real traffic: TCP
connects to the walkthrough's httpd (192.168.0.100:80 on calico-01, network1) from probe
pods on calico-02, allowed from network1 and denied from network2 by profile network1.

Every flow asked for here was made before anyone asked: the agents' rings collect whether
or not a reader (a console, calicoctl) is connected, which is what is checked first.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from calico.tutorial import HTTPD_IP

from .walkthrough import node_api, walkthrough_httpd

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.etcd]

CALICOCTL = str(Path(sys.executable).with_name("calicoctl"))


@pytest.fixture(scope="module")
def web(lab):
    """The walkthrough's networks + httpd steps; every pod made here (the agents' probe
    pods too) removed at the end."""
    with walkthrough_httpd(lab):
        # the first probes also start the probe pods: not timed, not counted
        probe(lab, "network1")
        yield lab


def probe(lab, network: str, node: str = "calico-02") -> str:
    """One TCP connect to the httpd from `network`'s probe pod on `node`: connected/timed out."""
    with node_api(lab, node) as client:
        return client.probe(HTTPD_IP, 80, network=network, timeout=1.5)["result"]


def allowed(lab) -> None:
    assert probe(lab, "network1") == "connected"


def denied(lab) -> None:
    assert probe(lab, "network2") == "timed out"


def calicoctl(lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [CALICOCTL, "--etcd-endpoints", lab.etcd_endpoints, "flows", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr
    return proc


def records(lab, *args: str) -> list[dict]:
    """`calicoctl flows -o json ...`, each line parsed."""
    out = calicoctl(lab, "-o", "json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def settle() -> None:
    """A moment for the last record to reach the agents' rings (conntrack and NFLOG are
    read within milliseconds; the window's end is taken after this)."""
    time.sleep(0.3)


def at(t: float) -> str:
    return repr(t)


# ---------------------------------------------------------------- calicoctl flows


def test_the_rings_fill_with_no_reader_and_calicoctl_reads_them_as_json_for_jq(web):
    lab = web
    t0 = time.time()
    allowed(lab)  # nobody is reading any node's flows now: no console, no calicoctl
    denied(lab)
    settle()
    got = records(lab, "--since", at(t0), "--to-ip", HTTPD_IP)
    assert got, "the agents kept nothing while nobody was reading"
    assert {r["verdict"] for r in got} == {"allowed", "denied"}
    assert all(r["dst"] == HTTPD_IP and r["dport"] == 80 and r["time"] >= t0 for r in got)
    assert [r["time"] for r in got] == sorted(r["time"] for r in got)  # merged by time
    deny = next(r for r in got if r["verdict"] == "denied")
    assert deny["node"] == "calico-01"  # the destination's node dropped it
    assert deny["src_endpoint"]["network"] == "network2"
    assert "network1" in deny["rule_text"]
    # allowed: network1's connect (by both nodes), and network2's as its own node saw it
    # leave (its profile allows egress; the drop is calico-01's, on the way in)
    ok = {(r["src_endpoint"]["network"], r["node"]) for r in got if r["verdict"] == "allowed"}
    assert ("network1", "calico-01") in ok and ok <= {
        ("network1", "calico-01"), ("network1", "calico-02"), ("network2", "calico-02")
    }  # fmt: skip

    # the lines are JSON for jq, as `hubble observe -o json | jq`
    out = calicoctl(lab, "-o", "json", "--since", at(t0), "--to-ip", HTTPD_IP).stdout
    jq = shutil.which("jq")
    if jq:
        proc = subprocess.run(
            [jq, "-r", 'select(.verdict == "denied") | "\\(.node) \\(.src_endpoint.network)"'],
            input=out, capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        assert set(proc.stdout.split("\n")) - {""} == {"calico-01 network2"}

    # the table, hubble style
    table = calicoctl(lab, "--since", at(t0), "--to-ip", HTTPD_IP).stdout.splitlines()
    assert table[0].split() == ["TIMESTAMP", "NODE", "SOURCE", "DESTINATION", "VERDICT",
                                "DECIDED", "BY"]  # fmt: skip
    denied_rows = [line for line in table[1:] if " DENIED " in line]
    assert denied_rows and all(f"{HTTPD_IP}:80/TCP network1" in row for row in denied_rows)
    assert any(" ALLOWED " in line for line in table[1:])


def test_not_inverts_a_filter_and_until_closes_the_window(web):
    lab = web
    t0 = time.time()
    allowed(lab)
    settle()
    t_mid = time.time()
    denied(lab)
    settle()
    t1 = time.time()
    window = ("--since", at(t0), "--until", at(t1), "--to-ip", HTTPD_IP)
    everything = records(lab, *window)
    only_denied = records(lab, *window, "--verdict", "DENIED")
    not_denied = records(lab, *window, "--not", "--verdict", "DENIED")
    assert only_denied and not_denied
    assert {r["verdict"] for r in only_denied} == {"denied"}
    assert {r["verdict"] for r in not_denied} == {"allowed"}
    assert len(only_denied) + len(not_denied) == len(everything)
    # hubble's word is the same verdict
    assert records(lab, *window, "--verdict", "DROPPED") == only_denied

    # the window split at t_mid: the allowed connect before, the denied one after; the
    # first half's start given as an ISO stamp, as a person would type it
    iso = datetime.datetime.fromtimestamp(t0).isoformat()
    before = records(lab, "--since", iso, "--until", at(t_mid), "--to-ip", HTTPD_IP)
    after = records(lab, "--since", at(t_mid), "--until", at(t1), "--to-ip", HTTPD_IP)
    assert {(r["verdict"], r["src_endpoint"]["network"]) for r in before} == {
        ("allowed", "network1")
    }
    assert {r["src_endpoint"]["network"] for r in after} == {"network2"}
    assert "denied" in {r["verdict"] for r in after}
    assert all(t0 <= r["time"] <= t_mid for r in before)


def test_follow_streams_a_flow_that_happens_after_it_starts(web):
    lab = web
    denied(lab)  # so that there is a newest denied flow to print first
    settle()
    proc = subprocess.Popen(
        [CALICOCTL, "--etcd-endpoints", lab.etcd_endpoints, "flows", "-f", "--last", "1",
         "-o", "json", "--verdict", "DENIED", "--to-ip", HTTPD_IP],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        first = json.loads(lines.get(timeout=20))  # the stored one: the streams open next
        assert first["verdict"] == "denied"
        time.sleep(0.5)
        t_start = time.time()
        allowed(lab)  # not shown: the filter says DENIED
        denied(lab)
        deadline = time.monotonic() + 10
        new = []
        while not new and time.monotonic() < deadline:
            try:
                item = json.loads(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                break
            assert item["verdict"] == "denied" and item["dst"] == HTTPD_IP, item
            if item["time"] >= t_start:
                new.append(item)
        assert new, "no flow made after `calicoctl flows -f` started was streamed"
        assert new[0]["node"] == "calico-01" and new[0]["src_endpoint"]["network"] == "network2"
        assert proc.poll() is None, "follow ended by itself"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.stderr.read() == ""


def test_aggregate_counts_what_the_window_holds(web):
    lab = web
    t0 = time.time()
    for _ in range(2):
        allowed(lab)
        denied(lab)
    settle()
    t1 = time.time()
    window = ("--since", at(t0), "--until", at(t1), "--to-ip", HTTPD_IP)
    flows = records(lab, *window)
    groups = records(lab, *window, "--aggregate")
    assert {g["type"] for g in groups} == {"group"}
    assert sum(g["count"] for g in groups) == len(flows)
    deny = [g for g in groups if g["verdict"] == "denied"]
    assert len(deny) == 1, deny  # one probe pod: one source, one destination, one port
    (deny,) = deny
    same = [r for r in flows if r["verdict"] == "denied"]
    assert deny["count"] == len(same) >= 2  # two connects (and their retried SYNs)
    assert deny["connections"] == len({r["sport"] for r in same}) == 2
    assert deny["first_seen"] == min(r["time"] for r in same)
    assert deny["last_seen"] == max(r["time"] for r in same)
    assert deny["nodes"] == ["calico-01"] and deny["dport"] == 80
    table = calicoctl(lab, *window, "--aggregate").stdout.splitlines()
    assert table[0].split()[:4] == ["SOURCE", "DESTINATION", "VERDICT", "COUNT"]
    row = next(line for line in table if " DENIED " in line)
    assert f" {deny['count']} " in row and "calico-01" in row


def test_a_node_that_does_not_exist_is_one_line(web):
    proc = calicoctl(web, "--node", "calico-99", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "calicoctl flows: no node calico-99 (nodes: calico-01, calico-02)"
    )
    one = records(web, "--node", "calico-02", "--all")
    assert {r["node"] for r in one} <= {"calico-02"}


def test_the_node_api_takes_the_window_and_negations_and_refuses_what_it_cannot(web):
    """What calicoctl and the console send is the node API's query: since/until as Unix
    times, not-<field> for a negated field; a query it cannot apply is a 400 that says why."""
    from calico.nodeapi import NodeAPIError

    lab = web
    t0 = time.time()
    allowed(lab)
    denied(lab)
    settle()
    with node_api(lab, "calico-01") as client:
        got = list(client.flows(**{"since": repr(t0), "to": f"ip:{HTTPD_IP}",
                                   "not-verdict": "allowed"}))  # fmt: skip
        assert got and {r["verdict"] for r in got} == {"denied"}
        assert all(r["time"] >= t0 for r in got)
        for query, words in (({"not-since": "5m"}, "not-since"), ({"since": "300"}, "since")):
            with pytest.raises(NodeAPIError, match=words) as exc:
                list(client.flows(**query))
            assert exc.value.status == 400


# ---------------------------------------------------------------- :flows in the console


async def wait_for(pilot, predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def filter_by(pilot, text: str) -> None:
    """`/`, the filter's text, enter: as typed (the box is set whole, the keys are many)."""
    await pilot.press("slash")
    pilot.app.screen.query_one("#flows-filter").value = text
    await pilot.press("enter")


def test_flows_made_before_the_console_opened_aggregated_negated_and_windowed(web):
    from console.app import CalicoConsole

    lab = web
    t0 = time.time()
    for _ in range(2):
        allowed(lab)
        denied(lab)
    settle()
    t1 = time.time()  # all of this happened before the console exists

    async def run():
        app = CalicoConsole(endpoints=lab.etcd_endpoints, cluster_name=lab.name)
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for(pilot, lambda: len(app.node_api_urls()) == 2, what="nodes in etcd")
            app.switch_view("flows")
            screen = app.screen
            await wait_for(
                pilot,
                lambda: any(
                    e.verdict == "denied" and t0 <= e.record.get("time", 0) <= t1
                    for e in screen.store.entries
                ),
                what="the flows made before the console opened",
            )
            await pilot.press("a")  # aggregate
            # the window and a negation, typed as hubble's flags
            await filter_by(
                pilot, f"--since {t0!r} --until {t1!r} --to-ip {HTTPD_IP} --not --verdict allowed"
            )
            await wait_for(pilot, lambda: bool(screen.groups), what="groups shown")
            await pilot.pause(0.5)  # the streams' later records, if any, are in
            assert {g.verdict for g in screen.groups} == {"denied"}
            (deny,) = screen.groups
            assert deny.dst == HTTPD_IP and deny.dport == 80 and deny.count >= 2
            assert deny.connections == 2 and deny.nodes == {"calico-01"}
            assert t0 <= deny.first < deny.last <= t1
            table = screen.query_one("DataTable")
            assert table.row_count == 1
            row = [str(c) for c in table.get_row_at(0)]
            assert row[2] == "DENIED" and row[3] == str(deny.count), row
            title = screen.query_one("#flows-title").render().plain
            assert "1 group of" in title and "→" in title, title  # the window, in words

            # without the negation the allowed connects are a group of their own
            await filter_by(pilot, f"--since {t0!r} --until {t1!r} --to-ip {HTTPD_IP}")
            await wait_for(
                pilot,
                lambda: {g.verdict for g in screen.groups} == {"allowed", "denied"},
                what="both verdicts",
            )
            (ok,) = [
                g
                for g in screen.groups
                if g.verdict == "allowed" and g.record["src_endpoint"]["network"] == "network1"
            ]
            assert ok.connections == 2 and ok.nodes == {"calico-01", "calico-02"}
            assert ok.count == 2 * 2  # each node that forwards it reports it

            # a window that closes before the traffic: nothing of it
            await filter_by(pilot, f"--until {t0 - 0.001!r} --to-ip {HTTPD_IP}")
            await pilot.pause(0.3)
            assert screen.groups, "the module's earlier flows to the httpd are kept"
            assert all(g.last < t0 for g in screen.groups)

            # back to single flows: the same filter applies
            await pilot.press("a")
            await pilot.pause(0.3)
            assert screen.shown and all(e.record["time"] < t0 for e in screen.shown)

    asyncio.run(run())
