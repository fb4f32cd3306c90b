#!/usr/bin/env bash
# run-cli.sh - `stockade run` end to end: both languages, params, files and stdin, the result
# shape, exit codes and bad usage.
. "$(dirname "$0")/../lib.sh"

B=$STOCKADE_BIN
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

out=$("$B" run --lang javascript -c 'return 1+1' 2>&1)
if [ "$(json_get "$out" .status)" != ok ] && printf '%s' "$out" | grep -q "namespaces"; then
  skip "stockade run" "user namespaces are not available here"; done_testing; exit
fi
check_eq "js: status ok" "$(json_get "$out" .status)" ok
check_eq "js: result" "$(json_get "$out" .result)" 2
check_eq "js: sandboxed" "$(json_get "$out" .sandboxed)" true
check_eq "js: error is null" "$(json_get "$out" .error)" null
check "js: stats present" test "$(json_get "$out" '.stats | has("wallMs") and has("cpuMs") and has("maxRssKb")')" = true

out=$("$B" run --lang python -c 'print("hi")
return params["a"] * 2' --params '{"a": 21}')
check_eq "python: result with params" "$(json_get "$out" .result)" 42
check_eq "python: stdout" "$(json_get "$out" .stdout)" "hi"

printf 'const _ = require("lodash");\nreturn _.sum(params)\n' >"$tmp/code.js"
out=$("$B" run --lang js "$tmp/code.js" --params '[1,2,3]')
check_eq "js from a file, require lodash" "$(json_get "$out" .result)" 6

out=$(printf 'import math\nreturn math.floor(2.5)\n' | "$B" run --lang py -)
check_eq "python from stdin" "$(json_get "$out" .result)" 2

"$B" run --lang python -c 'raise ValueError("nope")' >"$tmp/err.json"
rc=$?
check_eq "error: exit code 1" "$rc" 1
check_eq "error: status" "$(json_get "$(cat "$tmp/err.json")" .status)" error
check_eq "error: name" "$(json_get "$(cat "$tmp/err.json")" .error.name)" ValueError
check_eq "error: line" "$(json_get "$(cat "$tmp/err.json")" .error.line)" 1

out=$("$B" run --lang javascript --timeout-ms 300 -c 'while (true) {}')
check_eq "timeout" "$(json_get "$out" .status)" timeout

out=$("$B" run --lang javascript --unsandboxed -c 'return 5')
check_eq "unsandboxed: result" "$(json_get "$out" .result)" 5
check_eq "unsandboxed: sandboxed false" "$(json_get "$out" .sandboxed)" false

"$B" run --lang ruby -c 'x' >/dev/null 2>"$tmp/usage"
check_eq "unknown language: exit 2" "$?" 2
check_contains "unknown language: message" "$(cat "$tmp/usage")" "--lang"
"$B" run --lang js >/dev/null 2>&1
check_eq "no code: exit 2" "$?" 2
"$B" run --lang js -c 'return 1' --params '{bad' >/dev/null 2>"$tmp/usage"
check_eq "bad params: exit 2" "$?" 2
check_contains "bad params: names the field" "$(cat "$tmp/usage")" "params"
"$B" run --lang js -c 'return 1' --timeout-ms abc >/dev/null 2>&1
check_eq "bad timeout: exit 2" "$?" 2
check "help" "$B" run --help

out=$("$B" run --lang python --repeat 5 -c 'return 1')
check_eq "repeat: 5 runs" "$(json_get "$out" .runs)" 5
check_eq "repeat: no failures" "$(json_get "$out" .failures)" 0

done_testing
