"""Benchmark: how long each component takes to carry on after the etcd leader is killed,
beside etcd's own leader election measured in the same kill.

    python bench/bench_etcd_failover.py [--kills 5] [--members 3] [--no-tls]

Starts its own N-member etcd cluster on loopback (TLS with client certificates unless
--no-tls, lab.pki in a temporary directory), then, for each kill: every component runs
its loop against the cluster, the leader is SIGKILLed, and for each one we record the time
from the kill until it next succeeds:

- Datastore reads: `kv_get` in a loop, the client on the member about to die (worst case).
  (For every loop: until an operation *started after* the kill succeeds.)
- Datastore writes: `kv_put` in a loop, the client on a follower (the write is forwarded
  to the dead leader and lost: the attempt's 1.5 s deadline decides).
- PrefixSyncer watch, on the member about to die: until it delivers a key written after
  the kill (a writer puts one every 20 ms from its own client).
- `calicoctl get profiles`, a new process each time: until one started after the kill
  succeeds (its start-up included: ~40 ms since it reads over the JSON gateway).
- CNI ADD through `calico-ipam` (in-process, no agent): until an ADD started after the
  kill succeeds.

Reference, same kill: etcd's election, from the kill until `etcdctl endpoint status` on
the survivors names one new leader. Printed: p50 over the kills, and the ratio component
/ election. The issue's budget is 3 s for every component; nothing here asserts it.
The killed member is restarted on its data dir between kills; everything is removed at
the end (members stopped by the pid we started).
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
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from calico.config import EtcdSettings  # noqa: E402
from calico.datastore import Change, Datastore, PrefixSyncer  # noqa: E402
from calico.errors import DatastoreError  # noqa: E402
from calico.resources import IPPool, IPPoolSpec, Metadata  # noqa: E402
from lab.etcd import EtcdCluster, EtcdProcess  # noqa: E402
from lab.pki import make_pki  # noqa: E402

BIN = Path(sys.executable).parent
BUDGET = 3.0


def settings_of(cluster: EtcdCluster) -> EtcdSettings:
    env = cluster.client_env()
    return EtcdSettings(
        env["ETCD_ENDPOINTS"],
        env.get("ETCD_CA_CERT_FILE"),
        env.get("ETCD_CERT_FILE"),
        env.get("ETCD_KEY_FILE"),
    )


def pin(ds: Datastore, member: EtcdProcess) -> None:
    ds.client._current_endpoint_label = member.client_urls[0].split("//", 1)[1]


class Loop:
    """A component's loop in a thread: `successes` holds (start, end) of each good op."""

    def __init__(self, name: str, op, stop: threading.Event):
        self.name, self.op, self.stop = name, op, stop
        self.successes: list[tuple[float, float]] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                ok = self.op()
            except DatastoreError:
                ok = False
            if ok:
                self.successes.append((t0, time.monotonic()))
            else:
                time.sleep(0.01)

    def recovery(self, killed_at: float, started_after: bool = False) -> float | None:
        """Seconds from the kill to the first success (of an op started after it)."""
        for start, end in self.successes:
            if end > killed_at and (not started_after or start >= killed_at):
                return end - killed_at
        return None


def election_time(cluster: EtcdCluster, dead: EtcdProcess, old_id: str, killed_at: float) -> float:
    """From the kill until `etcdctl endpoint status` on the survivors agrees on a new leader."""
    alive = [m for m in cluster.members if m is not dead]
    args = ["etcdctl", "--endpoints", ",".join(m.client_urls[0] for m in alive)]
    if cluster.tls:
        t = cluster.tls
        args += [
            "--cacert",
            str(t.ca_cert),
            "--cert",
            str(t.client_cert),
            "--key",
            str(t.client_key),
        ]
    args += ["endpoint", "status", "-w", "json", "--command-timeout=1s"]
    env = {**os.environ, "ETCDCTL_API": "3"}
    while True:
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=10)
        try:
            rows = json.loads(proc.stdout or "[]")
            leaders = {str(r["Status"]["leader"]) for r in rows}
        except (ValueError, KeyError, TypeError):
            leaders = set()
        if len(rows if proc.stdout else []) == len(alive) and len(leaders) == 1:
            (lead,) = leaders
            if lead not in (old_id, "0"):
                return time.monotonic() - killed_at
        if time.monotonic() - killed_at > 30:
            raise RuntimeError("no new leader within 30 s")
        time.sleep(0.01)


