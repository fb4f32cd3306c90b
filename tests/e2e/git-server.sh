#!/usr/bin/env bash
# git-server.sh - the git server as its users meet it: repositories made through the API, then
# cloned, pushed and fetched with the real git client over smart HTTP (protocol v2 and v0),
# the API token as the Basic-auth password or a bearer header, state kept in the blob store
# (a server that lost its working copies serves the same history), concurrent pushes,
# refused input, a tampered stored archive, and deletion.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-serve.sh"

command -v git >/dev/null || { skip "git server" "git is not installed (scripts/deps.sh installs it)"; done_testing; exit 0; }
W=$(mktemp -d)
trap '_serve_cleanup; rm -rf "$W"' EXIT
export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 HOME=$W
git config --global user.email t@example.invalid
git config --global user.name tester
git config --global init.defaultBranch main

# One git request at a time: the concurrent pushes below queue for it.
SERVE_ENV="STOCKADE_GIT_MAX_REQUESTS=1" start_server --role git-server
if [ -z "$SERVER_PID" ]; then not_ok "server starts with --role git-server"; done_testing; exit 1; fi
ok "server starts with --role git-server"
REQ_TOKEN=none req GET /readyz
check_contains "readyz lists the component" "$REQ_BODY" '"git-server"'
url() { echo "http://x:$TOKEN@${BASE_URL#http://}/git/$1.git"; }

# ---- the repository API ----
req POST /api/v1/git/repos '{"name":"app","description":"an app"}'
check_eq "create: 201" "$REQ_STATUS" 201
check_eq "create: generation 0" "$(json_get "$REQ_BODY" .generation)" 0
check_eq "create: clone URL" "$(json_get "$REQ_BODY" .cloneUrl)" "$BASE_URL/git/app.git"
check_contains "create: Location" "$REQ_HEADERS" "Location: /api/v1/git/repos/app"
req GET /api/v1/git/repos/app
check_eq "a new repository has no branches" "$(json_get "$REQ_BODY" '.branches | length')" 0
req POST /api/v1/git/repos '{"name":"app"}'
check_eq "same name again: 409" "$REQ_STATUS" 409
req POST /api/v1/git/repos '{"name":"no spaces"}'
check_eq "bad name: 400 naming the field" "$REQ_STATUS/$(json_get "$REQ_BODY" .error.field)" 400/name
req POST /api/v1/git/repos '{"name":"x.git"}'
check_contains "a name ending in .git is refused, saying why" "$(json_get "$REQ_BODY" .error.message)" "the URL adds '.git'"
req POST /api/v1/git/repos '{"name":"y","descripton":"typo"}'
check_contains "unknown field: did you mean" "$(json_get "$REQ_BODY" .error.message)" "did you mean 'description'"
req POST /api/v1/git/repos '{}'
check_eq "missing name: 400" "$(json_get "$REQ_BODY" .error.field)" name
req GET /api/v1/git/repos
check_eq "list: one repository" "$(json_get "$REQ_BODY" '.repositories | length')" 1
req GET /api/v1/git/repos/nope
check_eq "GET of a missing repository: 404" "$REQ_STATUS" 404
REQ_TOKEN=none req GET /api/v1/git/repos
check_eq "API without a token: 401" "$REQ_STATUS" 401

# ---- clone, push, clone ----
out=$(git clone "$(url app)" "$W/c1" 2>&1)
check "clone of the empty repository" test -d "$W/c1/.git"
check_contains "git says it is empty" "$out" "empty repository"
(cd "$W/c1" && echo "hello" >README && git add README && git commit -qm first) >/dev/null
check "push the first commit" git -C "$W/c1" push -q origin main
req GET /api/v1/git/repos/app
check_eq "generation 1 after the push" "$(json_get "$REQ_BODY" .generation)" 1
check "its archive is in the blob store" test -f "$SERVER_DATA/blobs/git/app/1.tar.zst.blob"
check "clone sees the commit" git clone -q "$(url app)" "$W/c2"
check_eq "cloned content" "$(cat "$W/c2/README" 2>/dev/null)" hello
check "clone with protocol v0" git -c protocol.version=0 clone -q "$(url app)" "$W/c2v0"
check_eq "v0 clone content" "$(cat "$W/c2v0/README" 2>/dev/null)" hello
check "clone with the token as a bearer header" git -c "http.extraHeader=Authorization: Bearer $TOKEN" clone -q "$BASE_URL/git/app" "$W/c2b"

