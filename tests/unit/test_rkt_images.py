"""Image names and the local store (busybox built from the host's busybox-static); no root."""

from __future__ import annotations

import os
import subprocess
import tarfile

import pytest

from rkt.images import ImageError, ImageStore, app_name_for, parse_image_ref


@pytest.mark.parametrize(
    "text",
    ["docker://busybox", "busybox", "docker://busybox:latest", "docker://docker.io/library/busybox",
     "registry-1.docker.io/library/busybox:latest"],
)  # fmt: skip
def test_every_busybox_spelling(text):
    ref = parse_image_ref(text)
    assert (ref.name, ref.version) == ("busybox", "latest")


def test_names_and_tags():
    ref = parse_image_ref("example.com:5000/team/app:1.2")
    assert (ref.name, ref.version, ref.docker) == ("example.com:5000/team/app", "1.2", False)
    assert app_name_for("calico/node") == "node" and app_name_for("busybox") == "busybox"
    with pytest.raises(ImageError):
        parse_image_ref("docker://")


def test_unknown_image(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        ImageStore(str(tmp_path)).resolve("docker://nginx")


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static")
def test_busybox_image(tmp_path):
    store = ImageStore(str(tmp_path))
    img = store.resolve("docker://busybox")
    root = img.rootfs
    assert os.path.islink(os.path.join(root, "bin", "httpd"))
    with open(os.path.join(root, "etc", "passwd")) as f:
        assert "root:x:0:0" in f.read()
    for d in ("proc", "dev", "tmp", "root"):
        assert os.path.isdir(os.path.join(root, d))
    assert store.resolve("busybox").id == img.id  # built once
    assert [i.display_name for i in store.list()] == ["registry-1.docker.io/library/busybox:latest"]


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static")
def test_wget_wrapper_timeout(tmp_path):
    """The wrapper turns -T into busybox's `timeout` (plain busybox wget -T segfaults)."""
    store = ImageStore(str(tmp_path))
    wrapper = os.path.join(store.resolve("busybox").rootfs, "bin", "wget")
    # Loopback port 1 refuses at once: the wrapper must pass wget's own failure through.
    proc = subprocess.run(
        [wrapper, "-T", "1", "http://127.0.0.1:1/x"], capture_output=True, text=True, timeout=10
    )
    assert proc.returncode == 1
    assert "Connection refused" in proc.stderr or "can't connect" in proc.stderr
    proc = subprocess.run(
        ["/bin/sh", wrapper, "-T", "x", "http://127.0.0.1:1/"], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "invalid number" in proc.stderr


def test_import_tarball_and_folder(tmp_path):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "hello").write_text("hi")
    tar = tmp_path / "root.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(src, arcname=".")
    store = ImageStore(str(tmp_path / "d"))
    a = store.import_rootfs(str(tar), "example.com/hello:1.0", exec_=["/bin/hello"])
    b = store.import_rootfs(str(src), "folder")
    assert os.path.exists(os.path.join(a.rootfs, "bin", "hello"))
    assert os.path.isdir(os.path.join(b.rootfs, "proc"))
    assert (a.app_name, a.exec, b.exec) == ("hello", ["/bin/hello"], ["/bin/sh"])
    assert store.resolve("example.com/hello:1.0").id == a.id
    with pytest.raises(ImageError, match="already exists"):
        store.import_rootfs(str(src), "folder")
    store.remove("folder")
    with pytest.raises(ImageError):
        store.resolve("folder")


def _tarball(path, members):
    """members: (name, kind, target) with kind 'file', 'sym' or 'link'."""
    import io

    with tarfile.open(path, "w") as tf:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = b"x"
                info.size, info.mode = len(data), 0o4777
                tf.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = target
                tf.addfile(info)


@pytest.mark.parametrize("own_checks", [False, True], ids=["python-filter", "own-checks"])
@pytest.mark.parametrize(
    "members",
    [
        [("../evil", "file", "")],
        [("bin", "sym", "/"), ("bin/../../evil", "file", "")],
        [("up", "sym", ".."), ("up/evil", "file", "")],
        [("hard", "link", "../../etc/passwd")],
    ],
    ids=["dotdot", "through-abs-symlink", "through-rel-symlink", "hardlink-out"],
)
def test_a_tarball_cannot_write_outside_its_rootfs(tmp_path, monkeypatch, members, own_checks):
    """Python 3.11.2 (Debian's, the venv's) has no tarfile filter: the store checks members
    itself, with the same verdicts as the filter where Python has one."""
    if own_checks:
        monkeypatch.delattr(tarfile, "tar_filter", raising=False)
    elif not hasattr(tarfile, "tar_filter"):
        pytest.skip("this Python's tarfile has no extraction filters")
    tar = tmp_path / "bad.tar"
    _tarball(tar, members)
    store = ImageStore(str(tmp_path / "d"))
    with pytest.raises(ImageError, match="not a rootfs tarball"):
        store.import_rootfs(str(tar), "bad")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "d" / "evil").exists()


def test_own_checks_drop_set_id_bits(tmp_path, monkeypatch):
    monkeypatch.delattr(tarfile, "tar_filter", raising=False)
    tar = tmp_path / "ok.tar"
    _tarball(tar, [("bin/tool", "file", ""), ("bin/alias", "sym", "tool")])
    img = ImageStore(str(tmp_path / "d")).import_rootfs(str(tar), "ok")
    mode = os.stat(os.path.join(img.rootfs, "bin", "tool")).st_mode & 0o7777
    assert mode == 0o755 and os.readlink(os.path.join(img.rootfs, "bin", "alias")) == "tool"
