#!/usr/bin/env bash
# api-functions.sh - the js-executor API over HTTP: stored, versioned functions (CRUD,
# versions, invoke) and ad-hoc runs, bad input, and the mode rule (always jailed).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-serve.sh"

start_role js-executor
ok "server starts with --role js-executor"
for p in /api/health /api/readiness; do
  REQ_TOKEN=none req GET "$p"
  check_eq "GET $p: 200" "$REQ_STATUS" 200
done

req GET /api/v1/functions
check_eq "empty list" "$(json_get "$REQ_BODY" '.functions | length')" 0

req PUT /api/v1/functions/add '{"code":"return args.a + args.b","description":"adds"}'
check_eq "PUT creates: 201" "$REQ_STATUS" 201
check_eq "first version is 1" "$(json_get "$REQ_BODY" .version)" 1
req PUT /api/v1/functions/add '{"code":"return (args.a + args.b) * 10"}'
check_eq "second PUT: version 2" "$(json_get "$REQ_BODY" .version)" 2

req GET /api/v1/functions/add
check_eq "GET: latest version" "$(json_get "$REQ_BODY" .version)" 2
check_eq "GET: versions listed" "$(jq -c .versions <<<"$REQ_BODY")" "[1,2]"
req GET "/api/v1/functions/add?version=1"
check_eq "GET ?version=1" "$(json_get "$REQ_BODY" .code)" "return args.a + args.b"
req GET "/api/v1/functions/add?version=9"
check_eq "missing version: 404" "$REQ_STATUS" 404
req GET "/api/v1/functions/add?version=abc"
check_eq "bad version: 400 naming it" "$(json_get "$REQ_BODY" .error.field)" version

req POST /api/v1/functions/add/invoke '{"args":{"a":2,"b":3}}'
check_eq "invoke latest: 200" "$REQ_STATUS" 200
check_eq "invoke latest: result" "$(json_get "$REQ_BODY" .result)" 50
check_eq "invoke: jailed" "$(json_get "$REQ_BODY" .sandboxed)" true
req POST /api/v1/functions/add/invoke '{"args":{"a":2,"b":3},"version":1}'
check_eq "invoke version 1" "$(json_get "$REQ_BODY" .result)" 5
req POST /api/v1/functions/nope/invoke '{"args":{}}'
check_eq "invoke unknown: 404" "$REQ_STATUS" 404

req PUT /api/v1/functions/thrower '{"code":"throw new RangeError(\"bad arg \" + args.x)"}'
req POST /api/v1/functions/thrower/invoke '{"args":{"x":7}}'
check_eq "function error: 200" "$REQ_STATUS" 200
check_eq "function error: status" "$(json_get "$REQ_BODY" .status)" error
check_eq "function error: name" "$(json_get "$REQ_BODY" .error.name)" RangeError

req PUT /api/v1/functions/async '{"code":"await new Promise(r => setTimeout(r, 10)); return args.map(x => x * 2)"}'
req POST /api/v1/functions/async/invoke '{"args":[1,2,3]}'
check_eq "async function" "$(jq -c .result <<<"$REQ_BODY")" "[2,4,6]"

req GET /api/v1/functions
check_eq "list has three" "$(json_get "$REQ_BODY" '.functions | length')" 3
check_eq "list shows latest version" "$(json_get "$REQ_BODY" '.functions[] | select(.name=="add") | .latestVersion')" 2

req POST /api/v1/functions/run '{"code":"return args.join(\"-\")","args":["a","b"]}'
check_eq "ad-hoc run" "$(json_get "$REQ_BODY" .result)" "a-b"
req POST /api/v1/functions/run '{"code":"while(true){}","args":null,"timeoutMs":300}'
check_eq "ad-hoc timeout" "$(json_get "$REQ_BODY" .status)" timeout
req POST /api/v1/functions/run '{"code":"return 1","language":"python"}'
check_eq "ad-hoc python refused, naming language" "$(json_get "$REQ_BODY" .error.field)" language

# bad input
req PUT /api/v1/functions/add '{"description":"no code"}'
check_eq "PUT without code: 400 naming it" "$(json_get "$REQ_BODY" .error.field)" code
req PUT "/api/v1/functions/bad%20name" '{"code":"return 1"}'
check_eq "bad name: 400 naming it" "$(json_get "$REQ_BODY" .error.field)" name
req PUT /api/v1/functions/run '{"code":"return 1"}'
check_eq "reserved name 'run': 400" "$REQ_STATUS" 400
req PUT /api/v1/functions/x '{"code":'
check_eq "PUT invalid JSON: 400" "$(json_get "$REQ_BODY" .error.code)" invalid_json
req POST /api/v1/functions/add/invoke '{"args":1,"timeoutMs":"soon"}'
check_eq "invoke mistyped timeoutMs: names it" "$(json_get "$REQ_BODY" .error.field)" timeoutMs
req POST /api/v1/functions/add/invoke '{"params":[1,2]}'
check_eq "invoke with 'params' (not 'args'): 400 naming it" "$REQ_STATUS $(json_get "$REQ_BODY" .error.field)" "400 params"
req PUT /api/v1/functions/add '{"code":"return 1","language":"python"}'
check_eq "PUT of python code: 400 naming language" "$REQ_STATUS $(json_get "$REQ_BODY" .error.field)" "400 language"
req POST /api/v1/functions/run '{"code":"return 1","arg":[]}'
check_eq "run with a misspelt field: suggests 'args'" "$(json_get "$REQ_BODY" .error.message)" "unknown field 'arg' (did you mean 'args'?): the request body accepts code, args, language, timeoutMs, memoryMb"
REQ_TOKEN=none req GET /api/v1/functions
check_eq "functions without a token: 401" "$REQ_STATUS" 401

# delete
req DELETE /api/v1/functions/add
check_eq "DELETE: 200" "$REQ_STATUS" 200
check_eq "DELETE removed both versions" "$(json_get "$REQ_BODY" .versions)" 2
req GET /api/v1/functions/add
check_eq "GET after DELETE: 404" "$REQ_STATUS" 404
req DELETE /api/v1/functions/add
check_eq "DELETE again: 404" "$REQ_STATUS" 404
req PUT /api/v1/functions/add '{"code":"return 1"}'
check_eq "PUT after DELETE starts at version 1" "$(json_get "$REQ_BODY" .version)" 1

# stored functions survive a restart (state store)
stop_server
SERVE_DATA_DIR=$SERVER_DATA start_server --role js-executor
req POST /api/v1/functions/add/invoke '{}'
check_eq "stored function survives a restart" "$(json_get "$REQ_BODY" .result)" 1

done_testing
