#!/usr/bin/env bash
# tests/e2e/mcp-protocol.sh - the MCP streamable HTTP transport with raw HTTP: version
# negotiation, sessions, JSON-RPC errors, bad input (malformed JSON, batches, unknown methods,
# oversize, wrong content types), Origin/Host checks, the static-token mode, and the official
# conformance scenarios (server-initialize, tools-list, ping, dns-rebinding-protection,
# tools-call-error, tools-call-with-progress, json-schema-2020-12).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-serve.sh"

T=$(mktemp -d /tmp/stockade-mcpp.XXXXXX)
trap '_serve_cleanup; rm -rf "$T"' EXIT
STATIC=static-token-0123456789abcdef
cat >"$T/static.yaml" <<YAML
mcp:
  enabled: true
  staticToken: $STATIC
YAML

post() { # post BODY [extra curl args...] -> sets ST (status), BODY, HDRS; CT / ACCEPT override
  local body=$1; shift
  ST=$(curl -s -o "$T/body" -D "$T/hdrs" -w '%{http_code}' -X POST "$BASE_URL/mcp" \
    -H "Content-Type: ${CT:-application/json}" \
    -H "Accept: ${ACCEPT:-application/json, text/event-stream}" "$@" --data-binary "$body")
  BODY=$(cat "$T/body"); HDRS=$(tr -d '\r' <"$T/hdrs")
}
hdr() { printf '%s\n' "$HDRS" | grep -i "^$1:" | head -1 | cut -d' ' -f2- ; }
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}'

start_server --config "$T/static.yaml" || { not_ok "server starts"; done_testing; exit 1; }
AUTH=(-H "Authorization: Bearer $STATIC")

# ---- auth ------------------------------------------------------------------------------
post "$INIT"
check_eq "no token: 401" "$ST" 401
check_contains "401 carries resource_metadata" "$(hdr WWW-Authenticate)" 'resource_metadata="'
post "$INIT" -H "Authorization: Bearer wrong-token-0123456789"
check_eq "wrong static token: 401" "$ST" 401
check_contains "wrong token: invalid_token" "$(hdr WWW-Authenticate)" 'error="invalid_token"'
post "$INIT" -H "Cookie: token=$STATIC"
check_eq "token only from the Authorization header" "$ST" 401

# ---- initialize and versions -------------------------------------------------------------
post "$INIT" "${AUTH[@]}"
check_eq "initialize: 200" "$ST" 200
SID=$(hdr Mcp-Session-Id)
check "initialize: session id" test -n "$SID"
check_eq "initialize: latest version" "$(json_get "$BODY" .result.protocolVersion)" 2025-11-25
check_eq "initialize: tools capability" "$(json_get "$BODY" '.result.capabilities.tools|type')" object
for v in 2025-06-18 2025-03-26; do
  post "${INIT/2025-11-25/$v}" "${AUTH[@]}"
  check_eq "initialize $v: echoed" "$(json_get "$BODY" .result.protocolVersion)" "$v"
done
post "${INIT/2025-11-25/1999-01-01}" "${AUTH[@]}"
check_eq "initialize unknown version: we offer ours" "$(json_get "$BODY" .result.protocolVersion)" 2025-11-25
S=(-H "Mcp-Session-Id: $SID" -H "MCP-Protocol-Version: 2025-11-25")

post '{"jsonrpc":"2.0","method":"notifications/initialized"}' "${AUTH[@]}" "${S[@]}"
check_eq "notification: 202" "$ST" 202
check_eq "notification: no body" "$BODY" ""
post '{"jsonrpc":"2.0","id":"p1","method":"ping"}' "${AUTH[@]}" "${S[@]}"
check_eq "ping: {}" "$(json_get "$BODY" .result)" "{}"
check_eq "ping: string id echoed" "$(json_get "$BODY" .id)" p1
post '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' "${AUTH[@]}" "${S[@]}"
check_contains "tools/list: execute_code" "$BODY" '"name":"execute_code"'

# ---- sessions ---------------------------------------------------------------------------
post '{"jsonrpc":"2.0","id":3,"method":"ping"}' "${AUTH[@]}"
check_eq "no session header: 400" "$ST" 400
post '{"jsonrpc":"2.0","id":3,"method":"ping"}' "${AUTH[@]}" -H "Mcp-Session-Id: 00000000000000000000000000000000"
check_eq "unknown session: 404" "$ST" 404
post '{"jsonrpc":"2.0","id":3,"method":"ping"}' "${AUTH[@]}" "${S[@]/2025-11-25/2024-01-01}"
check_eq "unsupported MCP-Protocol-Version: 400" "$ST" 400
post "$INIT" "${AUTH[@]}"
SID2=$(hdr Mcp-Session-Id)
ST=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$BASE_URL/mcp" "${AUTH[@]}" -H "Mcp-Session-Id: $SID2")
check_eq "DELETE session: 204" "$ST" 204
post '{"jsonrpc":"2.0","id":4,"method":"ping"}' "${AUTH[@]}" -H "Mcp-Session-Id: $SID2"
check_eq "deleted session: 404" "$ST" 404
ST=$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/mcp" "${AUTH[@]}" -H "Accept: text/event-stream")
check_eq "GET /mcp (no server stream): 405" "$ST" 405

