#!/usr/bin/env bash
# Boots a clean Debian 12 with systemd as PID 1 (systemd-nspawn -b) and starts
# systemd/channeld.service there with `systemctl enable --now`, with a stand-in for the binary
# that records what the unit hands the service: proves the unit's sandbox (DynamicUser=,
# PrivateUsers=, the system-call filter, ...) starts under a real systemd 252, and that the
# database password reaches the dynamic user through LoadCredential= and PGPASSFILE, or the
# comment-only fallback when /etc/channeld/pgpass is missing; and that the SMTP password reaches
# it through the drop-in docs/operations.md gives. The real binary is covered by
# scripts/deb-check.sh (package contents, install, --version, check-config).
# Needs root, systemd-container and the network (apt inside the container).
#   scripts/unit-boot-check.sh      exit 0 when the unit started both ways
# Uses /tmp/fresh-base (a debootstrap minbase, as deb-check.sh) when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-nspawn >/dev/null || apt-get install -y -q systemd-container >/dev/null
base=/tmp/fresh-base
[ -x $base/bin/bash ] || base=/tmp/channeld-deb-base
[ -x $base/bin/bash ] || debootstrap --variant=minbase bookworm $base http://deb.debian.org/debian
root=$(mktemp -d /tmp/channeld-boot.XXXXXX)
cleanup() { umount "$root/proc" 2>/dev/null || true; rm -rf "$root"; }
trap cleanup EXIT
cp -a $base/. "$root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount --bind /proc "$root/proc"
chroot "$root" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
  apt-get install -y -q --no-install-recommends systemd systemd-sysv dbus >/dev/null' 2>/dev/null
umount "$root/proc"

install -m 0644 systemd/channeld.service "$root/etc/systemd/system/channeld.service"
mkdir -p "$root/etc/channeld" "$root/etc/systemd/system/channeld.service.d"
cat > "$root/usr/bin/channeld" <<'EOF'
#!/bin/sh
[ "$1" = check-config ] && exit 0
{ echo "uid=$(id -u)"; echo "PGPASSFILE=$PGPASSFILE"; cat "$PGPASSFILE"; echo
  echo "smtp-password=$(cat "$CREDENTIALS_DIRECTORY/smtp-password")"; } > /var/lib/channeld/seen 2>&1
exec sleep infinity
EOF
chmod 0755 "$root/usr/bin/channeld"
# The stand-in neither sends READY=1 nor pings the watchdog.
printf '[Service]\nType=exec\nWatchdogSec=0\n' > "$root/etc/systemd/system/channeld.service.d/stand-in.conf"
# The drop-in docs/operations.md (Secrets) tells operators to add for smtp.password_file.
printf '[Service]\nLoadCredential=smtp-password:/etc/channeld/smtp-password\n' \
  > "$root/etc/systemd/system/channeld.service.d/smtp-password.conf"
install -m 0600 /dev/null "$root/etc/channeld/pgpass"
echo 'localhost:5432:channeld:channeld:pw-from-credential' > "$root/etc/channeld/pgpass"
install -m 0600 /dev/null "$root/etc/channeld/smtp-password"
echo 'smtp-pw-from-credential' > "$root/etc/channeld/smtp-password"
cat > "$root/etc/systemd/system/unit-check.service" <<'EOF'
[Unit]
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'systemctl enable --now channeld; sleep 2; systemctl is-active channeld; cat /var/lib/channeld/seen; rm /etc/channeld/pgpass; systemctl restart channeld; sleep 2; systemctl is-active channeld; cat /var/lib/channeld/seen; systemctl status --no-pager channeld'
StandardOutput=file:/result
ExecStopPost=/bin/systemctl poweroff
[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/unit-check.service \
  "$root/etc/systemd/system/multi-user.target.wants/unit-check.service"
(cd /tmp && timeout 120 systemd-nspawn -D "$root" --register=no --keep-unit -q -b >/dev/null 2>&1) || true

result=$(cat "$root/result" 2>/dev/null || echo "no result: the container did not run the check")
fail() { echo "$result"; echo "unit-boot-check: FAILED: $*"; exit 1; }
[ "$(grep -c '^active$' <<<"$result")" = 2 ] || fail "channeld.service did not start both times"
grep -q '^PGPASSFILE=/run/credentials/channeld.service/pgpass$' <<<"$result" ||
  fail "PGPASSFILE does not name the credential"
grep -q '^localhost:5432:channeld:channeld:pw-from-credential$' <<<"$result" ||
  fail "the dynamic user could not read /etc/channeld/pgpass through the credential"
grep -q '^# no password file$' <<<"$result" || fail "no fallback credential without the file"
[ "$(grep -c '^smtp-password=smtp-pw-from-credential$' <<<"$result")" = 2 ] ||
  fail "the dynamic user could not read /etc/channeld/smtp-password through the credential"
grep -q '^uid=[1-9][0-9]*$' <<<"$result" || fail "no uid recorded"
! grep -q '^uid=0$' <<<"$result" || fail "the service ran as root"
echo "unit-boot-check: channeld.service starts under systemd 252 with its credential and without"
