#!/usr/bin/env bash
# Set up (scripts/setup.sh), bring up a 2-node local lab, and open the console on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/calico-lab up
if [ -f console/app.py ]; then
  exec .venv/bin/calico-console "$@"
else
  .venv/bin/calico-lab status
fi