# ---- JSON-RPC errors and bad input ---------------------------------------------------------
post '{"jsonrpc":"2.0","id":5,' "${AUTH[@]}" "${S[@]}"
check_eq "malformed JSON: 400" "$ST" 400
check_eq "malformed JSON: -32700" "$(json_get "$BODY" .error.code)" -32700
post '[{"jsonrpc":"2.0","id":6,"method":"ping"}]' "${AUTH[@]}" "${S[@]}"
check_eq "batch: refused -32600" "$(json_get "$BODY" .error.code)" -32600
post '{"id":7,"method":"ping"}' "${AUTH[@]}" "${S[@]}"
check_eq "no jsonrpc member: -32600" "$(json_get "$BODY" .error.code)" -32600
post '{"jsonrpc":"2.0","id":8,"method":"no/such"}' "${AUTH[@]}" "${S[@]}"
check_eq "unknown method: -32601" "$(json_get "$BODY" .error.code)" -32601
post '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"nope","arguments":{}}}' "${AUTH[@]}" "${S[@]}"
check_eq "unknown tool: -32602" "$(json_get "$BODY" .error.code)" -32602
post '{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"execute_code","arguments":{"language":"javascript"}}}' "${AUTH[@]}" "${S[@]}"
check_eq "missing argument: -32602" "$(json_get "$BODY" .error.code)" -32602
check_contains "missing argument: named" "$(json_get "$BODY" .error.message)" "'code'"
post '{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"execute_code","arguments":{"language":"javascript","code":1}}}' "${AUTH[@]}" "${S[@]}"
check_eq "mistyped argument: -32602" "$(json_get "$BODY" .error.code)" -32602
post '{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"execute_code","arguments":{"language":"javascript","code":"return 6*7","extra":1}}}' "${AUTH[@]}" "${S[@]}"
check_eq "undeclared argument: -32602" "$(json_get "$BODY" .error.code)" -32602
post '{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"execute_code","arguments":{"language":"javascript","code":"return 6*7"}}}' "${AUTH[@]}" "${S[@]}"
check_eq "tools/call: structured result" "$(json_get "$BODY" .result.structuredContent.result)" 42
post '{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"execute_code","arguments":{"language":"javascript","code":"throw new TypeError(\"bad\")"}}}' "${AUTH[@]}" "${S[@]}"
check_eq "tool failure: isError result" "$(json_get "$BODY" .result.isError)" true
check_eq "tool failure: error name" "$(json_get "$BODY" .result.structuredContent.error.name)" TypeError
head -c $((5 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$T/big"
ST=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE_URL/mcp" -H 'Content-Type: application/json' "${AUTH[@]}" "${S[@]}" --data-binary @"$T/big")
check_eq "oversized message: 413" "$ST" 413
CT=text/plain post '{"jsonrpc":"2.0","id":15,"method":"ping"}' "${AUTH[@]}" "${S[@]}"
check_eq "wrong content type: 415" "$ST" 415
ACCEPT=text/html post '{"jsonrpc":"2.0","id":16,"method":"ping"}' "${AUTH[@]}" "${S[@]}"
check_eq "unusable Accept: 406" "$ST" 406
post '{"jsonrpc":"2.0","id":17,"method":"ping"}' "${AUTH[@]}" "${S[@]}" -H 'Origin: http://evil.example.com'
check_eq "foreign Origin: 403" "$ST" 403
post '{"jsonrpc":"2.0","id":18,"method":"ping"}' "${AUTH[@]}" "${S[@]}" -H 'Host: evil.example.com'
check_eq "foreign Host (DNS rebinding): 403" "$ST" 403
post '{"jsonrpc":"2.0","id":19,"method":"ping"}' "${AUTH[@]}" "${S[@]}" -H "Origin: http://localhost:1234"
check_eq "localhost Origin: 200" "$ST" 200

# ---- streaming with progress (SSE) -----------------------------------------------------------
post '{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"execute_code","arguments":{"language":"python","code":"return 1"},"_meta":{"progressToken":"pt"}}}' "${AUTH[@]}" "${S[@]}"
check_contains "progress token + SSE: text/event-stream" "$(hdr Content-Type)" "text/event-stream"
check_contains "SSE: progress notification" "$BODY" '"method":"notifications/progress"'
check_contains "SSE: final response" "$BODY" '"id":20'
curl -s "$BASE_URL/healthcheck" >"$T/hc"
check_eq "/healthcheck" "$(jq -r .status "$T/hc")" ok
stop_server

# ---- the official conformance scenarios (no-auth localhost server with the fixture tools) ---
CONF=$STOCKADE_ROOT/tests/node/node_modules/@modelcontextprotocol/conformance/dist/index.js
if [ ! -f "$CONF" ]; then
  skip "conformance suite" "tests/node dependencies are not installed (scripts/deps.sh)"
  done_testing; exit
fi
cat >"$T/open.yaml" <<YAML
mcp:
  enabled: true
  allowUnauthenticated: true
YAML
SERVE_ENV="STOCKADE_MCP_CONFORMANCE_TOOLS=1" start_server --config "$T/open.yaml" || { not_ok "open server starts"; done_testing; exit 1; }
for s in server-initialize tools-list ping dns-rebinding-protection tools-call-error tools-call-with-progress json-schema-2020-12; do
  out=$(cd "$T" && timeout 120 node "$CONF" server --url "$BASE_URL/mcp" --scenario "$s" 2>&1)
  if printf '%s' "$out" | grep -qE 'Passed: ([0-9]+)/\1, 0 failed'; then ok "conformance: $s"
  else not_ok "conformance: $s" "$(printf '%s' "$out" | tail -15)"; fi
done
stop_server
done_testing
