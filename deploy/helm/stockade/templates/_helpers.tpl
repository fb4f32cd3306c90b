{{/*
_helpers.tpl - names, labels, the stockade.yaml the pods read, which roles run, and the checks
that refuse a release Stockade itself would refuse to start with (docs/configuration.md,
"Rules"): the same messages, at `helm install` time instead of in a crash-looping pod.
*/}}

{{- define "stockade.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "stockade.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "stockade.image" -}}
{{- printf "%s:%s" .Values.deploy.image.repository (default .Chart.AppVersion .Values.deploy.image.tag) -}}
{{- end -}}

{{/* stockade.yaml: every value but the chart's own `deploy` block, as Stockade reads it. */}}
{{- define "stockade.config" -}}
{{- toYaml (omit .Values "deploy") -}}
{{- end -}}

{{/* "true"/"false": is component `.c` (a map with `enabled`) on, `null` following rr.enabled? */}}
{{- define "stockade.follows" -}}
{{- $c := .c | default dict -}}
{{- if kindIs "invalid" $c.enabled -}}
{{- ternary "true" "false" (eq (toString .rr.enabled) "true") -}}
{{- else -}}
{{- ternary "true" "false" (eq (toString $c.enabled) "true") -}}
{{- end -}}
{{- end -}}

{{/*
The roles this release runs, as a list of dicts: role (the --role argument), key (its entry
in deploy.replicas / deploy.resources), profile (its Localhost seccomp profile), privileged,
and the health paths the seed chart's probes use.
*/}}
{{- define "stockade.roles" -}}
{{- $v := .Values -}}
{{- $rr := $v.rr | default dict -}}
{{- $ce := $v.codeExecutor | default dict -}}
{{- $roles := list -}}
{{- if ne (toString $ce.enabled) "false" -}}
{{- $roles = append $roles (dict "role" "code-executor" "key" "codeExecutor" "profile" "stockade-executor.json" "privileged" (eq (toString $ce.mode) "privileged") "live" "/api/checkHealth" "ready" "/api/checkHealth") -}}
{{- end -}}
{{- if eq (include "stockade.follows" (dict "c" $rr.jsExecutor "rr" $rr)) "true" -}}
{{- $js := $rr.jsExecutor | default dict -}}
{{- $roles = append $roles (dict "role" "js-executor" "key" "jsExecutor" "profile" "stockade-executor.json" "privileged" (eq (toString $js.mode) "privileged") "live" "/api/health" "ready" "/api/readiness") -}}
{{- end -}}
{{- if eq (include "stockade.follows" (dict "c" $rr.agentSandbox "rr" $rr)) "true" -}}
{{- $roles = append $roles (dict "role" "agent-sandbox" "key" "agentSandbox" "profile" "stockade-agent-sandbox.json" "privileged" false "live" "/healthz" "ready" "/readyz") -}}
{{- end -}}
{{- if eq (include "stockade.follows" (dict "c" $rr.gitServer "rr" $rr)) "true" -}}
{{- $roles = append $roles (dict "role" "git-server" "key" "gitServer" "profile" "stockade-executor.json" "privileged" false "live" "/healthz" "ready" "/readyz") -}}
{{- end -}}
{{- if eq (toString ($v.mcp | default dict).enabled) "true" -}}
{{- $roles = append $roles (dict "role" "mcp" "key" "mcp" "profile" "stockade-executor.json" "privileged" false "live" "/healthz" "ready" "/readyz") -}}
{{- end -}}
{{- toJson $roles -}}
{{- end -}}

{{/* Fail the release on what Stockade would refuse, each message naming the fix. */}}
{{- define "stockade.validate" -}}
{{- $v := .Values -}}
{{- $legacy := dict "r2" "rr" "jsExecutor" "rr.jsExecutor" "agentSandbox" "rr.agentSandbox" "rrGitServer" "rr.gitServer" "blobStorage" "rr.blobStorage" "r2Agent" "removed: agent sandboxes are rr.agentSandbox" -}}
{{- range $old, $new := $legacy -}}
{{- if hasKey $v $old -}}
{{- fail (printf "legacy key: %s -> %s; the old layout is not accepted, move it and install again" $old $new) -}}
{{- end -}}
{{- end -}}
{{- $rr := $v.rr | default dict -}}
{{- if not (kindIs "map" $rr) -}}
{{- fail "rr must be a mapping (rr.enabled, rr.jsExecutor, rr.agentSandbox, rr.gitServer, rr.blobStorage)" -}}
{{- end -}}
{{- $rrLegacy := dict "r2Agent" "removed: agent sandboxes are rr.agentSandbox" "rrAgent" "removed: agent sandboxes are rr.agentSandbox" "rrGitServer" "rr.gitServer" "rrBlobStorage" "rr.blobStorage" "mcp" "mcp (top level)" -}}
{{- range $old, $new := $rrLegacy -}}
{{- if hasKey $rr $old -}}
{{- fail (printf "legacy key: rr.%s -> %s; the old layout is not accepted, move it and install again" $old $new) -}}
{{- end -}}
{{- end -}}
{{- $as := $rr.agentSandbox | default dict -}}
{{- if hasKey $as "privileged" -}}
{{- fail "rr.agentSandbox.privileged is not supported: sandboxes are isolated by gVisor (or runtime: jail), never by a privileged pod; remove the key" -}}
{{- end -}}
{{- $git := $rr.gitServer | default dict -}}
{{- $asOn := eq (include "stockade.follows" (dict "c" $rr.agentSandbox "rr" $rr)) "true" -}}
{{- $gitOn := eq (include "stockade.follows" (dict "c" $rr.gitServer "rr" $rr)) "true" -}}
{{- if and (or $asOn $gitOn) (ne (toString $git.skipBlobStorageValidation) "true") -}}
{{- $bs := $rr.blobStorage | default dict -}}
{{- $named := list -}}
{{- range $p := list "s3" "gcs" "azure" "filesystem" -}}
{{- if hasKey $bs $p -}}{{- $named = append $named $p -}}{{- end -}}
{{- end -}}
{{- if ne (len $named) 1 -}}
{{- fail (printf "rr.blobStorage must name exactly one provider (s3, gcs, azure or filesystem) while %s is on; it names %d%s. Set one, or rr.gitServer.skipBlobStorageValidation: true to take storage from the RR_*_S3_* variables" (ternary "the agent sandbox" "the git server" $asOn) (len $named) (ternary "" (printf ": %s" (join ", " $named)) (eq (len $named) 0))) -}}
{{- end -}}
{{- end -}}
{{- $roles := include "stockade.roles" . | fromJsonArray -}}
{{- /* Roles whose state is in the store: with SQLite each pod would keep its own. */ -}}
{{- if not (($v.postgresql | default dict).host) -}}
{{- range $r := $roles -}}
{{- if has $r.role (list "js-executor" "agent-sandbox" "git-server") -}}
{{- $n := int (index (($v.deploy | default dict).replicas | default dict) $r.key | default 1) -}}
{{- if gt $n 1 -}}
{{- fail (printf "deploy.replicas.%s is %d, but without postgresql each %s pod would keep its own SQLite state (%s); set postgresql, or keep deploy.replicas.%s at 1" $r.key $n $r.role (get (dict "js-executor" "stored functions" "agent-sandbox" "sandbox records" "git-server" "repositories and push leases") $r.role) $r.key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq (len $roles) 0 -}}
{{- fail "no role is enabled: set codeExecutor.enabled, rr.enabled (or one of rr.jsExecutor/rr.agentSandbox .enabled) or mcp.enabled" -}}
{{- end -}}
{{- end -}}
