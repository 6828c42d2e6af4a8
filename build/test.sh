#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs type check, lint, unit, store contract and
# (as root) network-namespace tests through `bun test`, and ends with one line `N passed, N failed`
# taken from the test runner's JUnit report. A test file that fails to load (a syntax or import error,
# a throw at top level) is absent from that report, so each "Unhandled error between tests" the
# runner prints counts as one more failure, named on stderr. Extra arguments are passed to `bun test`
# (e.g. a path).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bash build/setup.sh || exit 1

mkdir -p .tmp
report=.tmp/junit.xml
output=.tmp/test-output.txt
rm -f "$report" "$output"
node_modules/.bin/bun test --timeout 60000 --reporter=junit --reporter-outfile="$report" "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
# Files whose errors happened outside any test: the runner prints the file name, then this heading.
unhandled=$(awk '/^[^ ].*\.(test|spec)\.[cm]?[jt]sx?:$/ { file = substr($0, 1, length($0) - 1) }
  /^# Unhandled error between tests$/ { print (file == "" ? "(unknown file)" : file) }' "$output")
errors=0
if [[ -n $unhandled ]]; then
  errors=$(wc -l <<<"$unhandled")
  echo "test: ${errors} error(s) outside any test (a file that failed to load counts as failed):" >&2
  sort <<<"$unhandled" | uniq -c | sed 's/^ */  /' >&2
fi

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
failures=$((failures + errors))
if ((status != 0 && failures == 0)); then failures=1; fi
echo "${passed} passed, ${failures} failed, ${skipped} skipped"
exit "$status"
