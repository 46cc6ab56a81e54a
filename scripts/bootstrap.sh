#!/usr/bin/env bash
# Installs the Debian 12 packages channeld builds, tests and runs with. Idempotent: installs only
# what is missing, so a second run costs a dpkg query.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates ccache
  libboost-dev libcurl4-openssl-dev libssl-dev libcpp-httplib-dev libsoci-dev libpq-dev
  libkainjow-mustache-dev libspdlog-dev libfmt-dev libtoml11-dev nlohmann-json3-dev
  libhowardhinnant-date-dev tzdata libsystemd-dev systemd
  libgtest-dev libgmock-dev
  postgresql postgresql-contrib
  postfix python3 python3-aiosmtpd procps
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "bootstrap: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Postfix is only here for smtp-sink/smtp-source (test and benchmark peers): answer its
# questions up front so the install never prompts.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