# larger than git's post buffer: a chunked, streamed push
head -c 3000000 /dev/urandom >"$W/c1/blob.bin"
(cd "$W/c1" && git add blob.bin && git commit -qm big) >/dev/null
check "push of 3 MB (chunked upload)" git -C "$W/c1" push -q origin main
check "shallow clone" git clone -q --depth 1 "$(url app)" "$W/shallow"
check_eq "... holds one commit" "$(git -C "$W/shallow" rev-list --count HEAD 2>&1)" 1
check "partial clone (--filter=blob:none)" git clone -q --no-checkout --filter=blob:none "$(url app)" "$W/partial"
check_eq "... without the blobs" "$(git -C "$W/partial" rev-list --objects --missing=print HEAD | grep -c '^?')" 2
check "fetch it" git -C "$W/c2" pull -q --ff-only
check "fetched bytes identical" cmp "$W/c1/blob.bin" "$W/c2/blob.bin"
check "the replaced archive is deleted" test ! -e "$SERVER_DATA/blobs/git/app/1.tar.zst.blob"

# a rejected push changes nothing; a forced one is stored
(cd "$W/c2v0" && echo other >OTHER && git add OTHER && git commit -qm diverge) >/dev/null
out=$(git -C "$W/c2v0" push origin main 2>&1); rc=$?
check_eq "non-fast-forward push fails" "$rc" 1
check_contains "git says why" "$out" "rejected"
req GET /api/v1/git/repos/app
check_eq "generation unchanged by the rejected push" "$(json_get "$REQ_BODY" .generation)" 2
check "forced push" git -C "$W/c2v0" push -q -f origin main
req GET /api/v1/git/repos/app
check_eq "generation 3 after the forced push" "$(json_get "$REQ_BODY" .generation)" 3

# concurrent pushes to one repository, different branches: both land
for b in b1 b2 b3; do
  git clone -q "$(url app)" "$W/p-$b"
  (cd "$W/p-$b" && git checkout -qb "$b" && echo "$b" >"$b" && git add "$b" && git commit -qm "$b") >/dev/null
done
pids=()
for b in b1 b2 b3; do git -C "$W/p-$b" push -q origin "$b" & pids+=($!); done
okc=0; for p in "${pids[@]}"; do wait "$p" && okc=$((okc + 1)); done
check_eq "three concurrent pushes succeed (queued for the one git slot)" "$okc" 3
check_eq "all three branches are there" "$(git ls-remote --heads "$(url app)" | awk '{print $2}' | sort | tr '\n' ' ')" "refs/heads/b1 refs/heads/b2 refs/heads/b3 refs/heads/main "
req GET /api/v1/git/repos/app
check_eq "one generation per push" "$(json_get "$REQ_BODY" .generation)" 6
check_eq "GET lists the branches" "$(json_get "$REQ_BODY" '[.branches[].name] | join(" ")')" "b1 b2 b3 main"
check_eq "... with their commits" "$(json_get "$REQ_BODY" '.branches[] | select(.name == "main") | .commit')" \
  "$(git ls-remote "$(url app)" refs/heads/main | cut -f1)"
check_eq "... and the default branch" "$(json_get "$REQ_BODY" .defaultBranch)" main

# ---- refusals ----
out=$(git clone "http://x:wrong-token@${BASE_URL#http://}/git/app.git" "$W/bad" 2>&1); rc=$?
check_eq "wrong token: clone fails" "$rc" 128
check_contains "git says authentication failed" "$out" "Authentication failed"
hdr=$(curl -s -o /dev/null -D - "$BASE_URL/git/app.git/info/refs?service=git-upload-pack")
check_contains "401 asks for Basic credentials" "$hdr" 'WWW-Authenticate: Basic realm="stockade"'
out=$(git clone "$(url ghost)" "$W/ghost" 2>&1)
check_contains "missing repository: git says not found" "$out" "not found"
body=$(curl -s -u "x:$TOKEN" "$BASE_URL/git/ghost.git/info/refs?service=git-upload-pack")
check_contains "and the body says how to create it" "$body" "create it with POST /api/v1/git/repos"
req GET "/git/app.git/info/refs"
check_eq "dumb protocol: 400 naming service" "$REQ_STATUS/$(json_get "$REQ_BODY" .error.field)" 400/service
req GET "/git/..%2Fetc/info/refs?service=git-upload-pack"
check_eq "a traversal in the name: 404" "$REQ_STATUS" 404

