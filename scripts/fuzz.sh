#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan in build-fuzz/, then runs
# each for SECONDS (default 60) from its seed corpus in tests/fuzz/<target>/, growing a working
# corpus in build-fuzz/corpus/<target>/. Exits non-zero on the first target that crashes; the
# crashing input is left in build-fuzz/ as crash-<sha1>.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(kit_loader partner_file contacts_csv suppressions_csv
                                     template_render header_encoding)
cc=$(command -v clang-15 || command -v clang-14 || command -v clang)
cxx=$(command -v clang++-15 || command -v clang++-14 || command -v clang++)
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCHANNELD_FUZZ=ON -DCHANNELD_TESTS=OFF -DCHANNELD_BENCH=OFF \
  >/dev/null
cmake --build build-fuzz -j"${FUZZ_JOBS:-2}" --target "${targets[@]/#/fuzz_}"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "== $t: ${seconds}s"
  (cd build-fuzz && "./tests/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len=65536 \
     -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "corpus/$t" "../tests/fuzz/$t")
done
