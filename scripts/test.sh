#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: setup (idempotent), then every vitest suite against
# real peers (PyKMIP, cryptsetup, openssl). Ends with `N passed, N failed`, after a machine-readable
# `TESTS_SUMMARY passed failed skipped` line that .ci/run adds into its own total.
# Usage (as root): bash scripts/test.sh [vitest filters...]
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

report=$(mktemp --suffix=.json)
trap 'rm -f "$report"' EXIT
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
status=$?
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
echo "TESTS_SUMMARY $passed $failed $skipped"
echo "$passed passed, $failed failed"
exit "$status"
