"""Two nodes churning short-lived pods side by side, as an operator's loop or a CI job does:
every `rkt run` exits with its app's status. A supervisor that killed what it took for its
own pod's leftovers by a namespace inode read after the app had gone killed, now and then,
the next pod's app on the other node (a freed inode number is soon given to a new
namespace), and that run exited 137 with nothing on stderr."""

from __future__ import annotations

import threading

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.root]

NET = {"name": "churn", "cniVersion": "0.1.0", "type": "calico", "ipam": {"type": "calico-ipam"}}


def test_pods_churned_on_two_nodes_all_exit_zero(lab):
    for node in lab.nodes:
        lab.write_net_conf(node, "10-calico-churn.conf", NET)
    results: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def churn(node: str) -> None:
        for _ in range(40):
            p = lab.exec(
                node, ["rkt", "run", "--net=churn", "docker://busybox", "--exec=/bin/true"],
                timeout=120,
            )  # fmt: skip
            with lock:
                results.append((node, p.returncode, p.stderr.strip()))

    try:
        threads = [threading.Thread(target=churn, args=(n,)) for n in lab.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert len(results) == 80
        assert [r for r in results if r[1] != 0] == []
    finally:
        for node in lab.nodes:
            lab.exec(node, ["rkt", "gc", "--grace-period=0s"], timeout=120)
            lab.exec(node, ["rm", "-f", "/etc/rkt/net.d/10-calico-churn.conf"], timeout=30)
