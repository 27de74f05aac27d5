"""pyroute2 and python-iptables against the agent's subprocess paths, in a throwaway netns.

    sudo .venv/bin/python bench/bench_kernel_libs.py [--routes 1,100,1000] [--rules 2000]
                                                     [--runs 15]

Why: both libraries are listed as project dependencies and neither is imported; this
measures whether either would serve the agent where it talks to the kernel.

Everything kernel-side runs in a network namespace made for the run (`ctcalc<random>`,
deleted afterwards, also on failure): a worker started with `ip netns exec` refuses to run
in its caller's namespace, so the root namespace's routes and iptables are never touched.

Measured (p50 over --runs, both ways in the same worker, alternating):
- routes, read: `agent.dataplane.routes.read_routes()` (`ip -j -4 route show` + parse)
  against pyroute2 `IPRoute.get_routes()` turned into the same `KernelRoutes`, on a table of
  1,000 agent routes (proto 80) and 1,000 others; the two results are checked equal.
- routes, apply N changes (N from --routes): `routes.apply()` (one `ip -force -batch`)
  against N `IPRoute.route("replace", ...)` calls, each run moving every route to the other
  gateway so every change is real; the kernel state after each is checked equal.
- iptables, --rules rules in 200-rule chains with the agent's kind of matches (source,
  multiport, comment): one `iptables-legacy-restore --noflush` (the agent's way) against
  python-iptables (`iptc`, autocommit off, one commit); chains are removed between runs.
- import time, `python -X importtime` (cumulative, p50 of 5): `from pyroute2 import IPRoute`
  and `import iptc` against `import json, subprocess` (what the subprocess path imports).
- derived: one full route reconcile with one change, as `agent.dataplane.apply` does it
  (read, apply, read back), from the rows above.

Needs the two libraries, which are not runtime dependencies: `pip install -e '.[bench]'`.

Prints a markdown table `| measure | library | agent's way | ratio |` (ratio = library time /
agent's time: above 1 means the library is slower). Not a test: no figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from socket import AF_INET

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.calc.names import ROUTE_PROTO  # noqa: E402
from agent.dataplane import routes  # noqa: E402

DEV = "ctveth0"
GATEWAYS = ("10.99.0.2", "10.99.0.3")
CHAIN_RULES = 200  # rules per chain in the iptables measurement


def p50_ms(fn: Callable[[], object], runs: int) -> float:
    return statistics.median(timed(fn) for _ in range(runs))


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def sh(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


# ---------------------------------------------------------------- routes through pyroute2


def pyroute2_read(ipr) -> routes.KernelRoutes:  # noqa: ANN001 - pyroute2.IPRoute
    """What `routes.read_routes()` returns, from one netlink dump through pyroute2."""
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    out = routes.KernelRoutes()
    for msg in ipr.get_routes(family=AF_INET, table=254):
        dst = msg.get_attr("RTA_DST")
        if dst is None:
            continue  # default route
        dst = f"{dst}/{msg['dst_len']}"
        dev = names.get(msg.get_attr("RTA_OIF"))
        if msg["proto"] == ROUTE_PROTO:
            kind = "blackhole" if msg["type"] == 6 else "unicast"
            gateway = msg.get_attr("RTA_GATEWAY")
            out.ours[dst] = routes.Route(
                dst, kind=kind, dev=None if gateway or kind != "unicast" else dev, via=gateway
            )
        if dev:
            out.others.setdefault(dst, set()).add(dev)
    return out


def agent_dsts(n: int) -> list[str]:
    return [f"10.{100 + i // 256}.{i % 256}.0/26" for i in range(n)]


def batch_replace(dsts: list[str], gw: str) -> None:
    """The agent's way: one `ip -force -batch` (agent.dataplane.routes.apply)."""
    errors = routes.apply([f"route replace {d} via {gw} proto {ROUTE_PROTO}" for d in dsts])
    assert not errors, errors


