#!/usr/bin/env bash
# The quick start: installs what is missing, builds channeld, starts a private PostgreSQL
# cluster, runs the daemon on the bundled sample kits and partners until nothing more is due,
# and leaves the co-branded emails in out/outbox/<partner>/ (open the .html in a browser, or the
# .eml in a mail client).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

build=${CHANNELD_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target channeld

mkdir -p .run
conninfo=$(scripts/pg-cluster.sh start "$PWD/.run/pg" "$(scripts/free-port.sh 55480)")
port=${conninfo#*port=}
port=${port%% *}
# A fresh database and outbox each run, so the summary shows what this run sent.
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
"$bin/dropdb" -h 127.0.0.1 -p "$port" -U channeld --if-exists channeld
"$bin/createdb" -h 127.0.0.1 -p "$port" -U channeld channeld
rm -rf out/outbox
sed "s/port=55480/port=$port/" samples/channeld.toml > samples/.quickstart.toml

"$build/daemon/channeld" check-config --config samples/.quickstart.toml
"$build/daemon/channeld" --config samples/.quickstart.toml --until-idle
echo
echo "Open out/outbox/<partner>/*.html in a browser to see each partner's co-branded email."
echo "The database keeps running for 'channeld kits --config samples/.quickstart.toml';"
echo "stop it with: scripts/pg-cluster.sh stop $PWD/.run/pg"
