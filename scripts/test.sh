#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is missing, builds with
# warnings as errors, starts a private PostgreSQL cluster, and runs every unit and integration
# test (integration tests also start their own SMTP and HTTP peers on 127.0.0.1).
#   scripts/test.sh                 everything
#   scripts/test.sh -L unit         only the fast tests that need no server (ctest arguments)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

# Clones of the same commit (CI's fresh clone, worktrees) share compiled objects through ccache.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1

build=${CHANNELD_BUILD_DIR:-build}
cmake -S . -B "$build" -DCHANNELD_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2

pgdir=$(mktemp -d /tmp/channeld-test-pg.XXXXXX)
cleanup() { scripts/pg-cluster.sh stop "$pgdir"; rm -rf "$pgdir"; }
trap cleanup EXIT
port=$(scripts/free-port.sh 55433)
CHANNELD_TEST_PG=$(scripts/pg-cluster.sh start "$pgdir" "$port")
export CHANNELD_TEST_PG
# A missing server is a failure here, never a silent skip.
export CHANNELD_REQUIRE_SERVERS=1
ctest --test-dir "$build" --output-on-failure -j2 "$@"
