#!/usr/bin/env bash
# engine-js.sh - hostile JavaScript through `stockade run`: loops, memory, recursion,
# output floods, prototype pollution and escape attempts through the host API.
. "$(dirname "$0")/../lib.sh"

B=$STOCKADE_BIN
js() { "$B" run --lang javascript "$@" 2>/dev/null; }
after() {
  local o; o=$(js -c 'return [1, 2].map(x => x * 21).reduce((a, b) => a + b)')
  check_eq "  ...and the next execution answers ($1)" "$(json_get "$o" .result)" 63
}

out=$(js -c 'return 1')
if [ "$(json_get "$out" .status)" != ok ]; then
  skip "hostile javascript" "the engine cannot start here"; done_testing; exit
fi

out=$(js --timeout-ms 500 -c 'while (true) {}')
check_eq "infinite loop: timeout" "$(json_get "$out" .status)" timeout
after loop

out=$(js --timeout-ms 500 -c 'for (;;) await null')
check_eq "microtask loop: timeout" "$(json_get "$out" .status)" timeout

out=$(js --timeout-ms 500 -c 'setInterval(() => {}, 1)')
check_eq "endless interval: timeout" "$(json_get "$out" .status)" timeout

out=$(js --memory-mb 64 --timeout-ms 20000 -c 'const a = []; while (true) a.push(new Float64Array(1 << 17))')
check_eq "memory bomb (typed arrays): memory_limit" "$(json_get "$out" .status)" memory_limit
after memory

out=$(js --memory-mb 64 --timeout-ms 20000 -c 'let s = "x"; while (true) s = s + s')
check "string doubling: contained" test "$(json_get "$out" .status)" != ok
after string

out=$(js -c 'function f() { return f() + 1 } return f()')
check_eq "deep recursion: RangeError" "$(json_get "$out" .error.name)" RangeError
after recursion

out=$(js -c 'while (true) console.log("x".repeat(10000))')
check_eq "output flood: output_limit" "$(json_get "$out" .status)" output_limit
after flood

out=$(js -c 'require("child_process")')
check_contains "require(child_process): not found" "$(json_get "$out" .error.message)" "Cannot find module"
out=$(js -c 'require("/etc/shadow")')
check_contains "require(/etc/shadow): not found" "$(json_get "$out" .error.message)" "Cannot find module"
out=$(js -c 'require("lodash/../../../../../etc/passwd")')
check_contains "require path traversal: not found" "$(json_get "$out" .error.message)" "Cannot find module"
out=$(js -c 'return [typeof __host, typeof process.binding, typeof Deno, typeof Bun]')
check_eq "no host object leaks" "$(json_get "$out" '.result|tojson')" '["undefined","undefined","undefined","undefined"]'

out=$(js -c 'Object.prototype.polluted = 1; Array.prototype.push = null; globalThis.x = 1; return 1')
check_eq "pollution run" "$(json_get "$out" .status)" ok
out=$(js -c 'const a = []; a.push(1); return [({}).polluted === undefined, typeof x, a.length]')
check_eq "pollution does not survive" "$(json_get "$out" '.result|tojson')" '[true,"undefined",1]'

out=$(js -c 'return new Promise(() => {})')
check_eq "never-settling promise: error" "$(json_get "$out" .error.name)" PendingPromise

done_testing
