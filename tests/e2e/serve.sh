#!/usr/bin/env bash
# serve.sh - `stockade serve` over HTTP: health endpoints, auth (none / wrong / right token,
# HS256 JWT), JSON 404/405/400/413 errors, request ids, metrics, admin migrations, usage
# errors, graceful shutdown.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-serve.sh"

out=$("$STOCKADE_BIN" serve --help); rc=$?
check_eq "serve --help exits 0" "$rc" 0
check_contains "serve --help documents --role" "$out" "--role"
out=$("$STOCKADE_BIN" serve --role nope 2>&1); rc=$?
check_eq "unknown role is a usage error" "$rc" 2
check_contains "unknown role is named" "$out" "unknown role 'nope'"
out=$("$STOCKADE_BIN" serve --listen nonsense 2>&1); rc=$?
check_eq "bad --listen fails to start" "$rc" 1
check_contains "bad --listen says host:port" "$out" "must be host:port"

start_server || { not_ok "server starts"; done_testing; exit 1; }
ok "server starts (embedded default)"
check "dev secrets generated" test -f "$SERVER_DATA/secrets/jwt-secret"
check "dev secrets are 0600" test "$(stat -c %a "$SERVER_DATA/secrets/jwt-secret")" = 600
check_contains "start log names the token file" "$(cat "$SERVER_LOG")" "api-token"

for p in /healthz /readyz /api/checkHealth /api/health /api/readiness; do
  REQ_TOKEN=none req GET "$p"
  check_eq "GET $p answers 200 without auth" "$REQ_STATUS" 200
  check_contains "GET $p is a JSON health document" "$REQ_BODY" '"status":'
done

REQ_TOKEN=none req GET /metrics
check_eq "GET /metrics 200" "$REQ_STATUS" 200
check_contains "metrics: request counter" "$REQ_BODY" "stockade_http_requests_total"
check_contains "metrics: duration histogram" "$REQ_BODY" "stockade_http_request_duration_seconds_bucket"
check_contains "metrics: in flight" "$REQ_BODY" "stockade_http_requests_in_flight"

