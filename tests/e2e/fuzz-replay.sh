#!/usr/bin/env bash
# fuzz-replay.sh - every fuzz target's seed corpus and saved crash reproducers
# (tests/fuzz/corpus/<target>/) run once through the target, built with gcc against the library
# of the build under test (build-asan in `make test`: ASan + UBSan catch what libFuzzer would).
# One TAP line per target. No libFuzzer needed: tests/fuzz/replay-main.c provides main().
. "$(dirname "$0")/../lib.sh"
ROOT=$STOCKADE_ROOT
BUILD_DIR=${STOCKADE_BUILD_DIR:-$ROOT/build}
LIB=$BUILD_DIR/libstockade.a
PKGS=$(sed -n '/^PKGS :=/,/[^\\]$/p' "$ROOT/Makefile" | sed 's/^PKGS :=//; s/\\//g' | tr -s ' \n' ' ')
# shellcheck disable=SC2086
PKG_CFLAGS=$(pkg-config --cflags $PKGS 2>/dev/null)
# shellcheck disable=SC2086
PKG_LIBS="$(pkg-config --libs $PKGS 2>/dev/null) -lpthread -lm -ldl"
case "$BUILD_DIR" in
  *asan*) SAN="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" ;;
  *) SAN="-O1" ;;
esac
OUT=$BUILD_DIR/fuzz-replay
mkdir -p "$OUT"

if [ ! -f "$LIB" ]; then
  skip "fuzz corpus replay" "$LIB not built (make build / make asan)"
  done_testing
  exit $?
fi

for src in "$ROOT"/tests/fuzz/fuzz-*.c; do
  t=$(basename "$src" .c); t=${t#fuzz-}
  bin=$OUT/fuzz-$t
  # Rebuild when the target, the driver or the library is newer than the binary.
  if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ] || [ "$LIB" -nt "$bin" ] ||
     [ "$ROOT/tests/fuzz/replay-main.c" -nt "$bin" ]; then
    # shellcheck disable=SC2086
    if ! out=$(${CC:-gcc} -std=gnu17 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
         -g $SAN -I"$ROOT/src" $PKG_CFLAGS -o "$bin" "$src" "$ROOT/tests/fuzz/replay-main.c" \
         "$LIB" $PKG_LIBS 2>&1); then
      not_ok "fuzz-$t builds for replay" "${out:0:1200}"
      continue
    fi
  fi
  corpus=$ROOT/tests/fuzz/corpus/$t
  if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
    skip "fuzz-$t corpus replays cleanly" "no corpus in tests/fuzz/corpus/$t"
    continue
  fi
  n=$(find "$corpus" -maxdepth 1 -type f | wc -l)
  # leaks count here (the e2e default turns them off for servers; a replay is one process)
  if out=$(ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 TMPDIR=${TMPDIR:-/tmp} "$bin" "$corpus" 2>&1); then
    ok "fuzz-$t corpus replays cleanly ($n inputs)"
  else
    not_ok "fuzz-$t corpus replays cleanly ($n inputs)" "${out: -2000}"
  fi
done
done_testing
