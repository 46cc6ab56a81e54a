#!/usr/bin/env bash
# Scale-out on one PostgreSQL: 1, 2 and 4 daemons share one database (PostgreSQL at its default
# durability) and one relay whose end-of-DATA reply takes DELAY ms (bench/delay_sink.py). Each
# daemon has its own state directory (journal) and smtp.max_connections = PARALLEL. For each
# daemon count it prints the sending rate (messages over the span of sent_at), the messages the
# relay received beyond N (duplicates: there must be none), the most transactions the relay saw
# open at once, and how busy PostgreSQL was (commits per message, WAL per message).
#
#   bench/scale.sh                         DAEMONS="1 2 4", DELAY=50, N=6000, PARALLEL=16
#   DAEMONS="1 2" N=3000 bench/scale.sh
#
# Settings (environment): DAEMONS, DELAY, N, PARTNERS (50), PARALLEL (16), CHANNELD_BUILD_DIR
# (build-bench), CHANNELD_BIN (the channeld binary to measure), KEEP=1 keeps the work folder.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
DAEMONS=${DAEMONS:-1 2 4}
DELAY=${DELAY:-50}
N=${N:-6000}
PARTNERS=${PARTNERS:-50}
PARALLEL=${PARALLEL:-16}
build=${CHANNELD_BUILD_DIR:-build-bench}
die() { echo "scale: $*" >&2; exit 1; }
[ $((N % PARTNERS)) -eq 0 ] || die "N ($N) must be a multiple of PARTNERS"
[ "$DELAY" -gt 0 ] || die "DELAY must be above 0 (the delaying sink counts what it receives)"

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHANNELD_BENCH=ON >/dev/null
cmake --build "$build" -j2 --target channeld >/dev/null
# CHANNELD_BIN measures another build (an A/B against an older commit, say) on the same site.
channeld=${CHANNELD_BIN:-$repo/$build/daemon/channeld}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

work=$(mktemp -d /tmp/channeld-scale.XXXXXX)
chmod 755 "$work"
source "$repo/bench/site.sh"
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  stop_sink
  scripts/pg-cluster.sh stop "$work/pg"
  if [ "${KEEP:-0}" = 1 ]; then echo "scale: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
start_pg

rows=()
for k in $DAEMONS; do
  port=$(scripts/free-port.sh 25400)
  start_sink "$DELAY" "$port"
  make_site "$work/site" $((N / PARTNERS)) "$port"
  # One configuration per daemon: the same site and database, its own journal.
  for ((i = 1; i <= k; i++)); do
    sed "s|^state = \"state\"|state = \"state-$i\"|" "$work/site/channeld.toml" >"$work/site/channeld-$i.toml"
  done
  fresh_db
  # Migrate once, so that the daemons start on an equal footing rather than queueing on the
  # migration lock.
  "$channeld" migrate --config "$work/site/channeld-1.toml" >/dev/null
  lsn0=$(psql_q "SELECT pg_current_wal_lsn()")
  pids=()
  for ((i = 1; i <= k; i++)); do
    "$channeld" --config "$work/site/channeld-$i.toml" --until-idle \
      >"$work/channeld-$k-$i.out" 2>"$work/channeld-$k-$i.log" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || die "a daemon failed, see $work/channeld-$k-*.log (KEEP=1)"; done
  pids=()
  read -r sent span < <(psql_q "SELECT count(*), extract(epoch FROM max(sent_at) - min(sent_at)) + 1
                                FROM outbox WHERE state = 'sent'" | tr '|' ' ')
  [ "$sent" -eq "$N" ] || die "$k daemons sent $sent of $N, see $work/channeld-$k-*.log"
  senders=$(psql_q "SELECT count(DISTINCT sent_by) FROM outbox WHERE state = 'sent'")
  wal=$(psql_q "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') / $N)")
  commits=$(psql_q "SELECT round(xact_commit / $N.0, 3) FROM pg_stat_database WHERE datname = 'channeld'")
  stop_sink
  read -r _ received _ open <"$work/sink-$DELAY.stats"
  rate=$(awk -v n="$N" -v s="$span" 'BEGIN { printf "%.0f", n / s }')
  ideal=$(awk -v k="$k" -v p="$PARALLEL" -v d="$DELAY" 'BEGIN { printf "%.0f", k * p * 1000 / d }')
  row=$(printf '| %d | %d | %6s | %5s | %d | %5s | %5s | %3s | %5s B | %s |' \
    "$k" "$((k * PARALLEL))" "$N" "$rate" "$((received - N))" "$open" "$ideal" "$senders" "$wal" "$commits")
  rows+=("$row")
  echo "scale: $row"
done

echo
echo "PostgreSQL: fsync=$(psql_q 'SHOW fsync'), synchronous_commit=$(psql_q 'SHOW synchronous_commit'), full_page_writes=$(psql_q 'SHOW full_page_writes'); relay delay $DELAY ms; $PARTNERS partners; $(nproc) cores"
echo "| daemons | connections | N | msg/s (sending span) | duplicates | max open at relay | connections x 1000 / delay | daemons that sent | WAL/msg | commits/msg |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
