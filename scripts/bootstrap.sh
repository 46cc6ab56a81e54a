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
  clang-14 libclang-rt-14-dev  # the libFuzzer targets (scripts/fuzz.sh): libFuzzer, ASan, UBSan
  postgresql postgresql-contrib
  postfix python3 python3-aiosmtpd procps
  openssl  # test certificates for the SMTP client's STARTTLS and smtps:// tests
  chromium  # the MDF report page is checked in a real headless browser (tests)
  spamassassin  # the sample kits must score 0 on its local rules (tests: scripts/spam-check.sh)
)

# The Standard Webhooks reference verifier (npm), which the webhook tests use beside Python's
# hmac when node is present. Local to tests/support/webhook_verify, pinned by its lockfile.
install_webhook_verifier() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/support/webhook_verify"
  if command -v npm >/dev/null 2>&1 && [ ! -d "$dir/node_modules/standardwebhooks" ]; then
    echo "bootstrap: npm ci in $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --silent || echo "bootstrap: npm ci failed; the webhook tests will use Python's hmac only"
  fi
}
trap install_webhook_verifier EXIT

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
