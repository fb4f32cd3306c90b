#!/usr/bin/env bash
# tests/e2e/helm.sh - the Helm chart (deploy/helm/stockade) as an operator uses it: it lints; it
# renders one Deployment and Service per enabled role with the right probes, seccomp profile
# and security context; the stockade.yaml it hands the pods passes `stockade config check`
# (the chart's values are that file's layout); and it refuses, naming the fix, what Stockade
# would refuse to start with. helm comes from scripts/deps.sh (.cache/tools/helm).
. "$(dirname "$0")/../lib.sh"
HELM=${HELM:-$STOCKADE_ROOT/.cache/tools/helm}
CHART=$STOCKADE_ROOT/deploy/helm/stockade
PY=/usr/bin/python3
T=$(mktemp -d /tmp/st-e2e-helm-XXXXXX)
trap 'rm -rf "$T"' EXIT
unset ENCRYPTION_KEY JWT_SECRET STOCKADE_API_TOKEN STOCKADE_SECRETS_DIR RR_DEFAULT_S3_BUCKET \
  RR_GIT_S3_BUCKET RR_SNAPSHOTS_S3_BUCKET POSTGRES_HOST STOCKADE_DATA_DIR
if [ ! -x "$HELM" ]; then
  skip "helm chart" "no helm at $HELM (scripts/deps.sh installs it)"
  done_testing
  exit
fi

# render NAME [helm args...]: the manifests as JSON documents, one per line, in $T/NAME.json
render() {
  local name=$1
  shift
  "$HELM" template t "$CHART" "$@" >"$T/$name.yaml" 2>"$T/$name.err" || return 1
  "$PY" -c 'import json,sys,yaml
for d in yaml.safe_load_all(sys.stdin):
    if d: print(json.dumps(d))' <"$T/$name.yaml" >"$T/$name.json"
}
# kinds NAME: "Kind/name" of every manifest, sorted
kinds() { jq -r '"\(.kind)/\(.metadata.name)"' "$T/$1.json" | sort | tr '\n' ' '; }
# doc NAME KIND NAME: one manifest
doc() { jq -c --arg k "$2" --arg n "$3" 'select(.kind == $k and .metadata.name == $n)' "$T/$1.json"; }
# config NAME: the stockade.yaml the release hands its pods, into $T/NAME.stockade.yaml
config() { doc "$1" Secret t-stockade-config | jq -r '.stringData["stockade.yaml"]' >"$T/$1.stockade.yaml"; }

out=$("$HELM" lint --strict "$CHART" 2>&1); rc=$?
check_eq "helm lint --strict passes" "$rc" 0

# ---- defaults: the code-executor alone ----------------------------------------------------------
check "default values render" render default
check_eq "default: the config, the code-executor, the seccomp installer" "$(kinds default)" \
  "ConfigMap/t-stockade-seccomp DaemonSet/t-stockade-seccomp Deployment/t-stockade-code-executor Secret/t-stockade-config Service/t-stockade-code-executor "
d=$(doc default Deployment t-stockade-code-executor)
c='.spec.template.spec.containers[0]'
check_eq "code-executor: serve --role code-executor with the rendered config" \
  "$(json_get "$d" "$c.args | join(\" \")")" "serve --config /etc/stockade/stockade.yaml --role code-executor"
check_eq "code-executor: the seed chart's health path" "$(json_get "$d" "$c.livenessProbe.httpGet.path")" /api/checkHealth
check_eq "code-executor: Localhost seccomp profile" \
  "$(json_get "$d" "$c.securityContext.seccompProfile | \"\(.type) \(.localhostProfile)\"")" "Localhost profiles/stockade-executor.json"
check_eq "code-executor: non-root, no capabilities, no privilege escalation" \
  "$(json_get "$d" "$c.securityContext | \"\(.runAsNonRoot) \(.capabilities.drop | join(\",\")) \(.allowPrivilegeEscalation)\"")" "true ALL false"
check_eq "code-executor: user namespace and unmasked /proc for the jail" \
  "$(json_get "$d" "\"\(.spec.template.spec.hostUsers) \($c.securityContext.procMount)\"")" "false Unmasked"
