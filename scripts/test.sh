#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: setup (idempotent), then every vitest suite against
# real peers (PyKMIP, cryptsetup, openssl), then the secrets hygiene scan of what the run left behind
# (one more test in the counts). Ends with `N passed, N failed`, after a machine-readable
# `TESTS_SUMMARY passed failed skipped` line that .ci/run adds into its own total.
# Usage (as root): bash scripts/test.sh [vitest filters...]
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

# A recorded run (test/support/test-run.ts): every temp file under one run directory, kept until the
# scan; every key and PIN the run generates recorded in a separate 0700 directory; both wiped at exit.
run_dir=$(mktemp -d /tmp/kmip-run-XXXXXX) # short: unix socket paths under it have 108 bytes
secrets_dir=$(mktemp -d /tmp/kmip-secrets-XXXXXX)
mkdir -p "$run_dir/tmp" "$run_dir/kept" "$run_dir/output"
# Like /tmp: tests run commands as nobody (setpriv) that must reach sockets in their own 0700-or-wider dirs.
chmod 0755 "$run_dir"
chmod 1777 "$run_dir/tmp"
wipe_run() {
  # What must hold secrets (key server databases, drive RAM caches) and the record: overwritten first.
  find "$secrets_dir" "$run_dir" -type f \( -path "$secrets_dir/*" -o -name 'pykmip.db*' -o -name '*.ram' \) \
    -exec shred -u {} + 2>/dev/null
  rm -rf "$run_dir" "$secrets_dir"
}
export KMIP_AGENT_TEST_RUN_DIR=$run_dir KMIP_AGENT_TEST_SECRETS_DIR=$secrets_dir TMPDIR=$run_dir/tmp

# The report and the suite's output are kept in the run directory: the scan searches them too.
report="$run_dir/output/report.json"
trap 'wipe_run' EXIT
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" 2>&1 | tee "$run_dir/output/vitest.log"
status=${PIPESTATUS[0]}
node -e '
  const fs = require("fs");
  let r = {};
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch {}
  const suites = r.testResults ?? [];
  // A suite that failed to load has no failed test but must still count as a failure.
  const brokenSuites = suites.filter(
    (s) => s.status === "failed" && !(s.assertionResults ?? []).some((a) => a.status === "failed"),
  ).length;
  const passed = r.numPassedTests ?? 0;
  const failed = (r.numFailedTests ?? 0) + brokenSuites;
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  fs.writeFileSync(process.argv[2], `${passed} ${failed} ${skipped}\n`);
' "$report" "$report.counts"
read -r passed failed skipped <"$report.counts"; rm -f "$report.counts"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi

# The secrets hygiene scan (test/hygiene/secrets.scan.ts), one test: 0 hits, secret and state files 0600.
npx vitest run --config test/hygiene/vitest.config.ts --reporter=default
scan_status=$?
if [ "$scan_status" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); status=$scan_status; fi
echo "TESTS_SUMMARY $passed $failed $skipped"
echo "$passed passed, $failed failed"
exit "$status"
