#!/usr/bin/env bash
# Builds the Debian package and proves it installs on a clean Debian 12: `cpack -G DEB` in a
# release build (no tests, no fault hooks), then `apt-get install ./channeld_*.deb` in a fresh
# debootstrap minbase chroot (apt pulls the runtime libraries from Debian's mirror), then
# `channeld --version` and `channeld check-config` with the packaged config, run from it.
# Recommends (postgresql) are left out, so the Depends alone must be enough to run.
# Needs root (chroot, mounts). Not part of scripts/test.sh: it takes minutes and the network.
#   scripts/deb-check.sh            build, install, check; exit 0 when all passed
# Uses /tmp/fresh-base as the clean system when it exists (copied, never modified); otherwise
# debootstraps one into /tmp/channeld-deb-base and keeps it for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(scripts/build-deb.sh | tail -1)
echo "deb-check: built $deb"

fail() { echo "deb-check: FAILED: $*"; exit 1; }
contents=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/channeld ./lib/systemd/system/channeld.service ./etc/channeld/channeld.toml \
            ./etc/channeld/templates/layout.html.mustache ./usr/share/doc/channeld/README.md \
            ./usr/share/doc/channeld/operations.md; do
  grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
dpkg-deb --info "$deb" conffiles | grep -qx /etc/channeld/channeld.toml ||
  fail "/etc/channeld/channeld.toml is not a conffile"
depends=$(dpkg-deb --field "$deb" Depends)
for lib in libcurl libpq libsoci-core libsoci-postgresql libsystemd tzdata; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib: $depends"
done
echo "deb-check: Depends: $depends"

base=/tmp/fresh-base
if [ ! -x $base/bin/bash ]; then
  base=/tmp/channeld-deb-base
  if [ ! -x $base/bin/bash ]; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
    command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
    echo "deb-check: debootstrapping a clean Debian 12 into $base"
    debootstrap --variant=minbase bookworm $base.tmp "${mirror:-http://deb.debian.org/debian}" \
      >/tmp/channeld-debootstrap.log 2>&1 || fail "debootstrap (log /tmp/channeld-debootstrap.log)"
    mv $base.tmp $base
  fi
fi
root=$(mktemp -d /tmp/channeld-deb-root.XXXXXX)
cleanup() {
  for m in dev/pts dev sys proc; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
cp -a $base/. "$root"/
for m in proc sys dev dev/pts; do mount --bind /$m "$root/$m"; done
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }

in_root apt-get update -qq >/tmp/channeld-deb-apt.log 2>&1 || fail "apt-get update (log /tmp/channeld-deb-apt.log)"
DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$deb")" \
  >>/tmp/channeld-deb-apt.log 2>&1 || fail "apt-get install (log /tmp/channeld-deb-apt.log)"
echo "deb-check: installed into a clean Debian 12 chroot"

version=$(in_root channeld --version) || fail "channeld --version"
echo "deb-check: channeld --version: $version"
unit_bin=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$root/lib/systemd/system/channeld.service")
[ -x "$root$unit_bin" ] || fail "the unit's ExecStart ($unit_bin) is not installed"
# systemd's StateDirectory= creates these at first start; the chroot has no systemd.
mkdir -p "$root"/var/lib/channeld/{campaigns,partners,claims}
out=$(in_root channeld check-config 2>&1) || fail "channeld check-config: $out"
echo "deb-check: channeld check-config: $out"
# SOCI loads its PostgreSQL backend at run time: with no server in the chroot, `migrate` must
# fail to connect, not fail to find the backend.
out=$(in_root channeld migrate 2>&1) && fail "channeld migrate succeeded without a database"
grep -qi "cannot connect to PostgreSQL" <<<"$out" || fail "channeld migrate: $out"
echo "deb-check: channeld migrate without a server: $out"
in_root dpkg-query -W -f='${Conffiles}\n' channeld | grep -q /etc/channeld/channeld.toml ||
  fail "dpkg does not track /etc/channeld/channeld.toml as a conffile"
echo "deb-check: passed"
