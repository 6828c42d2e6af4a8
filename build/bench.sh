#!/usr/bin/env bash
# Runs every benchmark under test/bench/ and prints their tables. Figures are printed, not asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash build/setup.sh
for bench in test/bench/*.bench.ts test/bench/stores.ts; do
  [[ -f $bench ]] || continue
  echo "== $bench"
  node_modules/.bin/bun "$bench"
done
