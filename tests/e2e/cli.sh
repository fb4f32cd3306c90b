#!/usr/bin/env bash
# cli.sh - the `stockade` command dispatcher: help lists the public commands, aligned, and not
# the internal ones, which still dispatch; version; unknown commands are usage errors.
. "$(dirname "$0")/../lib.sh"

out=$("$STOCKADE_BIN" --help); rc=$?
check_eq "--help exits 0" "$rc" 0
for c in serve run jail doctor config keys migrate blob; do
  check_contains "--help lists $c" "$out" "  $(printf '%-9s' "$c") "
done
check_not_contains "--help leaves out the internal sandbox-init" "$out" "sandbox-init"
misaligned=$(printf '%s\n' "$out" |
  awk '/^  [a-z]/ && (substr($0, 12, 1) != " " || substr($0, 13, 1) == " ") { print }')
check_eq "every summary starts in the same column" "$misaligned" ""

out=$("$STOCKADE_BIN" sandbox-init --help); rc=$?
check_eq "the internal sandbox-init still dispatches (--help exits 0)" "$rc" 0
check_contains "sandbox-init --help is its own usage" "$out" "usage: stockade sandbox-init"

out=$("$STOCKADE_BIN" --version); rc=$?
check_eq "--version exits 0" "$rc" 0
check_contains "--version names the program" "$out" "stockade "

out=$("$STOCKADE_BIN" no-such-command 2>&1); rc=$?
check_eq "unknown command is a usage error" "$rc" 2
check_contains "unknown command is named" "$out" "unknown command 'no-such-command'"
"$STOCKADE_BIN" >/dev/null 2>&1; rc=$?
check_eq "no command is a usage error" "$rc" 2

done_testing
