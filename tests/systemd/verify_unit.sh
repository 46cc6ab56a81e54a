#!/usr/bin/env bash
# Checks systemd/channeld.service with `systemd-analyze verify`, pointing its ExecStart at the
# freshly built binary (verify insists the executables exist).
#   verify_unit.sh SOURCE_DIR CHANNELD_BINARY
set -euo pipefail
src=$1
bin=$2
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not installed"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s|/usr/bin/channeld|$bin|g" "$src/systemd/channeld.service" > "$dir/channeld.service"
out=$(systemd-analyze verify "$dir/channeld.service" 2>&1) || { echo "$out"; exit 1; }
# verify exits 0 on some warnings; any line about our unit is a finding.
if grep -q "channeld.service" <<<"$out"; then echo "$out"; exit 1; fi
grep -q '^Type=notify' "$dir/channeld.service"
# The package installs the binary as /usr/bin/channeld; the unit must start that one.
grep -q '^ExecStart=/usr/bin/channeld ' "$src/systemd/channeld.service"
# Hardening must not regress: exposure 1.4 or better (systemd-analyze counts in tenths).
systemd-analyze security --offline=yes --threshold=14 "$src/systemd/channeld.service" >/dev/null || {
  systemd-analyze security --offline=yes "$src/systemd/channeld.service" | tail -1
  echo "channeld.service: exposure above 1.4"; exit 1; }
grep -q '^WatchdogSec=' "$dir/channeld.service"
echo "systemd/channeld.service verifies"
