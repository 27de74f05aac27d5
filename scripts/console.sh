#!/usr/bin/env bash
# Set up (scripts/setup.sh), bring up a 2-node local lab, and open the console on it.
# `--web [--host H] [--port P] [--allow-changes]`: serve it to browsers instead (read-only,
# 127.0.0.1:8022 unless told otherwise; off loopback it prints the address with its token).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/calico-lab up
if [ -f console/app.py ]; then
  exec .venv/bin/calico-console "$@"
else
  .venv/bin/calico-lab status
fi
