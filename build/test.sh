#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs type check, lint, unit, store contract and
# (as root) network-namespace tests through `bun test`, and ends with one line `N passed, N failed`
# taken from the test runner's JUnit report. Extra arguments are passed to `bun test` (e.g. a path).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bash build/setup.sh || exit 1

mkdir -p .tmp
report=.tmp/junit.xml
rm -f "$report"
node_modules/.bin/bun test --timeout 60000 --reporter=junit --reporter-outfile="$report" "$@"
status=$?

if [[ ! -s $report ]]; then
  echo "test: the runner wrote no report (exit $status)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
# The first <testsuites …> element carries the runner's totals.
totals=$(grep -m1 -o '<testsuites[^>]*>' "$report")
attr() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$totals"; }
tests=$(attr tests) failures=$(attr failures) skipped=$(attr skipped)
: "${tests:=0}" "${failures:=0}" "${skipped:=0}"
passed=$((tests - failures - skipped))
if ((status != 0 && failures == 0)); then failures=1; fi
echo "${passed} passed, ${failures} failed, ${skipped} skipped"
exit "$status"
