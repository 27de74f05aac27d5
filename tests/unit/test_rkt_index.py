"""rkt/index.py: the node API's in-memory pod records give exactly what `Runtime.pods()`
reads from disk, re-read only the files that changed, and never trust a file young enough
to be replaced unnoticed (no root: real files, real flock)."""

from __future__ import annotations

import fcntl
import os
import shutil

from rkt.index import PodIndex
from rkt.pods import Runtime
from rkt.state import LOCK_FILE, STATE_FILE, AppState, NetworkState, PodState, write_state

OLD = 1_000_000_000  # an mtime (epoch seconds) long settled


def make_pod(rt: Runtime, n: int, state: str = "exited", **kw) -> PodState:
    uuid = f"{n:08x}-0000-4000-8000-000000000000"
    pdir = rt.pod_dir(uuid)
    os.makedirs(pdir, exist_ok=True)
    open(os.path.join(pdir, LOCK_FILE), "w").close()
    pod = PodState(
        uuid=uuid,
        state=state,
        app=AppState("busybox", "registry-1.docker.io/library/busybox:latest", "sha512-ab"),
        created=100.0 + n,
        networks=[NetworkState("network1", "eth0", ip4=f"10.0.0.{n}", added=True)],
        **kw,
    )
    write_state(pdir, pod)
    return pod


def settle(rt: Runtime, pod: PodState, when: int = OLD) -> None:
    os.utime(os.path.join(rt.pod_dir(pod.uuid), STATE_FILE), (when, when))


def runtime(tmp_path) -> Runtime:
    return Runtime(str(tmp_path), str(tmp_path / "cfg"), warn=lambda m: None)


def test_the_index_answers_what_the_runtime_reads(tmp_path):
    rt = runtime(tmp_path)
    pods = [make_pod(rt, 3), make_pod(rt, 1, "running", pid=42), make_pod(rt, 2, "prepared")]
    pods.append(make_pod(rt, 4, "garbage"))
    for p in pods:
        settle(rt, p)
    index = PodIndex(rt)
    assert index.pods() == rt.pods()
    assert [p.uuid for p, _ in index.pods()] == sorted(p.uuid for p in pods)  # oldest first
    # a running record nobody holds the lock of has exited, as rkt list says
    assert dict((p.uuid, s) for p, s in index.pods())[pods[1].uuid] == "exited"


def test_unchanged_settled_files_are_not_read_again(tmp_path):
    rt = runtime(tmp_path)
    pods = [make_pod(rt, i) for i in range(1, 6)]
    for p in pods:
        settle(rt, p)
    index = PodIndex(rt)
    first = index.pods()
    assert index.reads == 5
    again = index.pods()
    assert index.reads == 5 and again == first
    assert all(a[0] is b[0] for a, b in zip(first, again, strict=True))


def test_a_rewritten_pod_is_read_again_and_its_new_state_shown(tmp_path):
    rt = runtime(tmp_path)
    pod = make_pod(rt, 1, "running", pid=7)
    other = make_pod(rt, 2)
    settle(rt, pod)
    settle(rt, other)
    index = PodIndex(rt)
    index.pods()
    pod.state, pod.app.exit_code = "exited", 3
    write_state(rt.pod_dir(pod.uuid), pod)
    settle(rt, pod, OLD + 5)
    got = {p.uuid: (p, s) for p, s in index.pods()}
    assert index.reads == 3  # only the rewritten one
    assert got[pod.uuid][1] == "exited" and got[pod.uuid][0].app.exit_code == 3


def test_new_and_removed_pods_show_at_once(tmp_path):
    rt = runtime(tmp_path)
    a, b = make_pod(rt, 1), make_pod(rt, 2)
    settle(rt, a)
    settle(rt, b)
    index = PodIndex(rt)
    assert len(index.pods()) == 2
    shutil.rmtree(rt.pod_dir(a.uuid))
    c = make_pod(rt, 3)
    assert [p.uuid for p, _ in index.pods()] == [b.uuid, c.uuid] == [p.uuid for p, _ in rt.pods()]


def test_a_young_file_is_never_trusted_even_if_it_looks_unchanged(tmp_path):
    """The racy case: a file replaced within one clock tick by one of the same size, with
    the same times and (a freed number come back) the same inode, looks unchanged to stat.
    A file younger than SETTLED_SECONDS is therefore read again on every call."""
    rt = runtime(tmp_path)
    pod = make_pod(rt, 1, "running", pid=1234)
    index = PodIndex(rt)
    index.pods()
    path = os.path.join(rt.pod_dir(pod.uuid), STATE_FILE)
    st = os.stat(path)
    with open(path, "r+") as f:  # same size, same inode, same mtime: stat cannot tell
        text = f.read()
        f.seek(0)
        f.write(text.replace('"pid": 1234', '"pid": 4321'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_ino == st.st_ino
    assert index.pods()[0][0].pid == 4321
    assert index.reads == 2


def test_liveness_is_judged_on_every_call(tmp_path):
    """The lock is not cached: a supervisor that takes or drops it (or dies) without writing
    pod.json changes the reported state at once."""
    rt = runtime(tmp_path)
    pod = make_pod(rt, 1, "running", pid=99)
    settle(rt, pod)
    index = PodIndex(rt)
    assert index.pods()[0][1] == "exited"
    fd = os.open(os.path.join(rt.pod_dir(pod.uuid), LOCK_FILE), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert index.pods()[0][1] == "running" == rt.pods()[0][1]
    finally:
        os.close(fd)
    assert index.pods()[0][1] == "exited" == rt.pods()[0][1]
    assert index.reads == 1


def test_a_half_made_pod_is_skipped_like_the_runtime_skips_it(tmp_path):
    rt = runtime(tmp_path)
    good = make_pod(rt, 1)
    os.makedirs(rt.pod_dir("ffffffff-0000-4000-8000-000000000000"))  # no pod.json yet
    broken = rt.pod_dir("eeeeeeee-0000-4000-8000-000000000000")
    os.makedirs(broken)
    with open(os.path.join(broken, STATE_FILE), "w") as f:
        f.write('{"uuid": "eeee')
    index = PodIndex(rt)
    assert [p.uuid for p, _ in index.pods()] == [good.uuid] == [p.uuid for p, _ in rt.pods()]


def test_no_pods_dir_is_no_pods(tmp_path):
    assert PodIndex(runtime(tmp_path / "none")).pods() == []