def pyroute2_replace(ipr, ifindex: int, dsts: list[str], gw: str) -> None:  # noqa: ANN001
    """One RTM_NEWROUTE (NLM_F_REPLACE) per route through pyroute2, each acknowledged."""
    for d in dsts:
        ipr.route("replace", dst=d, gateway=gw, oif=ifindex, proto=ROUTE_PROTO)


READ_ROW = "routes: read 2,000 (1,000 ours)"


def apply_row(n: int) -> str:
    return f"routes: apply {n:,} change{'' if n == 1 else 's'}"


def assert_via(dsts: list[str], gw: str) -> None:
    got = routes.read_routes().ours
    assert all(got[d].via == gw for d in dsts), "route not replaced"


def route_worker(sizes: list[int], runs: int) -> list[tuple[str, float, float]]:
    from pyroute2 import IPRoute

    sh("ip", "link", "add", DEV, "type", "veth", "peer", "name", DEV + "p")  # no dummy module here
    sh("ip", "link", "set", DEV + "p", "up")
    sh("ip", "link", "set", DEV, "up")
    sh("ip", "addr", "add", "10.99.0.1/16", "dev", DEV)
    base = [f"route replace {d} via {GATEWAYS[0]} proto {ROUTE_PROTO}" for d in agent_dsts(1000)]
    base += [
        f"route replace 10.200.{i // 256}.{i % 256}/32 dev {DEV} scope link" for i in range(1000)
    ]
    sh("ip", "-force", "-batch", "-", stdin="\n".join(base) + "\n")
    rows = []
    with IPRoute() as ipr:
        assert pyroute2_read(ipr) == routes.read_routes(), "pyroute2 read differs from ip -j"
        lib = p50_ms(lambda: pyroute2_read(ipr), runs)
        ref = p50_ms(routes.read_routes, runs)
        rows.append((READ_ROW, lib, ref))
        ifindex = ipr.link_lookup(ifname=DEV)[0]
        for n in sizes:
            dsts = agent_dsts(n)
            lib_t, ref_t = [], []
            for _ in range(runs):
                # The routes start via GATEWAYS[0]; each apply moves every one to the other
                # gateway, so all N changes are real.
                lib_t.append(timed(lambda: pyroute2_replace(ipr, ifindex, dsts, GATEWAYS[1])))  # noqa: B023
                assert_via(dsts, GATEWAYS[1])
                ref_t.append(timed(lambda: batch_replace(dsts, GATEWAYS[0])))  # noqa: B023
                assert_via(dsts, GATEWAYS[0])
            rows.append((apply_row(n), statistics.median(lib_t), statistics.median(ref_t)))
    return rows


# ---------------------------------------------------------------- iptables


def rule_specs(n: int) -> list[tuple[str, str, str]]:
    """(chain, source, comment) for n rules in chains of CHAIN_RULES."""
    return [
        (
            f"ctb-{i // CHAIN_RULES}",
            f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}/32",
            f"cali:r{i:07d}",
        )
        for i in range(n)
    ]


def flush_bench_chains(chains: list[str]) -> None:
    text = "*filter\n" + "".join(f":{c} - [0:0]\n" for c in chains)
    text += "".join(f"-X {c}\n" for c in chains) + "COMMIT\n"
    sh("iptables-legacy-restore", "--noflush", stdin=text)