check_eq "code-executor: two replicas by default" "$(json_get "$d" .spec.replicas)" 2
cm=$(doc default ConfigMap t-stockade-seccomp)
for p in stockade-executor.json stockade-agent-sandbox.json; do
  printf '%s' "$(json_get "$cm" ".data[\"$p\"]")" >"$T/$p"
  check "seccomp installer carries deploy/seccomp/$p unchanged" \
    cmp -s "$T/$p" <(printf '%s' "$(cat "$STOCKADE_ROOT/deploy/seccomp/$p")")
done
config default
check_not_contains "the chart's own deploy block stays out of stockade.yaml" "$(cat "$T/default.stockade.yaml")" "deploy:"
out=$(STOCKADE_API_TOKEN=0123456789abcdef0123 "$STOCKADE_BIN" config check "$T/default.stockade.yaml" 2>&1); rc=$?
check_eq "default stockade.yaml passes config check (token from the environment)" "$rc" 0
check_contains "... with no warning" "$out" "(0 errors, 0 warnings)"

out=$(STOCKADE_API_TOKEN=0123456789abcdef0123 "$STOCKADE_BIN" config check "$CHART/values.yaml" 2>&1); rc=$?
check_eq "the chart's values.yaml is itself a valid stockade.yaml (deploy: accepted, ignored)" "$rc $out" \
  "0 $CHART/values.yaml: ok (0 errors, 0 warnings)"

# ---- everything on --------------------------------------------------------------------------------
cat >"$T/all.values.yaml" <<YAML
apiTokens: ["sha256:449f3879ccbd5d4c57539eff14ded3f63e1388f9177c320af5e0a66f9ec168f9"]
rr:
  enabled: true
  blobStorage:
    s3: {bucket: snapshots, region: eu-west-1}
mcp:
  enabled: true
  staticToken: "0123456789abcdef0123456789"
postgresql: {host: pg.internal, port: 5432, db: stockade, user: stockade, ssl_enabled: true}
deploy:
  replicas: {agentSandbox: 3, gitServer: 2}
YAML
check "everything on renders" render all -f "$T/all.values.yaml"
check_eq "everything on: five roles, each a Deployment and a Service" \
  "$(kinds all | tr ' ' '\n' | grep -E '^(Deployment|Service)/' | tr '\n' ' ')" \
  "Deployment/t-stockade-agent-sandbox Deployment/t-stockade-code-executor Deployment/t-stockade-git-server Deployment/t-stockade-js-executor Deployment/t-stockade-mcp Service/t-stockade-agent-sandbox Service/t-stockade-code-executor Service/t-stockade-git-server Service/t-stockade-js-executor Service/t-stockade-mcp "
js=$(doc all Deployment t-stockade-js-executor)
check_eq "js-executor: /api/health and /api/readiness" \
  "$(json_get "$js" "\"\($c.livenessProbe.httpGet.path) \($c.readinessProbe.httpGet.path)\"")" "/api/health /api/readiness"
as=$(doc all Deployment t-stockade-agent-sandbox)
check_eq "agent-sandbox: its own seccomp profile" "$(json_get "$as" "$c.securityContext.seccompProfile.localhostProfile")" profiles/stockade-agent-sandbox.json
check_eq "agent-sandbox: the externalSecret mounted where stockade reads it" \
  "$(json_get "$as" "$c.volumeMounts[] | select(.name == \"agent-sandbox-secret\") | .mountPath")" /etc/stockade/secrets/agent-sandbox-env
check_eq "agent-sandbox: ... from the Secret of that name" \
  "$(json_get "$as" ".spec.template.spec.volumes[] | select(.name == \"agent-sandbox-secret\") | .secret.secretName")" agent-sandbox-env
check_eq "agent-sandbox: replicas from deploy.replicas" "$(json_get "$as" .spec.replicas)" 3
check_eq "git-server: replicas from deploy.replicas (with postgresql)" \
  "$(json_get "$(doc all Deployment t-stockade-git-server)" .spec.replicas)" 2
check_eq "mcp: serve --role mcp" "$(json_get "$(doc all Deployment t-stockade-mcp)" "$c.args[-1]")" mcp
check_eq "git-server: serve --role git-server" "$(json_get "$(doc all Deployment t-stockade-git-server)" "$c.args[-1]")" git-server
mnt=$T/mounts/agent-sandbox-env
mkdir -p "$mnt"
yaml=$("$STOCKADE_BIN" keys generate --out "$T/keys" --k8s-secret agent-sandbox-env 2>/dev/null)
for key in jwt-public-key jwt-private-key encryption-key api-secret; do
  printf '%s\n' "$yaml" | sed -n "s/^  $key: //p" | base64 -d >"$mnt/$key"
