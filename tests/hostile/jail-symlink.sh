#!/usr/bin/env bash
# Hostile suite, part 4: symlinks planted where the jail mounts (CVE-2025-31133, -52565,
# -52881 class). A writable host dir W is bound at /w; inside it the attacker (who controls W's
# content between runs) plants symlinks pointing at a host victim dir V. Then mounts are
# requested at destinations that pass through those symlinks. The jail may refuse
# (setup_error) or mount inside its own tree; what must never happen is a directory created in
# V on the host, a mount landing on V, or a mount left on the host.
. "$(dirname "$0")/../lib.sh"
. "$STOCKADE_ROOT/tests/tools/hostile.bash"
hostile_require_jail

W=$H_TMP/w V=$H_TMP/victim S=$H_TMP/src
mkdir -p "$W" "$V" "$S" && echo data >"$S/file" && chmod -R a+rwX "$W" "$V" "$S"
ln -s "$V" "$W/abs"
ln -s "../../../../../../../../..$V" "$W/rel"
ln -s /usr "$W/usr"

victim_clean() { [ -z "$(ls -A "$V")" ]; }

symlink_case() { # name jail-options... (the command is fixed)
  local name=$1; shift
  jrun --bind "$W" /w "$@" -- /hostile/mounts mountinfo "$V" "$V/x" "$V/y" /usr/x
  local why=
  case "$J_STATUS" in
    setup_error) ;;
    ok) case "$J_OUT" in *ESCAPED*) why="a mount landed on the symlink's target" ;; esac ;;
    *) why="unexpected status $J_STATUS" ;;
  esac
  victim_clean || why="$why; host victim dir gained: $(ls -A "$V" | tr '\n' ' ')"
  h_host_dirty >/dev/null && why="$why; host dirty"
  if [ -z "$why" ]; then ok "$name ($J_STATUS)"; else not_ok "$name" "$why"; _h_diag; fi
  rm -rf "${V:?}"/* 2>/dev/null
}

symlink_case "symlink: --tmpfs under an absolute symlink to a host dir" --tmpfs /w/abs/x
symlink_case "symlink: --tmpfs under a relative ../ symlink to a host dir" --tmpfs /w/rel/x
symlink_case "symlink: --ro-bind destination under an absolute symlink" --ro-bind "$S" /w/abs/y
symlink_case "symlink: --bind (rw) destination under a relative symlink" --bind "$S" /w/rel/y
symlink_case "symlink: --tmpfs destination that is itself a symlink" --tmpfs /w/abs
symlink_case "symlink: --tmpfs through a symlink to /usr does not cover the jail's /usr" --tmpfs /w/usr/x

# The real target of such an attack: a symlink to the host's /etc. A mount point created
# through it would appear as /etc/<name> on the host.
ln -s /etc "$W/etc"
etc_name=stockade-hostile-$H_HOST_TAG
jrun --bind "$W" /w --tmpfs "/w/etc/$etc_name" -- /hostile/mounts mountinfo "/etc/$etc_name"
if [ -e "/etc/$etc_name" ]; then
  not_ok "symlink: --tmpfs under a symlink to the host's /etc creates nothing in /etc" "/etc/$etc_name appeared"
  rmdir "/etc/$etc_name" 2>/dev/null
elif [ "$J_STATUS" = setup_error ] || { [ "$J_STATUS" = ok ] && [[ "$J_OUT" != *ESCAPED* ]]; }; then
  ok "symlink: --tmpfs under a symlink to the host's /etc creates nothing in /etc ($J_STATUS)"
else
  not_ok "symlink: --tmpfs under a symlink to the host's /etc creates nothing in /etc"; _h_diag
fi

# Racing renames: while jails start, a host loop keeps swapping /w/race between a real
# directory and a symlink to V (rename(2) is atomic, so every lookup sees one or the other).
mkdir -p "$W/race.dir" && ln -s "$V" "$W/race.lnk"
(
  while :; do
    mv -Tf "$W/race.dir" "$W/race" 2>/dev/null; mkdir -p "$W/race.dir"
    ln -sfn "$V" "$W/race.lnk"; mv -Tf "$W/race.lnk" "$W/race" 2>/dev/null
  done
) &
racer=$!
H_PIDS+=("$racer")
statuses=
for _ in $(seq 15); do
  jrun --bind "$W" /w --tmpfs /w/race/t --ro-bind "$S" /w/race/u -- /hostile/mounts mountinfo "$V/t" "$V/u"
  statuses+="$J_STATUS "
  case "$J_OUT" in *ESCAPED*) break ;; esac
done
kill "$racer" 2>/dev/null; wait "$racer" 2>/dev/null
if victim_clean && [[ "$J_OUT" != *ESCAPED* ]] && [[ "$statuses" != *none* ]]; then
  ok "symlink: 15 jails racing a dir/symlink rename never mount into the host dir"
else
  not_ok "symlink: 15 jails racing a dir/symlink rename never mount into the host dir" \
    "statuses: $statuses" "victim: $(ls -A "$V" | tr '\n' ' ')"
  _h_diag
fi
echo "# race statuses: $statuses"

hostile_end
done_testing
