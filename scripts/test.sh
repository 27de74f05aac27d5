#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: unit tests (pure, no root) and
# integration tests (real etcd, namespaces, iptables; need root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
