#!/usr/bin/env bash
# Sets up kmip-agent on a fresh Debian bookworm machine, idempotently: Debian packages (PyKMIP server,
# cryptsetup, libcryptsetup headers, build tools), `npm ci`, the C++ addons (shipped and test),
# the TypeScript build and the bundled CLI (dist/kmip-agent.mjs).
# Run as root from anywhere: `sudo bash scripts/setup.sh`. Safe to run again; it only does what is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# --- toolchain that apt cannot give us: Node.js 20+ ---------------------------------------------
command -v node >/dev/null || die "Node.js is not installed: install Node.js 20 or newer (with npm), then run this again"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old: kmip-agent needs Node.js 20 or newer"
command -v npm >/dev/null || die "npm is not installed: install npm for Node.js $(node --version), then run this again"

# --- Debian packages -----------------------------------------------------------------------------
packages=(
  python3-pykmip      # the real KMIP server the tests and the demo run against
  cryptsetup-bin      # cryptsetup CLI: makes and inspects LUKS2 images in tests
  libcryptsetup-dev   # the addon's LUKS2 backend
  build-essential     # g++ and make for node-gyp
  python3             # node-gyp
  openssl             # per-test certificates
  util-linux          # losetup
  systemd             # systemd-analyze verify for the unit files
  iproute2            # ip netns for multi-host tests
  curl                # the local API tests speak to the socket with curl --unix-socket
  systemd-container   # systemd-nspawn: the unit test boots a real systemd as PID 1 of a container
  mmdebstrap          # builds (once) the container's minimal Debian rootfs and the VM test image
  qemu-system-x86     # the VM tests boot Debian's stock kernel (dm-crypt, sed-opal, TCMU) under QEMU/TCG
  qemu-utils          # qemu-img: a copy-on-write overlay of the cached VM image per run
  e2fsprogs           # mkfs.ext4 -d: the VM image's root filesystem
  libssl-dev          # libcrypto for the VM tests' TCMU handler (the emulated drive served to the guest kernel)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}): run this script as root (sudo bash scripts/setup.sh)"
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your package manager"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x /usr/bin/pykmip-server ] || die "pykmip-server is still missing after installing python3-pykmip"

# --- npm dependencies, addon, TypeScript -----------------------------------------------------------
npm_log=$(mktemp)
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # npm ci also builds the addon (binding.gyp at the top level makes npm run node-gyp on install).
  say "npm ci (and the addon build it runs)"
  npm ci --no-audit --no-fund >"$npm_log" 2>&1 || {
    grep -v '^gyp info' "$npm_log" >&2 || true
    die "npm ci failed: see its output above"
  }
fi
rm -f "$npm_log"

# Both targets of binding.gyp: the shipped addon and the test addon (the same plus native/test/'s seams).
addon_stale() {
  local addon
  for addon in build/Release/kmip_agent_native.node build/Release/kmip_agent_native_test.node; do
    [ -f "$addon" ] || return 0
    [ -z "$(find native binding.gyp package.json -newer "$addon" -print -quit)" ] || return 0
  done
  return 1
}
if addon_stale; then
  say "building the addons (node-gyp: kmip_agent_native and kmip_agent_native_test)"
  addon_log=$(mktemp)
  npm run --silent build:addon >"$addon_log" 2>&1 || {
    grep -v '^gyp info' "$addon_log" >&2 || true
    die "the addon did not build: see the compiler output above"
  }
  rm -f "$addon_log"
fi
say "compiling TypeScript"
npm run --silent build:ts
# What ships and what the tests run: the CLI and daemon as one file (scripts/build-bundle.mjs).
say "bundling the CLI (dist/kmip-agent.mjs)"
npm run --silent build:bundle
say "ready: $(node dist/kmip-agent.mjs --version)"
