"""`rkt enter` and the kept app output, on real namespaces (issue 14, item 2).

A throwaway netns plays the node (tests/integration/test_rkt.py's `Node`); the pods run in
their own network and mount namespaces. What is checked is what an operator sees: the
command's output and exit code, the pod's own addresses and files from inside, one-line
errors for a wrong UUID, app or state, and `<pod>/log` holding the app's output whether the
pod ran in the foreground or detached.
"""

from __future__ import annotations

import pytest

from tests.integration.test_rkt import Node, pod_ip, run_httpd

pytestmark = pytest.mark.root


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    try:
        yield n
    finally:
        n.cleanup()


def test_enter_runs_in_the_pods_namespaces_and_root(node):
    uuid, ip = run_httpd(node)
    # The pod's own interface and address, and its image as root (the node's files, e.g.
    # this test's --local-config, are not there): the shell sees what the app sees.
    r = node.rkt(
        "enter", uuid[:8], "/bin/sh", "-c",
        "ip -o -4 addr show eth0; test -x /bin/busybox && echo image-root; "
        f"test -e {node.cfg} || echo no-host-files; exit 42",
    )  # fmt: skip
    assert r.returncode == 42, r.stderr
    assert f"inet {ip}/" in r.stdout
    assert "image-root" in r.stdout
    assert "no-host-files" in r.stdout and node.cfg.exists()
    # The node's own namespace has no eth0 and no such address.
    host = node.sh("ip", "-o", "-4", "addr", capture_output=True, text=True).stdout
    assert ip not in host
    # Written inside, seen by the app's overlay (the same root), not the image.
    assert node.rkt("enter", uuid, "/bin/sh", "-c", "echo mark > /tmp/x").returncode == 0
    assert node.rkt("enter", uuid, "cat", "/tmp/x").stdout == "mark\n"
    # The app's environment (AC_APP_NAME is set for the app only by rkt run).
    env = node.rkt("enter", "--app=busybox", uuid, "env").stdout.splitlines()
    assert "AC_APP_NAME=busybox" in env
    # `--` separates nothing more than the command: flags after the UUID are the command's.
    r = node.rkt("enter", uuid, "--", "sh", "-c", "exit 3")
    assert r.returncode == 3
    # rkt list and status are unaffected by an enter.
    assert "state=running" in node.rkt("status", uuid).stdout.splitlines()


def test_enter_errors_are_one_line(node):
    uuid, _ = run_httpd(node)
    for argv, says in (
        (["enter", "0123abcd"], "no pod found with UUID '0123abcd'"),
        (["enter", "--app=nginx", uuid], "has no app 'nginx' (its app is 'busybox')"),
        (["enter", uuid, "/no/such"], "cannot run '/no/such': no such file or directory"),
        (["enter"], "give the UUID of a running pod"),
    ):
        r = node.rkt(*argv)
        assert r.returncode != 0, argv
        assert r.stdout == ""
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert says in r.stderr, r.stderr
    assert node.rkt("stop", "--force", uuid).returncode == 0
    r = node.rkt("enter", uuid)
    assert r.returncode == 254
    assert "is not running (state exited)" in r.stderr


def test_app_output_is_kept_foreground_and_detached(node):
    r = node.rkt(
        "run", "--net=none", "docker://busybox", "--exec=/bin/sh", "--",
        "-c", "echo out; echo err >&2; exit 7",
    )  # fmt: skip
    assert r.returncode == 7
    assert r.stdout.splitlines() == ["out", "err"]  # still on rkt's stdout, as before
    (pod,) = node.pods_json()
    log = node.dir / "pods" / pod["name"] / "log"
    assert log.read_text().splitlines() == ["out", "err"]  # ... and kept
    r = node.rkt(
        "run", "--detach", "--net=ptpnet", "docker://busybox", "--exec=/bin/sh", "--",
        "-c", "echo detached; exit 0",
    )  # fmt: skip
    uuid = r.stdout.strip()
    node.rkt("status", "--wait=10s", uuid)
    assert (node.dir / "pods" / uuid / "log").read_text() == "detached\n"
    assert pod_ip(node, uuid).startswith("10.199.")


def test_enter_a_host_root_pod_joins_only_its_network(node):
    """calico/node runs on the host's root: enter joins its netns (on a pod network) and
    nothing else, so the host's files are there and the pod's address too."""
    r = node.rkt(
        "run", "--detach", "--net=ptpnet", "calico/node", "--exec=/bin/sleep", "--", "60"
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    uuid = r.stdout.strip()
    ip = pod_ip(node, uuid)
    r = node.rkt(
        "enter", uuid, "sh", "-c", f"ip -o -4 addr show eth0; test -d {node.cfg} && echo host-files"
    )
    assert r.returncode == 0, r.stderr
    assert f"inet {ip}/" in r.stdout and "host-files" in r.stdout
