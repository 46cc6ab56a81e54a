#!/usr/bin/env bash
# Builds the Debian package: a release build of `channeld` (no tests, no fault hooks, warnings
# as errors) in $CHANNELD_DEB_BUILD_DIR (default build-deb), then `cpack -G DEB`. Prints the
# path of the .deb on its last line. Shared by scripts/deb-check.sh and scripts/deb-boot-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
build=${CHANNELD_DEB_BUILD_DIR:-build-deb}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
  -DCHANNELD_WERROR=ON -DCHANNELD_TESTS=OFF -DCHANNELD_BENCH=OFF -DCHANNELD_FAULT_HOOKS=OFF >/dev/null
nice cmake --build "$build" -j2 --target channeld >&2
rm -f "$build"/channeld_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
echo "$PWD/$(ls "$build"/channeld_*.deb)"
