#!/usr/bin/env bash
# `stockade keys generate`: the files OpenSSL can read, mode 0600, a 64-hex key with no
# newline, a Kubernetes Secret; then the keys pass `config check`, inline, as files and as a
# mounted Secret, and a 65-byte key is refused with the fix.
. "$(dirname "$0")/../lib.sh"
T=$(mktemp -d /tmp/st-e2e-keys-XXXXXX)
trap 'rm -rf "$T"' EXIT
unset ENCRYPTION_KEY JWT_SECRET STOCKADE_API_TOKEN STOCKADE_SECRETS_DIR RR_DEFAULT_S3_BUCKET

out=$("$STOCKADE_BIN" keys generate --out "$T/k" 2>&1); rc=$?
check_eq "generate exit 0" "$rc" 0
for f in private_key.pem public_key.pem encryption_key.txt api_secret.txt; do
  check_eq "$f mode 0600" "$(stat -c %a "$T/k/$f" 2>/dev/null)" 600
done
check_eq "encryption key is 64 bytes" "$(wc -c <"$T/k/encryption_key.txt")" 64
check "encryption key is hex" grep -Eq '^[0-9a-f]{64}$' "$T/k/encryption_key.txt"
check_eq "no trailing newline" "$(tail -c1 "$T/k/encryption_key.txt" | od -An -c | tr -d ' ')" \
  "$(head -c64 "$T/k/encryption_key.txt" | tail -c1)"
check_contains "private key is P-256" "$(openssl pkey -in "$T/k/private_key.pem" -noout -text 2>&1)" "prime256v1"
check_eq "public key is the private key's half" \
  "$(openssl pkey -in "$T/k/private_key.pem" -pubout)" "$(cat "$T/k/public_key.pem")"

cat >"$T/c.yaml" <<YAML
apiTokens: ["0123456789abcdef0123456789abcdef"]
jwtSecret: "backend-jwt-secret-backend-jwt-secret"
rr:
  enabled: true
  agentSandbox:
    jwtPrivateKeyFile: k/private_key.pem
    jwtPublicKeyFile: k/public_key.pem
    encryptionKeyFile: k/encryption_key.txt
    apiSecretFile: k/api_secret.txt
  blobStorage:
    filesystem: {path: $T/blobs}
YAML
out=$("$STOCKADE_BIN" config check "$T/c.yaml" 2>&1); rc=$?
check_eq "generated keys pass config check (paths relative to the file)" "$rc" 0

# the classic mistake: openssl rand -hex 32 > file (65 bytes)
openssl rand -hex 32 >"$T/k/encryption_key.txt"
check_eq "65-byte key written" "$(wc -c <"$T/k/encryption_key.txt")" 65
out=$("$STOCKADE_BIN" config check "$T/c.yaml" 2>&1); rc=$?
check_eq "65-byte key: exit 1" "$rc" 1
check_contains "names the key path" "$out" "error: rr.agentSandbox.encryptionKey:"
check_contains "says 65 bytes" "$out" "is 65 bytes"
check_contains "names the newline" "$out" "trailing newline"
check_contains "gives the fix" "$out" "tr -d '\\n'"

# mismatched halves
"$STOCKADE_BIN" keys generate --out "$T/k2" >/dev/null 2>&1
openssl rand -hex 32 | tr -d '\n' >"$T/k/encryption_key.txt"
cp "$T/k2/public_key.pem" "$T/k/public_key.pem"
out=$("$STOCKADE_BIN" config check "$T/c.yaml" 2>&1); rc=$?
check_eq "mismatched keypair: exit 1" "$rc" 1
check_contains "mismatch explained" "$out" "not the half of the private key"

# refuse to overwrite
out=$("$STOCKADE_BIN" keys generate --out "$T/k2" 2>&1); rc=$?
check_eq "no overwrite without --force" "$rc" 1
check_contains "says why" "$out" "already exists"
"$STOCKADE_BIN" keys generate --out "$T/k2" --force >/dev/null 2>&1
check_eq "--force overwrites" "$?" 0

# Kubernetes Secret
yaml=$("$STOCKADE_BIN" keys generate --out "$T/k3" --k8s-secret agent-sandbox-env --namespace retool 2>/dev/null); rc=$?
check_eq "k8s secret exit 0" "$rc" 0
check_contains "secret kind" "$yaml" "kind: Secret"
check_contains "secret name" "$yaml" "name: agent-sandbox-env"
check_contains "namespace" "$yaml" "namespace: retool"
check_eq "secret file 0600" "$(stat -c %a "$T/k3/agent-sandbox-env.yaml")" 600
mnt=$T/mounts/agent-sandbox-env
mkdir -p "$mnt"
for key in jwt-public-key jwt-private-key encryption-key api-secret; do
  v=$(printf '%s\n' "$yaml" | sed -n "s/^  $key: //p")
  check "data key $key present" test -n "$v"
  printf '%s' "$v" | base64 -d >"$mnt/$key"
done
check "jwt-public-key decodes to public_key.pem" cmp "$mnt/jwt-public-key" "$T/k3/public_key.pem"
check "encryption-key decodes to 64 bytes" test "$(wc -c <"$mnt/encryption-key")" -eq 64
cat >"$T/ext.yaml" <<YAML
apiTokens: ["0123456789abcdef0123456789abcdef"]
rr:
  enabled: true
  agentSandbox:
    externalSecret: {name: agent-sandbox-env}
  blobStorage:
    filesystem: {path: $T/blobs}
YAML
out=$(STOCKADE_SECRETS_DIR=$T/mounts "$STOCKADE_BIN" config check "$T/ext.yaml" 2>&1); rc=$?
check_eq "mounted Secret passes config check" "$rc" 0
out=$("$STOCKADE_BIN" config check "$T/ext.yaml" 2>&1); rc=$?
check_eq "unmounted Secret: exit 1" "$rc" 1
check_contains "says where it looked" "$out" "/etc/stockade/secrets/agent-sandbox-env"

"$STOCKADE_BIN" keys generate --k8s-secret Bad_Name --out "$T/k4" >/dev/null 2>&1
check_eq "invalid k8s name: exit 2" "$?" 2
"$STOCKADE_BIN" keys frob >/dev/null 2>&1; check_eq "unknown subcommand: exit 2" "$?" 2
out=$("$STOCKADE_BIN" keys --help); check_contains "help" "$out" "stockade keys generate"

done_testing
