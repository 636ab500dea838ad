#!/usr/bin/env bash
# Verifies the unit files with `systemd-analyze verify`. The units name the installed binary
# (/usr/bin/kmip-agent); here a copy points at this checkout's build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "verify-units: systemd-analyze not found: run scripts/setup.sh" >&2; exit 1; }
[ -f dist/src/cli/main.js ] || { echo "verify-units: dist/ is not built: run scripts/setup.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#!/bin/sh\nexec %s %s "$@"\n' "$(command -v node)" "$PWD/dist/src/cli/main.js" >"$work/kmip-agent"
chmod 0755 "$work/kmip-agent"
for unit in systemd/*.service systemd/*.socket; do
  [ -e "$unit" ] || continue
  sed "s|/usr/bin/kmip-agent|$work/kmip-agent|g" "$unit" >"$work/$(basename "$unit")"
done
systemd-analyze verify "$work"/*.service
echo "verify-units: $(ls systemd | tr '\n' ' ')ok"
