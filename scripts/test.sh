#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: setup (idempotent), then every vitest suite against
# real peers (PyKMIP, cryptsetup, openssl), then the secrets hygiene scan of what the run left behind.
# Ends with `N passed, N failed`, after a machine-readable `TESTS_SUMMARY passed failed skipped` line
# that .ci/run adds into its own total.
# Usage (as root): bash scripts/test.sh [vitest filters...]
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

# A recorded run (test/support/test-run.ts): every temp file under one run directory, kept until the
# scan; every key and PIN the run generates recorded in a separate 0700 directory, wiped afterwards.
run_dir=$(mktemp -d /tmp/kmip-run-XXXXXX) # short: unix socket paths under it have 108 bytes
secrets_dir=$(mktemp -d /tmp/kmip-secrets-XXXXXX)
chmod 0700 "$run_dir" "$secrets_dir"
mkdir -p "$run_dir/tmp" "$run_dir/kept" "$run_dir/output"
wipe() {
  # Files that must hold secrets (key server databases, drive RAM caches) and the record: overwritten first.
  find "$secrets_dir" "$run_dir" -type f \( -path "$secrets_dir/*" -o -name 'pykmip.db*' -o -name '*.ram' \) \
    -exec shred -u {} + 2>/dev/null
  rm -rf "$run_dir" "$secrets_dir"
}
trap wipe EXIT
export KMIP_AGENT_TEST_RUN_DIR=$run_dir KMIP_AGENT_TEST_SECRETS_DIR=$secrets_dir TMPDIR=$run_dir/tmp

# suite-counts REPORT: "passed failed skipped" of a vitest JSON report.
suite_counts() {
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
    console.log(`${passed} ${failed} ${skipped}`);
  ' "$1"
}

# The suite's output is captured (the scan searches it too).
report="$run_dir/output/report.json"
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" 2>&1 |
  tee "$run_dir/output/vitest.log"
status=${PIPESTATUS[0]}
read -r passed failed skipped < <(suite_counts "$report")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi

# The scan counts as one test: it passes only with 0 hits and every secret or state file 0600.
scan_report=$(mktemp --suffix=.json -p "$secrets_dir")
npx vitest run --config test/hygiene/vitest.config.ts --reporter=default --reporter=json \
  --outputFile.json="$scan_report"
scan_status=$?
read -r scan_passed scan_failed scan_skipped < <(suite_counts "$scan_report")
if [ "$scan_status" -ne 0 ] && [ "$scan_failed" -eq 0 ]; then scan_failed=1; fi
passed=$((passed + scan_passed))
failed=$((failed + scan_failed))
skipped=$((skipped + scan_skipped))
[ "$scan_status" -ne 0 ] && status=$scan_status

echo "TESTS_SUMMARY $passed $failed $skipped"
echo "$passed passed, $failed failed"
exit "$status"