def iptables_worker(n_rules: int, runs: int) -> list[tuple[str, float, float]]:
    import iptc

    specs = rule_specs(n_rules)
    chains = sorted({c for c, _, _ in specs})
    text = ["*filter"] + [f":{c} - [0:0]" for c in chains]
    text += [
        f'-A {c} -s {src} -p tcp -m multiport --dports 80,443,8000:8080 -m comment --comment "{cm}" -j ACCEPT'
        for c, src, cm in specs
    ]
    text = "\n".join([*text, "COMMIT"]) + "\n"

    def by_restore() -> None:
        sh("iptables-legacy-restore", "--noflush", stdin=text)

    def by_iptc() -> None:
        # iptc caches one handle per table: re-read it after the flush (with autocommit off,
        # or refresh() would first commit the stale handle and bring the chains back).
        table = iptc.Table(iptc.Table.FILTER, autocommit=False)
        table.refresh()
        made = {c: table.create_chain(c) for c in chains}
        for c, src, cm in specs:
            rule = iptc.Rule()
            rule.src = src
            rule.protocol = "tcp"
            mp = rule.create_match("multiport")
            mp.dports = "80,443,8000:8080"
            comment = rule.create_match("comment")
            comment.comment = cm
            rule.target = iptc.Target(rule, "ACCEPT")
            made[c].append_rule(rule)
        table.commit()

    def count() -> int:
        save = sh("iptables-legacy-save", "-t", "filter")
        return sum(line.startswith("-A ctb-") for line in save.splitlines())

    lib_t, ref_t = [], []
    for _ in range(runs):
        for fn, acc in ((by_iptc, lib_t), (by_restore, ref_t)):
            acc.append(timed(fn))
            assert count() == n_rules, "rules not all applied"
            flush_bench_chains(chains)
    return [
        (f"iptables: apply {n_rules:,} rules", statistics.median(lib_t), statistics.median(ref_t))
    ]


# ---------------------------------------------------------------- import time


def import_ms(statement: str, runs: int = 5) -> float:
    """Cumulative import time of the last top-level module in `python -X importtime -c`."""
    times = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        tops = [line for line in proc.stderr.splitlines() if "|" in line and "| " in line]
        last = tops[-1].split("|")
        times.append(int(last[1]) / 1000)
    return statistics.median(times)


# ---------------------------------------------------------------- driver


def netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def worker(args: argparse.Namespace) -> int:
    if netns_inode() == args.parent_netns:
        print("refusing to run in the caller's network namespace", file=sys.stderr)
        return 2
    rows = route_worker([int(s) for s in args.routes.split(",")], args.runs)
    rows += iptables_worker(args.rules, max(3, args.runs // 3))
    print(json.dumps(rows))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--routes", default="1,100,1000", help="route change counts")
    ap.add_argument("--rules", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--parent-netns", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if os.geteuid() != 0:
        print("needs root (a network namespace)", file=sys.stderr)
        return 2
    try:
        import iptc  # noqa: F401
        import pyroute2  # noqa: F401
    except ImportError as exc:
        print(f"needs {exc.name}: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    for tool in ("ip", "iptables-legacy-restore", "iptables-legacy-save"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 2

    ns = "ctcalc" + secrets.token_hex(3)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        out = sh(
            "ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve()), "--worker",
            "--parent-netns", str(netns_inode()), "--routes", args.routes, "--rules", str(args.rules), "--runs", str(args.runs),
        )  # fmt: skip
        rows = [tuple(r) for r in json.loads(out.strip().splitlines()[-1])]
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)

    # The derived row: what the applier does when one route changes (apply, then read back;
    # a full apply also reads first).
    by_name = {name: (lib, ref) for name, lib, ref in rows}
    read, one = by_name.get(READ_ROW), by_name.get(apply_row(1))
    if read and one:
        at = max(i for i, row in enumerate(rows) if row[0].startswith("routes:")) + 1
        row = ("routes: full reconcile, 1 change (read, apply, read)", 2 * read[0] + one[0])
        rows.insert(at, (*row, 2 * read[1] + one[1]))
    # The agent's route path needs json and subprocess beyond its own modules.
    ref_import = import_ms("import json, subprocess")
    rows.append(
        (
            "import: from pyroute2 import IPRoute",
            import_ms("from pyroute2 import IPRoute"),
            ref_import,
        )
    )
    rows.append(("import: import iptc (python-iptables)", import_ms("import iptc"), ref_import))

    print("| measure | library | agent's way | ratio (library / agent) |")
    print("|---|---|---|---|")
    for name, lib, ref in rows:
        print(f"| {name} | {lib:.2f} ms | {ref:.2f} ms | {lib / ref:.1f}x |")
    print()
    print("library: pyroute2 IPRoute for routes and import, python-iptables (iptc) for iptables;")
    print("agent's way: ip -j route show / ip -batch, one iptables-legacy-restore --noflush,")
    print("and for import time `import json, subprocess` (what the subprocess path imports).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
