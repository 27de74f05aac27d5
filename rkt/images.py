"""Local images: name resolution, the image store under ``<dir>/images``, and the built-ins.

Nothing is ever fetched from a registry. Two images are built in:
- ``docker://busybox`` (also ``busybox``, ``docker://busybox:latest``,
  ``docker.io/library/busybox``): a rootfs made on first use from Debian's busybox-static -
  /bin/busybox with its applet links, /etc/passwd and /etc/group, the usual mount points -
  plus a /bin/wget wrapper that makes ``wget -T`` work (see WGET_WRAPPER).
- ``calico/node``: the host's own root (no chroot), app name ``node``, running
  ``calico-node`` (the node service, which supervises ``calico-agent``); the lab runs it as
  this pod with ``--net=host``.
Anything else must have been imported (`rkt image import SOURCE NAME`), from a rootfs
directory or tarball.

Layout: ``<dir>/images/<quoted name>@<version>/manifest.json`` and ``rootfs/``.

`rkt run` resolves an image on its critical path, so `tarfile` (13 ms to import here),
`hashlib`, `shutil` and `subprocess` are imported only by the code that imports or builds an
image.
"""

from __future__ import annotations

import os
import time

from rkt import jsonc
from rkt.record import asdict, factory, record

TYPE_CHECKING = False  # typing costs import time on every `rkt run`
if TYPE_CHECKING:
    from typing import Any

DOCKER_REGISTRY = "registry-1.docker.io"
_DOCKER_HOSTS = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")
BUSYBOX = "busybox"
NODE = "calico/node"
BUSYBOX_PATH = "/bin/busybox"
IMAGE_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageError(Exception):
    """Unknown or unusable image; the message is shown to the user."""


@record(frozen=True)
class ImageRef:
    name: str  # "busybox", "calico/node", "example.com/app"
    version: str  # "latest" unless a tag was given
    docker: bool  # given as docker://...

    @property
    def key(self) -> str:
        # No ':' or ',' in the dir name: overlayfs options use them as separators.
        return f"{quote(self.name)}@{quote(self.version)}"


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str) -> str:
    """`urllib.parse.quote(text, safe="")`: every byte of the UTF-8 form but the unreserved
    ones as %XX. Written out because urllib.parse costs ~4 ms to import on every `rkt run`."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def parse_image_ref(text: str) -> ImageRef:
    """``docker://busybox:latest`` -> ImageRef('busybox', 'latest', docker=True).

    Docker Hub spellings (``docker.io/library/busybox``) collapse to the short name, so every
    way of naming busybox finds the same image.
    """
    s = text.strip()
    docker = s.startswith("docker://")
    if docker:
        s = s[len("docker://") :]
    if not s or s.startswith("/") or " " in s:
        raise ImageError(f"invalid image name {text!r}")
    s = s.split("@", 1)[0]  # a digest cannot be honoured without a registry; the name can
    name, version = s, "latest"
    slash = s.rfind("/")
    colon = s.rfind(":")
    if colon > slash:
        name, version = s[:colon], s[colon + 1 :]
    for host in _DOCKER_HOSTS:
        if name.startswith(host):
            name = name[len(host) :]
            break
    if name.startswith("library/"):
        name = name[len("library/") :]
    if not name or not version:
        raise ImageError(f"invalid image name {text!r}")
    return ImageRef(name, version, docker)


def app_name_for(name: str) -> str:
    """rkt derives the app name from the image name: busybox -> busybox, calico/node -> node."""
    base = name.rsplit("/", 1)[-1]
    out = "".join(c if c.isalnum() or c == "-" else "-" for c in base.lower()).strip("-")
    return out or "app"


@record
class Image:
    id: str
    name: str
    version: str
    display_name: str  # as rkt lists it
    app_name: str
    exec: list[str]
    env: dict[str, str] = factory(dict)
    workdir: str = "/"
    host_root: bool = False  # True: run on the host's root, no mount namespace
    imported: float = 0.0
    size: int = 0
    source: str = ""
    path: str = ""  # the image dir (not stored)

    @property
    def rootfs(self) -> str:
        return os.path.join(self.path, "rootfs")

    def manifest(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d


# Debian's busybox-static 1.35 is built without FEATURE_WGET_TIMEOUT, yet wget's option
# string still declares "-T" as a numeric option whose destination pointer is then NULL
# (busybox passes NULL for the disabled feature): `wget -T 3 ...` dies with SIGSEGV while
# parsing its arguments (gdb: a 4-byte store through address 0 right after the number is
# converted). This wrapper takes -T N / -TN / --timeout[=]N out of the arguments and enforces
# the limit with busybox's `timeout` applet, printing busybox's own message when it expires.
# Difference to a real -T: it bounds the whole download, not each network read.
WGET_WRAPPER = r"""#!/bin/sh
# wget with -T: see rkt/images.py (busybox-static 1.35 segfaults on -T).
t=
n=$#
i=0
rest=0
while [ "$i" -lt "$n" ]; do
  a=$1; shift; i=$((i+1))
  if [ "$rest" = 1 ]; then set -- "$@" "$a"; continue; fi
  case $a in
    --) rest=1; set -- "$@" "$a" ;;
    -T|--timeout)
      if [ "$i" -ge "$n" ]; then echo "wget: option requires an argument -- 'T'" >&2; exit 1; fi
      t=$1; shift; i=$((i+1)) ;;
    --timeout=*) t=${a#--timeout=} ;;
    -T*) t=${a#-T} ;;
    -[cqS]T*|-[cqS][cqS]T*|-[cqS][cqS][cqS]T*)
      pre=${a%%T*}; val=${a#*T}
      set -- "$@" "$pre"
      if [ -n "$val" ]; then t=$val
      elif [ "$i" -lt "$n" ]; then t=$1; shift; i=$((i+1))
      else echo "wget: option requires an argument -- 'T'" >&2; exit 1; fi ;;
    *) set -- "$@" "$a" ;;
  esac