# ---- storage is the truth: a server without its working copies serves the same history ----
head_before=$(git ls-remote "$(url app)" refs/heads/main | cut -f1)
stop_server
rm -rf "$SERVER_DATA/git"
SERVE_DATA_DIR=$SERVER_DATA start_server --role git-server
check "restarted without working copies" test -n "$SERVER_PID"
check_eq "same head from storage" "$(git ls-remote "$(url app)" refs/heads/main | cut -f1)" "$head_before"
check "clone from storage" git clone -q "$(url app)" "$W/c3"
check_eq "content from storage" "$(cat "$W/c3/OTHER" 2>/dev/null)" other

# a stored archive that holds what Stockade never writes (a hook) is refused, not unpacked
mkdir -p "$W/evil/hooks" && printf '#!/bin/sh\ntouch %s/pwned\n' "$W" >"$W/evil/hooks/post-upload-pack"
chmod +x "$W/evil/hooks/post-upload-pack"; echo "ref: refs/heads/main" >"$W/evil/HEAD"
req POST /api/v1/git/repos '{"name":"evil"}'
git -C "$W/c1" push -q "$(url evil)" main
tar -C "$W/evil" -c HEAD hooks | zstd -q >"$SERVER_DATA/blobs/git/evil/1.tar.zst.blob"
stop_server; rm -rf "$SERVER_DATA/git"
SERVE_DATA_DIR=$SERVER_DATA start_server --role git-server
out=$(git clone "$(url evil)" "$W/evil-clone" 2>&1); rc=$?
check_eq "clone of a tampered repository fails" "$rc" 128
check_contains "the log names the refused entry" "$(grep '"level":"error"' "$SERVER_LOG")" "holds 'hooks"
check "no hook ran" test ! -e "$W/pwned"
check "the server is still up" curl -sf -o /dev/null "$BASE_URL/healthz"

# ---- deletion ----
req DELETE /api/v1/git/repos/app
check_eq "delete: 204" "$REQ_STATUS" 204
check "its archives are gone" test -z "$(ls -A "$SERVER_DATA/blobs/git/app" 2>/dev/null)"
out=$(git ls-remote "$(url app)" 2>&1)
check_contains "a deleted repository is not found" "$out" "not found"
req DELETE /api/v1/git/repos/app
check_eq "delete again: 404" "$REQ_STATUS" 404
req POST /api/v1/git/repos '{"name":"app"}'
check_eq "the name can be used again" "$(json_get "$REQ_BODY" .generation)" 0
check_eq "and starts empty" "$(git ls-remote "$(url app)" 2>&1)" ""

# ---- a configured push cap ----
stop_server
cat >"$W/stockade.yaml" <<YAML
dataDir: $W/capped
jwtSecret: 0123456789abcdef0123456789abcdef
rr:
  gitServer: {enabled: true, maxPushBytes: 1M}
  blobStorage: {filesystem: {path: $W/capped/blobs}}
YAML
start_server --config "$W/stockade.yaml" --role git-server
req POST /api/v1/git/repos '{"name":"small"}'
out=$(git -C "$W/c1" push "$(url small)" main 2>&1); rc=$?
check_eq "a push over rr.gitServer.maxPushBytes fails" "$rc" 1
check_contains "... with HTTP 413" "$out" "413"
req GET /api/v1/git/repos/small
check_eq "... and stores nothing" "$(json_get "$REQ_BODY" .generation)" 0
mkdir "$W/tiny" && (cd "$W/tiny" && git init -q && echo t >t && git add t && git commit -qm tiny) >/dev/null
check "a push under the cap works" git -C "$W/tiny" push -q "$(url small)" main
done_testing
