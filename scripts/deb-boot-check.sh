#!/usr/bin/env bash
# Proves the real package runs as a service: builds the .deb as scripts/deb-check.sh does, boots
# a clean Debian 12 with systemd as PID 1 (systemd-nspawn -b) and PostgreSQL installed, and at
# boot does what docs/operations.md tells an administrator to do: create the role and database,
# put the password in /etc/channeld/pgpass, `apt install ./channeld_*.deb`, then
# `systemctl enable --now channeld` with the packaged /etc/channeld/channeld.toml unedited.
# Passes when the service is active and the packaged http.listen answers /readyz with 200 (the
# daemon connected through the credential, migrated and is ready).
# Needs root, systemd-container and the network (apt, before the boot). Takes minutes.
#   scripts/deb-boot-check.sh       exit 0 when all passed
# Uses /tmp/fresh-base (a debootstrap minbase, as deb-check.sh) when it exists, copied, never
# modified.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(scripts/build-deb.sh | tail -1)
echo "deb-boot-check: built $deb"

fail() { echo "deb-boot-check: FAILED: $*"; exit 1; }
command -v systemd-nspawn >/dev/null || apt-get install -y -q systemd-container >/dev/null
base=/tmp/fresh-base
[ -x $base/bin/bash ] || base=/tmp/channeld-deb-base
[ -x $base/bin/bash ] || fail "no clean Debian 12 base: run scripts/deb-check.sh once to make one"
root=$(mktemp -d /tmp/channeld-deb-boot.XXXXXX)
cleanup() {
  for m in dev/pts dev sys proc; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
cp -a $base/. "$root"/
cp /etc/resolv.conf "$root/etc/resolv.conf"
# debootstrap's minbase has no /etc/hosts; every installed Debian has one, and the packaged
# database.url names localhost.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
cp "$deb" "$root/root/"
debname=$(basename "$deb")
for m in proc sys dev dev/pts; do mount --bind /$m "$root/$m"; done
# Nothing is started in the chroot (PostgreSQL would listen on the host's 5432): systemd starts
# it at boot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
log=/tmp/channeld-deb-boot-apt.log
# The package's own dependencies are only downloaded here: `apt install` at boot installs them
# from apt's cache, so the container can run on a private network (its own loopback: no clash
# with a PostgreSQL or port 8025 on this host).
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DEBIAN_FRONTEND=noninteractive \
  sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends systemd systemd-sysv dbus postgresql curl &&
         apt-get install -y -q --no-install-recommends --download-only /root/$debname" >$log 2>&1 ||
  fail "apt-get in the chroot (log $log)"
rm "$root/usr/sbin/policy-rc.d"
for m in dev/pts dev sys proc; do umount -l "$root/$m"; done

cat > "$root/root/deb-boot-check" <<EOF
#!/bin/sh
# Runs at boot, as an administrator would (docs/operations.md, "Install" and "Database").
set -u
step() { echo "step: \$*"; }
systemctl start postgresql
i=0; until pg_isready -q -h localhost; do i=\$((i+1)); [ \$i -ge 60 ] && break; sleep 1; done
step "pg_isready: \$(pg_isready -h localhost)"
runuser -u postgres -- psql -q -c "CREATE ROLE channeld LOGIN PASSWORD 'boot-check-pw'" &&
  runuser -u postgres -- createdb -O channeld channeld && step "database created"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /root/$debname &&
  step "apt install ok"
install -m 0600 /dev/null /etc/channeld/pgpass
echo 'localhost:5432:channeld:channeld:boot-check-pw' > /etc/channeld/pgpass
systemctl enable --now channeld && step "enable --now ok"
i=0; until [ "\$(systemctl is-active channeld)" = active ]; do
  i=\$((i+1)); [ \$i -ge 60 ] && break; sleep 1; done
step "is-active: \$(systemctl is-active channeld)"
listen=\$(sed -n 's/^listen *= *"\\(.*\\)"/\\1/p' /etc/channeld/channeld.toml | head -n 1)
step "http.listen: \$listen"
i=0; code=000
until [ "\$code" = 200 ] || [ \$i -ge 60 ]; do
  code=\$(curl -s -o /tmp/readyz -w '%{http_code}' "http://\$listen/readyz"); i=\$((i+1))
  [ "\$code" = 200 ] || sleep 1
done
step "readyz: \$code \$(cat /tmp/readyz 2>/dev/null)"
step "version: \$(channeld --version)"
step "config unchanged: \$(cmp -s /etc/channeld/channeld.toml /usr/share/doc/channeld/channeld.example.toml && echo yes || echo no)"
systemctl status --no-pager channeld
journalctl -u channeld --no-pager -n 30
EOF
chmod 0755 "$root/root/deb-boot-check"
cat > "$root/etc/systemd/system/deb-boot-check.service" <<'EOF'
[Unit]
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/root/deb-boot-check
StandardOutput=file:/result
TimeoutStartSec=300
ExecStopPost=/bin/systemctl poweroff
[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/deb-boot-check.service \
  "$root/etc/systemd/system/multi-user.target.wants/deb-boot-check.service"
echo "deb-boot-check: booting the container"
(cd /tmp && timeout 420 systemd-nspawn -D "$root" --register=no --keep-unit --private-network -q -b \
  >/tmp/channeld-deb-boot-console.log 2>&1) || true

result=$(cat "$root/result" 2>/dev/null || echo "no result: the container did not run the check")
echo "$result" > /tmp/channeld-deb-boot-result.log
failed() { echo "$result"; fail "$*"; }
grep -q '^step: database created$' <<<"$result" || failed "creating the role and database"
grep -q '^step: apt install ok$' <<<"$result" || failed "apt install ./$debname"
grep -q '^step: enable --now ok$' <<<"$result" || failed "systemctl enable --now channeld"
grep -q '^step: is-active: active$' <<<"$result" || failed "channeld.service is not active"
grep -q '^step: readyz: 200 ' <<<"$result" || failed "/readyz did not answer 200"
grep -q '^step: config unchanged: yes$' <<<"$result" || failed "the packaged config was changed"
grep '^step: \(version\|readyz\|is-active\|http.listen\):' <<<"$result" | sed 's/^step: /deb-boot-check: /'
echo "deb-boot-check: passed (result kept in /tmp/channeld-deb-boot-result.log)"
