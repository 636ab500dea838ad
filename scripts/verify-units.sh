#!/usr/bin/env bash
# Verifies the unit files with `systemd-analyze verify`. The units name the installed binary
# (/usr/bin/kmip-agent); here a copy points at this checkout's build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "verify-units: systemd-analyze not found: run scripts/setup.sh" >&2; exit 1; }
[ -f dist/kmip-agent.mjs ] || { echo "verify-units: dist/kmip-agent.mjs is not built: run scripts/setup.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#!/bin/sh\nexec %s %s "$@"\n' "$(command -v node)" "$PWD/dist/kmip-agent.mjs" >"$work/kmip-agent"
chmod 0755 "$work/kmip-agent"
for unit in systemd/*.service systemd/*.socket; do
  [ -e "$unit" ] || continue
  sed "s|/usr/bin/kmip-agent|$work/kmip-agent|g" "$unit" >"$work/$(basename "$unit")"
done
systemd-analyze verify "$work"/*.service
# systemd-analyze only checks that ExecStart's binary exists: check that the command it runs does too.
for unit in "$work"/*.service; do
  exec_start=$(sed -n 's/^ExecStart=//p' "$unit" | head -1)
  # shellcheck disable=SC2086 # the command line is split as systemd splits it (no quoting in our units)
  $exec_start --help >/dev/null || { echo "verify-units: $(basename "$unit"): \`$exec_start --help\` failed: the command does not exist" >&2; exit 1; }
done
echo "verify-units: $(ls systemd | tr '\n' ' ')ok"