done
if [ -z "$t" ]; then exec /bin/busybox wget "$@"; fi
case $t in
  *[!0-9]*) echo "wget: invalid number '$t'" >&2; exit 1 ;;
esac
if [ "$t" -eq 0 ]; then exec /bin/busybox wget "$@"; fi
# The outer subshell's stderr is /dev/null because ash reports "Terminated" for a killed
# child on its own stderr; wget itself keeps the real stderr (fd 3).
( exec 3>&2 2>/dev/null
  ( exec 2>&3 3>&-; exec /bin/busybox timeout "$t" /bin/busybox wget "$@" )
  exit $? )
rc=$?
if [ "$rc" -eq 143 ]; then
  echo "wget: download timed out" >&2
  exit 1
fi
exit "$rc"
"""

# A few lines, as a busybox image has them, so `wget http://pod/etc/passwd` fetches a real file.
PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
mail:x:8:
www-data:x:33:
operator:x:37:
users:x:100:
nogroup:x:65534:
"""
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


class ImageStore:
    def __init__(self, data_dir: str) -> None:
        self.dir = os.path.join(data_dir, "images")

    # -- lookup -------------------------------------------------------------------------------
    def _load(self, path: str) -> Image | None:
        try:
            with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
                m = jsonc.loads(f.read())
        except (OSError, ValueError):
            return None
        known = Image.__record_fields__
        return Image(path=path, **{k: v for k, v in m.items() if k in known and k != "path"})

    def get(self, ref: ImageRef) -> Image | None:
        return self._load(os.path.join(self.dir, ref.key))

    def resolve(self, text: str) -> Image:
        """The image `text` names, building a built-in one on first use."""
        ref = parse_image_ref(text)
        img = self.get(ref)
        if img is not None:
            return img
        if ref.name == BUSYBOX:
            return self.build_busybox(ref)
        if ref.name == NODE:
            return self.register_node(ref)
        raise ImageError(
            f"image {text!r} not found: only local images can be run "
            f"(built in: docker://busybox, calico/node; others via `rkt image import`)"
        )

    def list(self) -> list[Image]:
        out = []
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        for n in names:
            if n.startswith("."):
                continue
            img = self._load(os.path.join(self.dir, n))
            if img is not None:
                out.append(img)
        return out

    def touch(self, img: Image) -> None:
        """Record 'last used' as the mtime of a marker file: cheaper than rewriting the manifest."""
        p = os.path.join(img.path, "last-used")
        try:
            os.utime(p)
        except FileNotFoundError:
            open(p, "w").close()

    def last_used(self, img: Image) -> float | None:
        try:
            return os.stat(os.path.join(img.path, "last-used")).st_mtime
        except OSError:
            return None

    def remove(self, text: str) -> Image:
        import shutil

        ref = parse_image_ref(text)
        img = self.get(ref)
        if img is None:
            raise ImageError(f"image {text!r} not found")
        shutil.rmtree(img.path)
        return img

    # -- building -----------------------------------------------------------------------------
    def _commit(self, img: Image, tmp: str) -> Image:
        """Move a fully built image dir into place; a concurrent builder that won keeps its copy."""
        import shutil

        final = os.path.join(self.dir, ImageRef(img.name, img.version, False).key)
        img.path = final
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            f.write(jsonc.dumps(img.manifest(), indent=1))
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            existing = self._load(final)
            if existing is None:
                raise
            return existing
        return img

    def _tmpdir(self) -> str:
        os.makedirs(self.dir, exist_ok=True)
        tmp = os.path.join(self.dir, f".build-{os.getpid()}-{os.urandom(4).hex()}")
        os.makedirs(os.path.join(tmp, "rootfs"))
        return tmp

    def build_busybox(self, ref: ImageRef | None = None) -> Image:
        """docker://busybox from the host's busybox-static: no registry, a real rootfs."""
        import hashlib
        import shutil
        import subprocess

        if not os.path.isfile(BUSYBOX_PATH):
            raise ImageError(
                f"cannot build docker://busybox: {BUSYBOX_PATH} missing (install busybox-static)"
            )
        ref = ref or ImageRef(BUSYBOX, "latest", True)
        tmp = self._tmpdir()
        try:
            root = os.path.join(tmp, "rootfs")
            for d in (
                "bin",
                "etc",
                "proc",
                "dev",
                "sys",
                "tmp",
                "root",
                "home",
                "var",
                "run",
                "usr",
            ):
                os.makedirs(os.path.join(root, d), exist_ok=True)
            os.chmod(os.path.join(root, "tmp"), 0o1777)
            os.chmod(os.path.join(root, "root"), 0o700)
            for link, target in (("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin")):
                os.symlink(target, os.path.join(root, link))
            bb = os.path.join(root, "bin", "busybox")
            shutil.copy2(BUSYBOX_PATH, bb)
            applets = subprocess.run(
                [BUSYBOX_PATH, "--list"], capture_output=True, text=True, check=True
            ).stdout.split()
            for applet in applets:
                if applet in ("busybox", "wget") or "/" in applet:
                    continue
                os.symlink("busybox", os.path.join(root, "bin", applet))
            with open(os.path.join(root, "bin", "wget"), "w") as f:
                f.write(WGET_WRAPPER)
            os.chmod(os.path.join(root, "bin", "wget"), 0o755)
            for name, text in (("passwd", PASSWD), ("group", GROUP), ("hosts", HOSTS)):
                with open(os.path.join(root, "etc", name), "w") as f:
                    f.write(text)
            h = hashlib.sha512()
            with open(bb, "rb") as f:
                h.update(f.read())
            h.update(WGET_WRAPPER.encode() + PASSWD.encode() + GROUP.encode())
            img = Image(
                id=f"sha512-{h.hexdigest()}",
                name=ref.name,
                version=ref.version,
                display_name=f"{DOCKER_REGISTRY}/library/{ref.name}:{ref.version}",
                app_name=BUSYBOX,
                exec=["sh"],
                env={"PATH": IMAGE_PATH_ENV, "HOME": "/root"},
                imported=time.time(),
                size=_du(root),
                source=f"{BUSYBOX_PATH} (Debian busybox-static)",
            )
            return self._commit(img, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def register_node(self, ref: ImageRef | None = None) -> Image:
        """calico/node: the host's root, running the node agent (no rootfs to build)."""
        import hashlib

        ref = ref or ImageRef(NODE, "latest", False)
        tmp = os.path.join(self._tmpdir())
        os.rmdir(os.path.join(tmp, "rootfs"))
        img = Image(
            id="sha512-" + hashlib.sha512(f"{ref.name}:{ref.version}:host".encode()).hexdigest(),
            name=ref.name,
            version=ref.version,
            display_name=f"{ref.name}:{ref.version}",
            app_name="node",
            exec=["calico-node"],
            host_root=True,
            imported=time.time(),
            source="host root filesystem",
        )
        return self._commit(img, tmp)

    def import_rootfs(
        self, source: str, name: str, exec_: list[str] | None = None, app_name: str = ""
    ) -> Image:
        """A rootfs directory or tarball (.tar, .tar.gz, .tgz, .tar.xz) stored as image `name`."""
        import hashlib
        import shutil
        import tarfile

        ref = parse_image_ref(name)
        if self.get(ref) is not None:
            raise ImageError(
                f"image {ref.name}:{ref.version} already exists (rkt image rm it first)"
            )
        tmp = self._tmpdir()
        root = os.path.join(tmp, "rootfs")
        try:
            h = hashlib.sha512()
            if os.path.isdir(source):
                os.rmdir(root)
                shutil.copytree(source, root, symlinks=True)
                h.update(f"dir:{os.path.abspath(source)}:{time.time()}".encode())
            elif os.path.isfile(source):
                with open(source, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                try:
                    with tarfile.open(source) as tf:
                        _extract_rootfs(tf, root)
                except tarfile.TarError as e:
                    raise ImageError(
                        f"cannot import {source}: not a rootfs tarball ({e})"
                    ) from None
            else:
                raise ImageError(f"cannot import {source}: no such file or directory")
            for d in ("proc", "dev", "tmp"):
                os.makedirs(os.path.join(root, d), exist_ok=True)
            img = Image(
                id=f"sha512-{h.hexdigest()}",
                name=ref.name,
                version=ref.version,
                display_name=f"{ref.name}:{ref.version}",
                app_name=app_name or app_name_for(ref.name),
                exec=exec_ or ["/bin/sh"],
                env={"PATH": IMAGE_PATH_ENV, "HOME": "/root"},
                imported=time.time(),
                size=_du(root),
                source=os.path.abspath(source),
            )
            return self._commit(img, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _du(root: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            total += st.st_size
    return total


def _extract_rootfs(tf: Any, root: str) -> None:
    """Extract a rootfs tarball under `root`, refusing members that would land outside it.

    Python's own "tar" extraction filter does exactly that (and drops set-id bits), but it
    arrived in a 3.11 point release (3.11.4): Debian bookworm's 3.11.2, which the venv is
    built on, lacks it. There the same checks run here, member by member, so a symlink
    extracted earlier is followed when the next member's place is judged."""
    import tarfile

    if hasattr(tarfile, "tar_filter"):
        tf.extractall(root, filter="tar")
        return
    real_root = os.path.realpath(root)
    for member in tf:
        member.name = member.name.lstrip("/")
        dest = os.path.realpath(os.path.join(real_root, member.name))
        if os.path.commonpath([real_root, dest]) != real_root:
            raise tarfile.TarError(f"{member.name!r} would be extracted outside the rootfs")
        if member.islnk():
            target = os.path.realpath(os.path.join(real_root, member.linkname.lstrip("/")))
            if os.path.commonpath([real_root, target]) != real_root:
                raise tarfile.TarError(f"{member.name!r} links outside the rootfs")
        if member.isfile() or member.isdir():
            member.mode &= ~0o7022  # no set-id or sticky bits, no group/other write
        tf.extract(member, real_root, set_attrs=not member.issym())
