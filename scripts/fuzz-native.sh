#!/usr/bin/env bash
# `npm run fuzz:native`: the native fuzz targets (TCG parsers, emulator, TCG host stack, sed-opal
# structs, LUKS header checks) against a second build of the test addon made with AddressSanitizer and
# UndefinedBehaviorSanitizer. Ends with `sanitizer reports: N` and fails on any report or crash.
#
# The sanitizer build is node-gyp with extra flags in its own directory (build-asan/, beside build/):
# a copy of binding.gyp and native/ (timestamps kept, so rebuilds are incremental) with node_modules
# linked. Node itself is not instrumented, so the ASan runtime must be loaded first (LD_PRELOAD of
# gcc's libasan); leak checking is off because node frees little at exit by design.
#
# Usage: bash scripts/fuzz-native.sh [--quick | --scale F] [--seed N] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
stage=$root/build-asan

mkdir -p "$stage"
cp -a --update binding.gyp package.json "$stage/"
rm -rf "$stage/native.new" && cp -a native "$stage/native.new"
# Keep the old tree (and its timestamps) where nothing changed: make then rebuilds only what did.
if [ -d "$stage/native" ] && diff -rq "$stage/native" "$stage/native.new" >/dev/null; then
  rm -rf "$stage/native.new"
else
  rm -rf "$stage/native" && mv "$stage/native.new" "$stage/native"
fi
ln -sfn "$root/node_modules" "$stage/node_modules"

# KMIP_AGENT_SANITIZER_CANARY compiles native/test/sanitizer_canary.cc's planted bugs into this build only.
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1 -DKMIP_AGENT_SANITIZER_CANARY"
cd "$stage"
[ -f build/Makefile ] || npx node-gyp configure >/dev/null 2>&1
echo "=== building the sanitizer addon in $stage/build (ASan + UBSan)"
# gyp's Makefile reads CFLAGS/CXXFLAGS/LDFLAGS when make runs; only the test addon is needed.
make -C build -j2 BUILDTYPE=Release CFLAGS="$flags" CXXFLAGS="$flags" LDFLAGS="-fsanitize=address,undefined" \
  kmip_agent_native_test >/dev/null
addon=$stage/build/Release/kmip_agent_native_test.node
cd "$root"
# (Counted, not `grep -q`: with pipefail, grep quitting early makes nm die of SIGPIPE and the test fail.)
if [ "$(nm -D "$addon" | grep -c __asan_init)" -eq 0 ]; then
  echo "the addon at $addon is not instrumented" >&2
  exit 1
fi

REPORT='ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer'
sanitized() { # command...: runs it with the ASan runtime loaded first and the sanitizer addon
  LD_PRELOAD=$(gcc -print-file-name=libasan.so) \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1:print_summary=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    KMIP_AGENT_ADDON=$addon "$@"
}

# The canaries first: each planted bug must end its process with its report, or a clean fuzz run below
# would prove nothing (a runtime not loaded, a flag lost, reports not reaching the log).
canaries=("heap-buffer-overflow:ERROR: AddressSanitizer: heap-buffer-overflow"
  "heap-use-after-free:ERROR: AddressSanitizer: heap-use-after-free"
  "signed-integer-overflow:runtime error: signed integer overflow")
seen=0
set +e
for canary in "${canaries[@]}"; do
  kind=${canary%%:*}
  expected=${canary#*:}
  out=$(sanitized node -e "require(process.env.KMIP_AGENT_ADDON).sanitizerCanary.trigger('$kind', 16)" 2>&1)
  code=$?
  if [ "$code" -ne 0 ] && grep -q "$expected" <<<"$out"; then
    seen=$((seen + 1))
    echo "canary $kind: reported ($(grep -m1 -oE "$REPORT.*" <<<"$out" | cut -c1-100))"
  else
    echo "canary $kind: NOT reported (exit $code); the sanitizer run cannot be trusted:" >&2
    echo "$out" | tail -20 >&2
  fi
done
set -e
echo "sanitizer canaries: $seen/${#canaries[@]} reported"
[ "$seen" -eq "${#canaries[@]}" ] || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
sanitized node dist/test/fuzz/run.js --native "$@" 2> >(tee "$log" >&2)
status=$?
set -e
reports=$(grep -cE "$REPORT" "$log" || true)
echo "sanitizer reports: $reports"
[ "$status" -eq 0 ] && [ "$reports" -eq 0 ]
