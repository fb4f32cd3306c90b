#!/usr/bin/env bash
# `stockade config check|show` as an operator runs them: every problem at once with its key
# path, exit codes, JSON output, redaction, environment overrides.
. "$(dirname "$0")/../lib.sh"
DATA=$STOCKADE_ROOT/tests/data/config
T=$(mktemp -d /tmp/st-e2e-config-XXXXXX)
trap 'rm -rf "$T"' EXIT
unset ENCRYPTION_KEY JWT_SECRET STOCKADE_API_TOKEN RR_DEFAULT_S3_BUCKET RR_GIT_S3_BUCKET \
  RR_SNAPSHOTS_S3_BUCKET POSTGRES_HOST STOCKADE_DATA_DIR STOCKADE_SECRETS_DIR

out=$("$STOCKADE_BIN" config check "$DATA/minimal.yaml" 2>&1); rc=$?
check_eq "minimal config is valid" "$rc" 0
check_contains "says ok" "$out" "ok (0 errors, 0 warnings)"

out=$("$STOCKADE_BIN" config check "$DATA/warnings.yaml" 2>&1); rc=$?
check_eq "warnings only: exit 0" "$rc" 0
check_contains "unknown key with suggestion" "$out" "warning: listn: unknown key (ignored); did you mean 'listen'?"
check_contains "unsandboxed is loud" "$out" "warning: codeExecutor.mode: unsandboxed"

out=$("$STOCKADE_BIN" config check "$DATA/legacy.yaml" 2>&1); rc=$?
check_eq "legacy keys: exit 1" "$rc" 1
for m in "jsExecutor -> rr.jsExecutor" "agentSandbox -> rr.agentSandbox" \
  "rrGitServer -> rr.gitServer" "blobStorage -> rr.blobStorage" "r2Agent -> (removed)" \
  "r2 -> rr" "rr.rrBlobStorage -> rr.blobStorage" "rr.rrGitServer -> rr.gitServer"; do
  check_contains "legacy mapping listed: $m" "$out" "$m"
done

out=$("$STOCKADE_BIN" config check "$DATA/many-errors.yaml" 2>&1); rc=$?
check_eq "many errors: exit 1" "$rc" 1
n=$(printf '%s\n' "$out" | grep -c '^error: ')
check "all errors reported at once ($n)" test "$n" -ge 6
for k in encryptionKey codeExecutor.mode codeExecutor.limits.defaultTimeoutMs rr.jsExecutor \
  rr.agentSandbox.encryptionKey rr.blobStorage; do
  check_contains "error names key path $k" "$out" "error: $k: "
done
check_contains "non-ascii explained" "$out" "ERR_OSSL_BAD_DECRYPT"
check_contains "base64 rejected" "$out" "base64 is rejected"

json=$("$STOCKADE_BIN" config check --json "$DATA/many-errors.yaml"); rc=$?
check_eq "--json exit 1" "$rc" 1
check_eq "--json valid false" "$(json_get "$json" .valid)" false
check "--json lists problems" test "$(json_get "$json" '.problems | length')" -ge 6
check_eq "--json problem has key" "$(json_get "$json" '[.problems[] | select(.key=="rr.jsExecutor")] | length')" 1

cat >"$T/s.yaml" <<YAML
apiTokens: ["0123456789abcdef0123456789abcdef"]
jwtSecret: "super-secret-backend-jwt-value-1234567890"
postgresql: {host: db.example, password: "pg-secret-password", ssl_enabled: true}
rr:
  enabled: true
  jsExecutor: {enabled: true}
  agentSandbox: {enabled: false}
  gitServer: {enabled: false}