# auth
REQ_TOKEN=none req GET /api/v1/admin/migrations
check_eq "no token: 401" "$REQ_STATUS" 401
check_contains "401 has WWW-Authenticate" "$REQ_HEADERS" "WWW-Authenticate: Bearer"
check_eq "401 error code" "$(json_get "$REQ_BODY" .error.code)" unauthorized
REQ_TOKEN=not-the-right-token-at-all req GET /api/v1/admin/migrations
check_eq "wrong token: 401" "$REQ_STATUS" 401
check_contains "wrong token: invalid_token" "$REQ_HEADERS" 'error="invalid_token"'
req GET /api/v1/admin/migrations
check_eq "right token: 200" "$REQ_STATUS" 200
check_eq "migration status names the namespace" "$(json_get "$REQ_BODY" .namespace)" stockade

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
jwt() { # jwt SECRET CLAIMS-JSON [ALG]
  local h p s
  h=$(printf '{"alg":"%s","typ":"JWT"}' "${3:-HS256}" | b64url)
  p=$(printf '%s' "$2" | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$1" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}
secret=$(cat "$SERVER_DATA/secrets/jwt-secret")
now=$(date +%s)
REQ_TOKEN=$(jwt "$secret" "{\"sub\":\"backend\",\"exp\":$((now + 300))}") req GET /api/v1/admin/migrations
check_eq "HS256 JWT signed with jwtSecret: 200" "$REQ_STATUS" 200
REQ_TOKEN=$(jwt "wrong-secret" "{\"sub\":\"backend\",\"exp\":$((now + 300))}") req GET /api/v1/admin/migrations
check_eq "JWT with another secret: 401" "$REQ_STATUS" 401
REQ_TOKEN=$(jwt "$secret" "{\"sub\":\"backend\",\"exp\":$((now - 60))}") req GET /api/v1/admin/migrations
check_eq "expired JWT: 401" "$REQ_STATUS" 401
REQ_TOKEN=$(jwt "$secret" "{\"sub\":\"backend\",\"exp\":$((now + 300))}" none) req GET /api/v1/admin/migrations
check_eq "alg none JWT: 401" "$REQ_STATUS" 401
REQ_TOKEN=$(jwt "$secret" "{\"sub\":\"ci\",\"exp\":$((now + 300)),\"scope\":\"execute\"}") req GET /api/v1/admin/migrations
check_eq "JWT lacking the admin scope: 403" "$REQ_STATUS" 403
check_eq "403 error code" "$(json_get "$REQ_BODY" .error.code)" forbidden
check_contains "403 names the missing scope" "$REQ_HEADERS" 'insufficient_scope'

# errors are JSON
req GET /no/such/route
check_eq "unknown route: 404" "$REQ_STATUS" 404
check_eq "404 is JSON" "$(json_get "$REQ_BODY" .error.code)" not_found
req DELETE /healthz
check_eq "wrong method: 405" "$REQ_STATUS" 405
check_contains "405 has Allow" "$REQ_HEADERS" "Allow: GET"
req POST /api/v1/admin/migrations '{"name":'
check_eq "invalid JSON: 400" "$REQ_STATUS" 400
check_eq "invalid JSON code" "$(json_get "$REQ_BODY" .error.code)" invalid_json
req POST /api/v1/admin/migrations '{"name":5}'
check_eq "mistyped field: 400" "$REQ_STATUS" 400
check_eq "400 names the field" "$(json_get "$REQ_BODY" .error.field)" name
req POST /api/v1/admin/migrations '{}'
check_eq "missing field: 400 naming it" "$(json_get "$REQ_BODY" .error.field)" name
{ printf '{"name":"'; head -c 20000000 /dev/zero | tr '\0' 'x'; printf '"}'; } >"$_serve_tmp/big.json"
req POST /api/v1/admin/migrations "@$_serve_tmp/big.json"
check_eq "oversize body: 413" "$REQ_STATUS" 413
check_eq "413 code" "$(json_get "$REQ_BODY" .error.code)" body_too_large
rm -f "$_serve_tmp/big.json"

# request ids
req GET /healthz "" -H "X-Request-Id: my-trace-123"
check_contains "X-Request-Id echoed" "$REQ_HEADERS" "X-Request-Id: my-trace-123"
req GET /healthz
check_contains "X-Request-Id generated" "$REQ_HEADERS" "X-Request-Id: "

# migrations admin
req POST /api/v1/admin/migrations '{"name":"no-such-migration"}'
check_eq "retry of an unknown migration: 404" "$REQ_STATUS" 404
for i in $(seq 1 50); do
  req GET /api/v1/admin/migrations
  [ "$(json_get "$REQ_BODY" '.running | length')" = 0 ] && break
  sleep 0.1
done
req POST /api/v1/admin/migrations '{"name":"schema-integrity-check"}'
check_eq "retry of a completed migration: 409" "$REQ_STATUS" 409

# access log: one JSON line per request with the fields operators grep for
line=$(grep '"msg":"request"' "$SERVER_LOG" | grep '/no/such/route' | head -1)
for f in ts method path status bytes ms requestId principal; do
  check_contains "access log has '$f'" "$line" "\"$f\":"
done

# graceful stop
stop_server TERM; rc=$?
check_eq "SIGTERM: clean exit 0" "$rc" 0
check_contains "shutdown logged" "$(cat "$SERVER_LOG")" '"msg":"stopped"'

# logLevel / STOCKADE_LOG_LEVEL applies to the service and to its engines' zygotes
SERVE_ENV="STOCKADE_LOG_LEVEL=warn" start_server --role code-executor
req GET /api/v1/readyz >/dev/null 2>&1 || true
req POST /api/v1/execute '{"language":"javascript","code":"return 1"}'
check_eq "logLevel warn: the service works" "$REQ_STATUS" 200
stop_server TERM
check "logLevel warn: no info lines (requests included)" \
  bash -c "! grep -q '\"level\":\"info\"' '$SERVER_LOG'"
SERVE_ENV="STOCKADE_LOG_LEVEL=debug" start_server --role code-executor
req POST /api/v1/execute '{"language":"javascript","code":"return 1"}'
stop_server TERM
check_contains "logLevel debug: the zygotes' debug lines too" "$(grep '"level":"debug"' "$SERVER_LOG")" \
  "the javascript zygote"
SERVE_ENV=

# production mode refuses to start without credentials
cfg=$_serve_tmp/prod.yaml
printf 'encryptionKey: "0123456789abcdef0123456789abcdef"\n' >"$cfg"
out=$(env -u STOCKADE_API_TOKEN "$STOCKADE_BIN" serve --listen 127.0.0.1:0 --data-dir "$_serve_tmp/prod" --config "$cfg" 2>&1); rc=$?
check_eq "production without credentials: exit 1" "$rc" 1
check_contains "production without credentials: says what to set" "$out" "apiTokens"

done_testing