def one_kill(cluster: EtcdCluster, pool_ok: bool, token: str, n: int) -> dict[str, float | None]:
    lead = cluster.wait_leader()
    old_id = str(lead.status()["header"]["member_id"])
    follower = next(m for m in cluster.members if m is not lead)
    s = settings_of(cluster)
    stop = threading.Event()
    reader, writer_f, watch_ds, feeder = (Datastore.connect(s) for _ in range(4))
    pin(reader, lead)
    pin(writer_f, follower)
    pin(watch_ds, lead)
    prefix = f"/calico/bench-{token}-{n}/"
    written: dict[str, float] = {}
    seen: list[tuple[float, str]] = []
    seq = [0]

    def feed() -> bool:
        seq[0] += 1
        key = f"{prefix}{seq[0]:08d}"
        t = time.monotonic()
        feeder.kv_put(key, "x")
        written[key] = t
        time.sleep(0.02)
        return True

    def follow() -> None:
        for u in PrefixSyncer(watch_ds, prefix, retry_interval=0.1).updates(stop):
            if isinstance(u, Change):
                seen.append((time.monotonic(), u.key))

    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    env = {**clean, **cluster.client_env(), "CALICOCTL_CONFIG": "/nonexistent"}

    def calicoctl() -> bool:
        proc = subprocess.run(
            [str(BIN / "calicoctl"), "get", "profiles"], env=env, capture_output=True, timeout=60
        )
        return proc.returncode == 0

    cni_seq = [0]
    dels: list[threading.Thread] = []
    netconf = json.dumps({"cniVersion": "0.4.0", "name": "bench", "type": "calico-ipam",
                          "ipam": {"type": "calico-ipam"}})  # fmt: skip

    def cni_add() -> bool:
        cni_seq[0] += 1
        cid = f"{token}{n}x{cni_seq[0]}"
        base = {**env, "CNI_CONTAINERID": cid, "CNI_NETNS": "/dev/null", "CNI_IFNAME": "eth0",
                "CNI_PATH": str(BIN), "CALICO_CNI_SOCKET": "", "CALICO_NODENAME": "bench-node"}  # fmt: skip
        add = subprocess.run([str(BIN / "calico-ipam")], input=netconf, text=True,
                             env={**base, "CNI_COMMAND": "ADD"}, capture_output=True, timeout=60)  # fmt: skip

        def release() -> None:  # beside the next ADD, as a runtime's DEL would be
            subprocess.run([str(BIN / "calico-ipam")], input=netconf, text=True,
                           env={**base, "CNI_COMMAND": "DEL"}, capture_output=True, timeout=60)  # fmt: skip

        dels.append(threading.Thread(target=release))
        dels[-1].start()
        return add.returncode == 0

    loops = [
        Loop("Datastore reads (client on the leader)", lambda: reader.kv_get(prefix) or True, stop),
        Loop(
            "Datastore writes (client on a follower)",
            lambda: writer_f.kv_put(prefix + "w", "1") > 0,
            stop,
        ),  # fmt: skip
        Loop("feeder", feed, stop),
        Loop("calicoctl get profiles (new process each)", calicoctl, stop),
    ]
    if pool_ok:
        loops.append(Loop("CNI ADD, calico-ipam (new process each)", cni_add, stop))
    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    for loop in loops:
        loop.thread.start()
    deadline = time.monotonic() + 30
    while not seen or any(not loop.successes for loop in loops):
        if time.monotonic() > deadline:
            raise RuntimeError("components never all succeeded before the kill")
        time.sleep(0.05)
    time.sleep(0.3)
    killed_at = time.monotonic()
    lead.kill()
    elect = election_time(cluster, lead, old_id, killed_at)
    time.sleep(BUDGET + 1.5)
    stop.set()
    for loop in loops:
        loop.thread.join(60)
    watcher.join(10)
    for t in dels:
        t.join(60)
    out: dict[str, float | None] = {"etcd leader election (etcdctl endpoint status)": elect}
    for loop in loops:
        if loop.name == "feeder":
            continue
        out[loop.name] = loop.recovery(killed_at, started_after=True)
    watch = None
    for at, key in seen:
        if written.get(key, 0) >= killed_at and at > killed_at:
            watch = at - killed_at
            break
    out["PrefixSyncer watch (on the leader)"] = watch
    for ds in (reader, writer_f, watch_ds, feeder):
        ds.kv_delete_prefix(prefix) if ds is feeder else None
        ds.close()
    cluster.restart(lead)
    cluster.wait_leader()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--no-tls", action="store_true")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    token = secrets.token_hex(2)
    pki = None if args.no_tls else make_pki(base / "pki", [])
    cluster = EtcdCluster.local(base, args.members, name=f"bench{token}", tls=pki)
    results: list[dict[str, float | None]] = []
    try:
        cluster.start()
        ds = Datastore.connect(settings_of(cluster))
        ds.apply(IPPool(metadata=Metadata(name="bench"), spec=IPPoolSpec(cidr="10.99.0.0/16")))
        ds.close()
        for n in range(args.kills):
            results.append(one_kill(cluster, True, token, n))
            print(f"kill {n + 1}/{args.kills}: " + ", ".join(
                f"{k.split(' (')[0]} {v:.2f}s" if v is not None else f"{k} never"
                for k, v in results[-1].items()
            ), file=sys.stderr, flush=True)  # fmt: skip
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    ref_key = "etcd leader election (etcdctl endpoint status)"
    ref = statistics.median(r[ref_key] for r in results)
    tls = "TLS, client certificates" if pki else "plain http"
    print(f"\n{args.members}-member etcd ({tls}), leader SIGKILLed {args.kills} times; p50 seconds")
    print("from the kill until the component next succeeds; budget 3 s.\n")
    print("| component | p50 | max | etcd election p50 | ratio | within 3 s |")
    print("|---|---|---|---|---|---|")
    for key in results[0]:
        if key == ref_key:
            continue
        vals = [r[key] for r in results]
        if any(v is None for v in vals):
            print(f"| {key} | never (in {vals.count(None)} kills) | | {ref:.2f} | | no |")
            continue
        med = statistics.median(vals)
        ok = "yes" if max(vals) < BUDGET else "no"
        print(f"| {key} | {med:.2f} | {max(vals):.2f} | {ref:.2f} | {med / ref:.2f} | {ok} |")
    print(f"| ({ref_key}) | {ref:.2f} | {max(r[ref_key] for r in results):.2f} | | 1.00 | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