YAML
out=$("$STOCKADE_BIN" config show "$T/s.yaml" 2>&1); rc=$?
check_eq "show exit 0" "$rc" 0
check_not_contains "show redacts jwtSecret" "$out" "super-secret-backend-jwt-value"
check_not_contains "show redacts postgres password" "$out" "pg-secret-password"
check_not_contains "show never prints api tokens" "$out" "0123456789abcdef0123456789abcdef"
json=$("$STOCKADE_BIN" config show --json "$T/s.yaml" 2>/dev/null)
check_eq "show: jwtSecret redacted" "$(json_get "$json" .jwtSecret)" "<redacted>"
check_eq "show: js effective on" "$(json_get "$json" .rr.jsExecutor.effectiveEnabled)" true
check_eq "show: agent sandbox off" "$(json_get "$json" .rr.agentSandbox.effectiveEnabled)" false
check_eq "show: inherited pg schema" "$(json_get "$json" .rr.agentSandbox.postgres.schema)" agent_executor
check_contains "show: inherited ssl no-verify" "$(json_get "$json" .rr.agentSandbox.postgres.effectiveUrl)" "sslmode=no-verify"
check_eq "show: mcp not under rr" "$(json_get "$json" .mcp.enabled)" false

json=$(RR_DEFAULT_S3_BUCKET=envb RR_SNAPSHOTS_S3_BUCKET=snapb "$STOCKADE_BIN" config show --json "$T/s.yaml" 2>/dev/null)
check_eq "env: git falls back to RR_DEFAULT" "$(json_get "$json" .rr.effectiveBlobStorage.git.s3.bucket)" envb
check_eq "env: snapshots own bucket" "$(json_get "$json" .rr.effectiveBlobStorage.snapshots.s3.bucket)" snapb

out=$(ENCRYPTION_KEY=$'\xc3\xa9t\xc3\xa9' "$STOCKADE_BIN" config check "$T/s.yaml" 2>&1); rc=$?
check_eq "non-ascii ENCRYPTION_KEY: exit 1" "$rc" 1
check_contains "names the variable" "$out" "environment variable ENCRYPTION_KEY"

json=$("$STOCKADE_BIN" config show --json 2>/dev/null); rc=$?
check_eq "show without file: embedded defaults" "$rc" 0
check_eq "embedded: dev mode" "$(json_get "$json" .devMode)" true
check_eq "embedded: listen" "$(json_get "$json" .listen)" "127.0.0.1:8080"

out=$("$STOCKADE_BIN" config check /nonexistent/stockade.yaml 2>&1); rc=$?
check_eq "unreadable file: exit 1" "$rc" 1
check_contains "names the file" "$out" "/nonexistent/stockade.yaml"
printf 'rr: {enabled: true\n' >"$T/bad.yaml"
out=$("$STOCKADE_BIN" config check "$T/bad.yaml" 2>&1); rc=$?
check_eq "syntax error: exit 1" "$rc" 1
check_contains "syntax error has a line" "$out" "line"

"$STOCKADE_BIN" config >/dev/null 2>&1; check_eq "no subcommand: exit 2" "$?" 2
"$STOCKADE_BIN" config check >/dev/null 2>&1; check_eq "check without file: exit 2" "$?" 2
"$STOCKADE_BIN" config frob x >/dev/null 2>&1; check_eq "unknown subcommand: exit 2" "$?" 2
out=$("$STOCKADE_BIN" config --help); check_contains "help" "$out" "usage: stockade config check"

# the shipped example validates once its files exist
mkdir -p "$T/etc/secrets/agent-sandbox-env"
"$STOCKADE_BIN" keys generate --out "$T/gen" >/dev/null 2>&1
cp "$T/gen/public_key.pem" "$T/etc/secrets/agent-sandbox-env/jwt-public-key"
cp "$T/gen/private_key.pem" "$T/etc/secrets/agent-sandbox-env/jwt-private-key"
cp "$T/gen/encryption_key.txt" "$T/etc/secrets/agent-sandbox-env/encryption-key"
printf 'pgpw' >"$T/etc/postgres-password"
printf 's3secret' >"$T/etc/s3-secret-access-key"
sed "s#/etc/stockade/#$T/etc/#g" "$STOCKADE_ROOT/deploy/stockade.example.yaml" >"$T/example.yaml"
out=$(STOCKADE_SECRETS_DIR=$T/etc/secrets JWT_SECRET=example-jwt-secret-example-jwt-secret \
  ENCRYPTION_KEY=example-backend-key "$STOCKADE_BIN" config check "$T/example.yaml" 2>&1); rc=$?
check_eq "deploy/stockade.example.yaml passes config check" "$rc" 0
check_contains "example: no warnings" "$out" "(0 errors, 0 warnings)"

done_testing
