#!/usr/bin/env bash
# The main job on a fresh machine: setup (idempotent), then the demo against a real PyKMIP server.
# Usage (as root): bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node dist/scripts/demo.js
