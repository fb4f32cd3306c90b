#!/usr/bin/env bash
# tests/fuzz/run.sh [TARGET...] - build every libFuzzer target (tests/fuzz/fuzz-*.c) with clang
# and -fsanitize=fuzzer,address,undefined, then run each for FUZZ_SECONDS (default 60) starting
# from its seed corpus in tests/fuzz/corpus/<target>/. `make fuzz` calls this.
#
# The library is compiled with clang into build-fuzz/ (same warning flags as the normal build,
# coverage instrumentation via -fsanitize=fuzzer-no-link). Inputs libFuzzer finds go to
# build-fuzz/corpus/<target>/ (the seed corpus in the tree is never written); a crash is saved
# as build-fuzz/crashes/<target>/crash-<sha1> and the run goes on to the next target. To keep a
# reproducer, copy it into tests/fuzz/corpus/<target>/: the normal test run replays every corpus
# file under the gcc ASan build (tests/e2e/fuzz-replay.sh).
#
# Environment: FUZZ_SECONDS (per target), FUZZ_JOBS (make -j for the library, default 2),
# FUZZ_ARGS (extra libFuzzer flags), FUZZ_BUILD_ONLY=1 (build, do not run).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
OUT=build-fuzz
SECONDS_PER=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-2}
CC=${FUZZ_CC:-clang}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
PKGS=$(sed -n '/^PKGS :=/,/[^\\]$/p' Makefile | sed 's/^PKGS :=//; s/\\//g' | tr -s ' \n' ' ')

command -v "$CC" >/dev/null || { echo "fuzz: $CC not found (apt-get install clang)" >&2; exit 1; }

# The library, through the Makefile's own rules with the output directory and flags overridden.
echo "fuzz: building the library with $CC into $OUT/"
# clang flags the libseccomp SCMP_A* macros (designated initialisers leaving a field out):
# -Wmissing-field-initializers is the one warning of the list turned off here.
make --no-print-directory -j"$JOBS" CC="$CC" OUT="$OUT" \
  EXTRA_CFLAGS="-Wno-missing-field-initializers ${FUZZ_EXTRA_CFLAGS:-}" \
  OPT="-O1 -gline-tables-only $SAN -fsanitize=fuzzer-no-link" \
  "$OUT/libstockade.a" || { echo "fuzz: library build failed" >&2; exit 1; }

# shellcheck disable=SC2086
CFLAGS="-std=gnu17 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-string-concatenation -D_GNU_SOURCE -g -O1 $SAN -Isrc $(pkg-config --cflags $PKGS)"
# shellcheck disable=SC2086
LIBS="$(pkg-config --libs $PKGS) -lpthread -lm -ldl"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz-*.c; do t=$(basename "$f" .c); targets+=("${t#fuzz-}"); done
fi

mkdir -p "$OUT/fuzz"
for t in "${targets[@]}"; do
  echo "  FUZZ-LD $OUT/fuzz/fuzz-$t"
  # shellcheck disable=SC2086
  $CC $CFLAGS -fsanitize=fuzzer -o "$OUT/fuzz/fuzz-$t" "tests/fuzz/fuzz-$t.c" \
    "$OUT/libstockade.a" $LIBS || { echo "fuzz: build of fuzz-$t failed" >&2; exit 1; }
done
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0

failed=()
for t in "${targets[@]}"; do
  work="$OUT/corpus/$t" crashes="$OUT/crashes/$t"
  mkdir -p "$work" "$crashes" "tests/fuzz/corpus/$t"
  echo "fuzz: $t for ${SECONDS_PER}s"
  # Seeds first (read-only), then the working corpus, which receives new inputs.
  # shellcheck disable=SC2086
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$OUT/fuzz/fuzz-$t" -max_total_time="$SECONDS_PER" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$crashes/" ${FUZZ_ARGS:-} \
    "$work" "tests/fuzz/corpus/$t" >"$OUT/fuzz/$t.log" 2>&1
  rc=$?
  grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' \
    "$OUT/fuzz/$t.log" | sed 's/^/  /'
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); log $OUT/fuzz/$t.log, reproducer in $crashes/:"
    grep -E 'ERROR: |runtime error|SUMMARY|Test unit written' "$OUT/fuzz/$t.log" | head -8 | sed 's/^/  /'
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${SECONDS_PER}s without a finding"
