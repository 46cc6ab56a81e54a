#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is missing, builds with
# warnings as errors, starts a private PostgreSQL cluster, and runs every unit and integration
# test (integration tests also start their own SMTP and HTTP peers on 127.0.0.1).
#   scripts/test.sh                 everything
#   scripts/test.sh -L unit         only the fast tests that need no server (ctest arguments)
#   scripts/test.sh --sanitize ...  the same under AddressSanitizer + UBSan (build dir build-asan)
#   scripts/test.sh --tsan ...      the same under ThreadSanitizer (build dir build-tsan)
#   scripts/test.sh --tsan --concurrency
#                                   under TSan, only the tests of threads, connections and the
#                                   watchdog (what CI runs): test suites named in $concurrency
# The test builds include the fault hooks (CHANNELD_FAULT_HOOKS) the watchdog tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=plain
case "${1:-}" in
  --sanitize) mode=asan; shift ;;
  --tsan) mode=tsan; shift ;;
esac

scripts/bootstrap.sh

# Clones of the same commit (CI's fresh clone, worktrees) share compiled objects through ccache.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1

options=(-DCHANNELD_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHANNELD_FAULT_HOOKS=ON)
targets=()
# Sanitizer builds compile at -O1 with line tables only, cheaper than -O2 -g (not measured here); the
# sanitizers still see every access, and their reports keep file:line.
sanitizer_flags=(-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG")
case $mode in
  plain) build=${CHANNELD_BUILD_DIR:-build} ;;
  asan)
    build=${CHANNELD_BUILD_DIR:-build-asan}
    options+=(-DCHANNELD_SANITIZE=ON -DCHANNELD_BENCH=OFF "${sanitizer_flags[@]}")
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ;;
  tsan)
    build=${CHANNELD_BUILD_DIR:-build-tsan}
    options+=(-DCHANNELD_TSAN=ON -DCHANNELD_BENCH=OFF "${sanitizer_flags[@]}")
    export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp"
    if [ "${1:-}" = --concurrency ]; then
      shift
      # Test suites that exercise threads, connections and the watchdog; add a suite here
      # (and its binary below) when it does too.
      concurrency='^(ApiTest|HttpServer|HttpServerUnderLoad|PublicServer[A-Za-z]*|EngagementApi|HitJournalTest|Watchdog|Readiness)\.'
      # Tests whose bound in wall-clock time would measure TSan, not the server, skip themselves
      # under it (the 500-connection one-second bound in api_test.cpp).
      set -- -R "$concurrency" "$@"
      targets=(--target channeld api_integration_test ops_integration_test public_server_integration_test
               engagement_integration_test hit_journal_integration_test)
    fi
    ;;
esac
cmake -S . -B "$build" "${options[@]}" >/dev/null
cmake --build "$build" -j2 "${targets[@]}"

pgdir=$(mktemp -d /tmp/channeld-test-pg.XXXXXX)
cleanup() { scripts/pg-cluster.sh stop "$pgdir"; rm -rf "$pgdir"; }
trap cleanup EXIT
port=$(scripts/free-port.sh "${CHANNELD_TEST_PORT_BASE:-55433}")
CHANNELD_TEST_PG=$(scripts/pg-cluster.sh start "$pgdir" "$port")
export CHANNELD_TEST_PG
# A missing server is a failure here, never a silent skip.
export CHANNELD_REQUIRE_SERVERS=1
ctest --test-dir "$build" --output-on-failure -j2 "$@"