done
config all
out=$(STOCKADE_SECRETS_DIR=$T/mounts "$STOCKADE_BIN" config check "$T/all.stockade.yaml" 2>&1); rc=$?
check_eq "everything-on stockade.yaml passes config check with the Secret mounted" "$rc" 0
check_contains "... its warnings are the operator's choices (unsigned S3, MCP static token)" \
  "$out" "ok (0 errors, 3 warnings)"
sum1=$(json_get "$js" '.spec.template.metadata.annotations["checksum/config"]')
render all2 -f "$T/all.values.yaml" --set codeExecutor.limits.maxTimeoutMs=60000
sum2=$(json_get "$(doc all2 Deployment t-stockade-js-executor)" '.spec.template.metadata.annotations["checksum/config"]')
check "a config change rolls the pods (checksum annotation changes)" test "$sum1" != "$sum2"

# ---- privileged mode -------------------------------------------------------------------------------
render priv --set codeExecutor.mode=privileged
p=$(doc priv Deployment t-stockade-code-executor)
check_eq "privileged mode: a privileged root container" \
  "$(json_get "$p" "$c.securityContext | \"\(.privileged) \(.runAsUser)\"")" "true 0"
check_eq "privileged mode: no user namespace" "$(json_get "$p" .spec.template.spec.hostUsers)" null
check "installProfiles=false: no installer" render noinst --set deploy.seccomp.installProfiles=false
check_not_contains "installProfiles=false: no DaemonSet" "$(kinds noinst)" DaemonSet

# ---- what the chart refuses --------------------------------------------------------------------------
# refuse NAME MESSAGE [helm args...]
refuse() {
  local name=$1 msg=$2
  shift 2
  if render "$name" "$@"; then
    not_ok "refused: $name" "rendered"
  else
    check_contains "refused: $name" "$(cat "$T/$name.err")" "$msg"
  fi
}
refuse legacy-jsExecutor "legacy key: jsExecutor -> rr.jsExecutor" --set jsExecutor.enabled=true
refuse legacy-blobStorage "legacy key: blobStorage -> rr.blobStorage" --set blobStorage.s3.bucket=b
refuse legacy-rr-mcp "legacy key: rr.mcp -> mcp (top level)" --set rr.mcp.enabled=true
refuse legacy-rrGitServer "legacy key: rr.rrGitServer -> rr.gitServer" --set rr.rrGitServer.enabled=true
refuse no-blob-storage "rr.blobStorage must name exactly one provider (s3, gcs, azure or filesystem) while the agent sandbox is on; it names 0" \
  --set rr.enabled=true
refuse two-providers "it names 2: s3, filesystem" --set rr.enabled=true \
  --set rr.blobStorage.s3.bucket=b --set rr.blobStorage.filesystem.path=/data
refuse privileged-sandbox "rr.agentSandbox.privileged is not supported" \
  --set rr.agentSandbox.privileged=true
refuse nothing-on "no role is enabled" --set codeExecutor.enabled=false
refuse sqlite-replicas "deploy.replicas.gitServer is 2, but without postgresql each git-server pod would keep its own SQLite state (repositories and push leases)" \
  --set rr.enabled=true --set rr.blobStorage.s3.bucket=b --set deploy.replicas.gitServer=2
check "skipBlobStorageValidation lets storage come from RR_*_S3_* instead" render skip \
  --set rr.enabled=true --set rr.gitServer.skipBlobStorageValidation=true
refuse git-no-blob-storage "while the git server is on; it names 0" \
  --set rr.enabled=true --set rr.agentSandbox.enabled=false
check "the agent sandbox and the git server, off by their own switches, need no blob storage" \
  render as-off --set rr.enabled=true --set rr.agentSandbox.enabled=false \
  --set rr.gitServer.enabled=false
check_eq "... and runs the js-executor it enables" \
  "$(kinds as-off | tr ' ' '\n' | grep -c '^Deployment/')" 2

done_testing
