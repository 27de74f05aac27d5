"""Benchmark: what asking flows the way people do costs: negation, a window, aggregation.

    python bench/bench_flow_queries.py [--records 20000] [--rounds 5]

Pure Python, no root, no lab. Records in the node API's wire shape (two networks, a few
dozen sources and ports, allowed and denied), measured in the same run on the same records:

- reference: `json.loads` of each record's JSON line, the least any reader of the node API
  (calicoctl, the console's follower) already pays per record;
- the plain filter the console applied before (`verdict:denied to:net:network1`);
- the same with a window and two negations (`--since 10m --not --to-port 53 --not --from-ip ...`);
- `aggregate` of every record (calico/flowagg.py), and of the filtered ones;
- the merge by time of two nodes' answers (`calicoctl flows`).

At 2,000 records (the console's kept history, regrouped on every redraw, at most 4 a
second) and at 20,000 (two full agent rings, `calicoctl flows --all --aggregate`).
Prints a markdown table: ms per pass, and ratio = ours / reference (below 1: cheaper than
parsing the JSON it came in).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from calico.flowagg import aggregate  # noqa: E402
from calico.flowfilter import FlowFilter  # noqa: E402
from calicoctl.flows_commands import merge  # noqa: E402

NOW = time.time()


def make_records(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        src_net, dst_net = rnd.choice(["network1", "network2"]), "network1"
        denied = src_net == "network2" and rnd.random() < 0.8
        src = f"192.168.{0 if src_net == 'network1' else 1}.{rnd.randrange(2, 40)}"
        dst = f"192.168.0.{rnd.randrange(100, 110)}"

        def ep(net: str, addr: str) -> dict:
            return {"name": f"calico--01-cni-{addr}-eth0", "network": net, "networks": [net],
                    "profiles": [net], "pod": f"{hash(addr) & 0xFFFFFFFF:08x}-0000",
                    "namespace": "default"}  # fmt: skip

        out.append({
            "type": "flow", "time": NOW - (n - i) * 0.05, "verdict": "denied" if denied else "allowed",
            "protocol": rnd.choice(["tcp", "tcp", "tcp", "udp"]), "src": src, "dst": dst,
            "sport": rnd.randrange(32768, 61000), "dport": rnd.choice([80, 80, 443, 53, 81]),
            "src_endpoint": ep(src_net, src), "dst_endpoint": ep(dst_net, dst),
            "direction": "ingress", "rule": None,
            "rule_text": "profile network1 ingress end of chain" if denied else
                         "profile network1 ingress rule 0",
            "in_iface": None, "out_iface": None, "tcp_flags": ["SYN"], "icmp_type": None,
            "icmp_code": None, "source": "nflog" if denied else "conntrack",
        })  # fmt: skip
    return out


def best_ms(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000 if len(times) < 3 else statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    plain = FlowFilter.parse("verdict:denied to:net:network1")
    rich = FlowFilter.parse(
        "--since 10m --to-ip 192.168.0.0/24 --not --to-port 53 --not --from-ip 192.168.1.7",
        now=NOW,
    )
    print("| records | pass | ms | ratio to json.loads |")
    print("|---|---|---|---|")
    for n in sorted({2_000, args.records}):
        recs = make_records(n)
        lines = [json.dumps(r) for r in recs]
        half = {"calico-01": recs[0::2], "calico-02": recs[1::2]}
        ref = best_ms(lambda lines=lines: [json.loads(x) for x in lines], args.rounds)
        kept = [r for r in recs if rich.matches(r)]
        rows = [
            ("reference: json.loads of every line", ref),
            ("filter verdict:denied to:net:network1",
             best_ms(lambda recs=recs: [r for r in recs if plain.matches(r)], args.rounds)),
            ("filter + window + 2 negations",
             best_ms(lambda recs=recs: [r for r in recs if rich.matches(r)], args.rounds)),
            ("aggregate every record",
             best_ms(lambda recs=recs: aggregate(recs), args.rounds)),
            (f"aggregate the {len(kept)} the rich filter keeps",
             best_ms(lambda kept=kept: aggregate(kept), args.rounds)),
            ("merge two nodes' answers by time",
             best_ms(lambda half=half: merge(half, None), args.rounds)),
        ]  # fmt: skip
        groups = len(aggregate(recs))
        for name, ms in rows:
            print(f"| {n:,} ({groups} groups) | {name} | {ms:.1f} | {ms / ref:.2f}× |")


if __name__ == "__main__":
    main()
