#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan in build-fuzz/, then runs
# each for SECONDS (default 60) from its seed corpus in tests/fuzz/<target>/, growing a working
# corpus in build-fuzz/corpus/<target>/. Every target runs even when an earlier one fails; the
# script exits non-zero if any target crashed, leaked, timed out or ran out of memory, and
# leaves each such input in build-fuzz/ as <target>-crash-<sha1> (or -leak-, -timeout-, -oom-).
# CI (.ci/run) runs it for a short time; docs/fuzzing.md records the long runs.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(kit_loader partner_file contacts_csv suppressions_csv
                                     template_render header_encoding)

scripts/bootstrap.sh
# Clones of the same commit share compiled objects through ccache, as in scripts/test.sh.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1

# The clang bootstrap.sh installs, with its libFuzzer and sanitizer runtimes (libclang-rt-14-dev).
cc=${CHANNELD_FUZZ_CC:-clang-14}
cxx=${CHANNELD_FUZZ_CXX:-clang++-14}
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCHANNELD_FUZZ=ON -DCHANNELD_TESTS=OFF -DCHANNELD_BENCH=OFF \
  >/dev/null
cmake --build build-fuzz -j"${FUZZ_JOBS:-2}" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
failed=()
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "== $t: ${seconds}s"
  # 0 seconds: run every seed and regression input once, no mutation (what CI does).
  if [ "$seconds" = 0 ]; then budget=(-runs=0); else budget=(-max_total_time="$seconds"); fi
  if ! (cd build-fuzz && "./tests/fuzz/fuzz_$t" "${budget[@]}" -max_len=65536 \
          -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$t-" \
          "corpus/$t" "../tests/fuzz/$t"); then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs: build-fuzz/<target>-crash-*, -leak-, -timeout-, -oom-)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a finding"
