"""kernel._syscalls (the C module) and the ctypes path behind kernel.ns give the same results
and the same errors. Needs root for the namespace calls (the suite runs as root)."""

from __future__ import annotations

import errno
import os

import pytest

from kernel import build_syscalls
from kernel import ns as kns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespace syscalls need root")


def test_the_module_is_built_where_a_compiler_is():
    """setup.sh builds it: a missing module would make every `rkt run` pay for ctypes."""
    if build_syscalls.find_compiler() is None:
        pytest.skip("no C compiler")
    assert kns._sys is not None, (
        "kernel._syscalls is not built: run python -m kernel.build_syscalls"
    )


@pytest.fixture(params=["c-module", "ctypes"])
def path(request, monkeypatch):
    if request.param == "ctypes":
        monkeypatch.setattr(kns, "_sys", None)
    elif kns._sys is None:
        pytest.skip("kernel._syscalls is not built")
    return request.param


def test_errors_are_worded_the_same(path, tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(OSError) as umount_err:
        kns.umount(missing)
    assert umount_err.value.errno == errno.ENOENT
    assert str(umount_err.value) == f"[Errno 2] umount {missing}: No such file or directory"
    with pytest.raises(OSError) as mount_err:
        kns.mount("none", str(tmp_path), "no-such-fs", 0, None)
    assert mount_err.value.errno == errno.ENODEV
    assert f"mount {tmp_path}: " in str(mount_err.value)
    with pytest.raises(OSError) as setns_err:
        kns.setns(-1)
    assert setns_err.value.errno == errno.EBADF


def test_unshare_and_setns_move_a_process(path):
    """In a forked child: a new netns is not the parent's, and setns takes it back."""
    home = os.stat(kns.THREAD_NETNS).st_ino
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(kns.THREAD_NETNS, os.O_RDONLY)
            kns.unshare(kns.CLONE_NEWNET)
            moved = os.stat(kns.THREAD_NETNS).st_ino != home
            kns.setns(fd, kns.CLONE_NEWNET)
            back = os.stat(kns.THREAD_NETNS).st_ino == home
            code = 0 if (moved and back) else 3
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    answer = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert answer == b"\0"


def test_a_failed_build_says_why(tmp_path):
    assert build_syscalls.build(cc=str(tmp_path / "no-cc")).startswith(str(tmp_path / "no-cc"))
