#!/usr/bin/env bash
# bench/run.sh - runs every benchmark script in bench/ (each prints its own table). Not a test:
# nothing here asserts a number. `make bench` builds the release binary first.
set -uo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)
export STOCKADE_ROOT=${STOCKADE_ROOT:-$(cd "$DIR/.." && pwd)}
export STOCKADE_BIN=${STOCKADE_BIN:-$STOCKADE_ROOT/build/stockade}
rc=0
for b in "$DIR"/*.sh; do
  case "$(basename "$b")" in run.sh | lib.sh) continue ;; esac
  echo "== $(basename "$b")"
  bash "$b" || { echo "# $(basename "$b") failed"; rc=1; }
  echo
done
exit $rc
