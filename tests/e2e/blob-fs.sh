#!/usr/bin/env bash
# blob-fs.sh - `stockade blob` on the filesystem backend, as an operator uses it: put/get/stat/
# ls/rm with metadata, stdin/stdout, exit codes, refused keys, and --config with per-subsystem
# prefixes.
. "$(dirname "$0")/../lib.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
B=("$STOCKADE_BIN" blob --fs "$T/store")

head -c 300000 /dev/urandom >"$T/in"
check "put a file with metadata" "${B[@]}" put 'a/b c/d.bin' "$T/in" --meta owner=alice --meta n=1
check "get it back to a file" "${B[@]}" get 'a/b c/d.bin' "$T/out"
check "bytes identical" cmp "$T/in" "$T/out"
stat_json=$("${B[@]}" stat 'a/b c/d.bin')
check_eq "stat size" "$(json_get "$stat_json" .size)" 300000
check_eq "stat metadata" "$(json_get "$stat_json" .meta.owner)" alice
printf 'from stdin' | "${B[@]}" put piped - >/dev/null
check_eq "stdin to stdout" "$("${B[@]}" get piped)" "from stdin"
check_eq "listing" "$("${B[@]}" ls | cut -f1 | tr '\n' ' ')" "a/b c/d.bin piped "
check_eq "listing by prefix" "$("${B[@]}" ls a/ | cut -f1)" "a/b c/d.bin"

out=$("${B[@]}" get nope 2>&1); rc=$?
check_eq "missing key exits 1" "$rc" 1
check_contains "missing key message" "$out" "cannot get blob 'nope': no such object"
out=$("${B[@]}" put ../escape "$T/in" 2>&1); rc=$?
check_eq "bad key exits 2" "$rc" 2
check_contains "bad key message" "$out" "'.' and '..' segments are not allowed"
out=$("${B[@]}" put k "$T/in" --meta Bad-Name=x 2>&1); rc=$?
check_eq "bad metadata exits 2" "$rc" 2
check_contains "bad metadata message" "$out" "starting with a letter"
out=$("${B[@]}" get 'a/b c/d.bin' --max-size 1k 2>&1); rc=$?
check_eq "over --max-size exits 1" "$rc" 1
check_contains "over --max-size message" "$out" "more than the 1024 allowed"
out=$("$STOCKADE_BIN" blob put k 2>&1); rc=$?
check_eq "no store exits 2" "$rc" 2

check "rm" "${B[@]}" rm 'a/b c/d.bin' piped
check "rm of absent keys succeeds" "${B[@]}" rm 'a/b c/d.bin'
check_eq "store empty again" "$("${B[@]}" ls)" ""
check "no stray files left" test -z "$(find "$T/store" -mindepth 1)"

cat >"$T/stockade.yaml" <<YAML
dataDir: $T/data
jwtSecret: 0123456789abcdef0123456789abcdef
rr:
  blobStorage:
    filesystem:
      path: $T/cfgstore
YAML
printf 'ref' | "$STOCKADE_BIN" blob --config "$T/stockade.yaml" put repo/HEAD - >/dev/null
printf 'snap' | "$STOCKADE_BIN" blob --config "$T/stockade.yaml" --subsystem snapshots put sb/1 - >/dev/null
check "git subsystem under git/" test -f "$T/cfgstore/git/repo/HEAD.blob"
check "snapshots subsystem under snapshots/" test -f "$T/cfgstore/snapshots/sb/1.blob"
check_eq "config store listing" "$("$STOCKADE_BIN" blob --config "$T/stockade.yaml" ls | cut -f1)" "repo/HEAD"
done_testing
