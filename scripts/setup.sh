#!/usr/bin/env bash
# Everything a fresh Debian (bookworm) machine needs, idempotent: Debian packages, a venv,
# the project installed editable with its test extras. Run as root (the lab needs it).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  etcd-server etcd-client          # the datastore (etcd 3.4) and etcdctl for benchmarks
  iptables ipset iproute2 conntrack # the dataplane the agent programs
  nftables                         # the lab's guard on its fabric (a bridge filter)
  containernetworking-plugins      # reference ptp/host-local for rkt's default networks and benches
  busybox-static                   # the pod image (static: needs no libraries in the rootfs)
  iperf3                           # throughput benchmark
  bird2                            # BGP: the lab's ToR router (and the nodes' BIRD)
  openssl                          # the lab's etcd CA and certificates (--etcd-tls)
  chromium                         # the web console's browser test (Playwright drives it; no browser download)
  util-linux procps                # nsenter, unshare, mount; pgrep
  python3-venv
  gcc libc6-dev                    # builds the C CNI launcher (plugin/launcher.c); without it, the Python one
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (the lab makes network namespaces and mounts)" >&2
  exit 1
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The venv's interpreter: Debian's own python3 (python3-venv above), not whatever `python3`
# is first on PATH. Measured on this kind of machine beside a pyenv build of 3.11
# (--enable-shared): `python -S -c pass` 6 vs 8 ms, json.loads 13% and plain Python code
# 17% faster, `import console.app` 251 vs 289 ms. rkt, calicoctl and the CNI fallback are
# one interpreter start each; `rkt run` -> first TCP answer went 44 -> 37 ms (bench/README.md).
# A venv built on another interpreter is rebuilt once; PYTHON=... still chooses one.
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3
want_home=$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")
if [ -f .venv/pyvenv.cfg ] && ! grep -qx "home = $want_home" .venv/pyvenv.cfg; then
  echo "setup.sh: rebuilding .venv on $PYTHON (it was built on another interpreter)"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
.venv/bin/python -m pip install -q -e '.[test]'
# Bytecode for every module, as an installed package has it: read even where
# PYTHONDONTWRITEBYTECODE is set (each agent, calicoctl and rkt start compiled them anew)
.venv/bin/python -m compileall -q -j 0 calico calicoctl kernel plugin agent rkt console lab >/dev/null
# Namespace syscalls without ctypes: ~1.5 ms off every `rkt run` (kernel/_syscalls.c)
.venv/bin/python -m kernel.build_syscalls >/dev/null
# rkt without site processing: ~20 ms off every `rkt run` (rkt/launcher.py)
.venv/bin/python -m rkt.launcher .venv/bin >/dev/null
echo "setup.sh: ready (.venv)"
