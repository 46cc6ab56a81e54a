#!/usr/bin/env bash
# Throughput against relays that take a while to answer the end of DATA, with PostgreSQL at its
# default durability (fsync, synchronous_commit, full_page_writes on). For each delay in DELAYS
# (milliseconds), in the same run and against the same sink:
#   channeld        `channeld --until-idle`, N messages of ~10 KB across 50 partners,
#                   smtp.max_connections = PARALLEL
#   smtp-source     Postfix's generator, `smtp-source -s PARALLEL -d`, the same N and size
#   bare libcurl    bench_bare_curl_smtp (at 0 ms only: the single multi handle it drives is
#                   exactly what a slow relay serialises)
# The sink is Postfix's smtp-sink at 0 ms and bench/delay_sink.py otherwise (smtp-sink can delay
# the DATA command, not the end of the data, and only in whole seconds).
#
#   bench/latency.sh                      delays 0 10 50 200, a few minutes
#   DELAYS="50" N_50=2000 bench/latency.sh
#
# Settings (environment): DELAYS ("0 10 50 200"), N_<delay> (messages per delay: 20000, 6000,
# 3000, 1600 by default: about 10-20 s each at the targets), PARTNERS (50), PARALLEL (16),
# CHANNELD_BUILD_DIR (build-bench), CHANNELD_BIN (the channeld binary to measure), KEEP=1 keeps
# the work folder. Needs scripts/bootstrap.sh's
# packages (postfix for smtp-sink and smtp-source, python3).
# At 0 ms, where the two cores are the limit, a second table says what each sender costs the
# whole machine per message (from /proc/stat: every process, PostgreSQL and the sink included),
# and how much of that is the sender itself and the sink: the CPU budget of a message.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
DELAYS=${DELAYS:-0 10 50 200}
PARTNERS=${PARTNERS:-50}
PARALLEL=${PARALLEL:-16}
build=${CHANNELD_BUILD_DIR:-build-bench}
die() { echo "latency: $*" >&2; exit 1; }
n_for() { local v="N_$1"; local d; case $1 in 0) d=20000 ;; 10) d=6000 ;; 50) d=3000 ;; *) d=1600 ;; esac; echo "${!v:-$d}"; }

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHANNELD_BENCH=ON >/dev/null
cmake --build "$build" -j2 --target channeld bench_bare_curl_smtp >/dev/null
# CHANNELD_BIN measures another build (an A/B against an older commit, say) on the same site.
channeld=${CHANNELD_BIN:-$repo/$build/daemon/channeld}
bare=$repo/$build/bench/bench_bare_curl_smtp
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

work=$(mktemp -d /tmp/channeld-latency.XXXXXX)
chmod 755 "$work"
source "$repo/bench/site.sh"
cleanup() {
  set +e
  stop_sink
  scripts/pg-cluster.sh stop "$work/pg"
  if [ "${KEEP:-0}" = 1 ]; then echo "latency: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
start_pg

# CPU time in clock ticks: the whole machine's busy time, one process's, a finished child's.
hz=$(getconf CLK_TCK)
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
proc_cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# µs per message from a tick count over n messages.
per_msg() { awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN { printf "%.0f", t * 1e6 / hz / n }'; }
TIMEFORMAT='%U %S'
# Runs "$@" (its output discarded) and sets cpu_run to its user and system time, in ticks.
timed() {
  local out; out=$({ time "$@" >/dev/null 2>&1; } 2>&1) || return 1
  cpu_run=$(awk -v u="${out% *}" -v s="${out#* }" -v hz="$hz" 'BEGIN { printf "%.0f", (u + s) * hz }')
}

rows=()
cpu_rows=()
for delay in $DELAYS; do
  n=$(n_for "$delay")
  [ $((n % PARTNERS)) -eq 0 ] || die "N_$delay ($n) must be a multiple of PARTNERS"
  port=$(scripts/free-port.sh 25300)
  start_sink "$delay" "$port"
  make_site "$work/site" $((n / PARTNERS)) "$port"
  "$channeld" preview --config "$work/site/channeld.toml" --kit bench --partner p00 --out "$work/preview" >/dev/null
  eml=$(ls "$work"/preview/*.eml | head -1)
  size=$(stat -c %s "$eml")

  fresh_db
  lsn0=$(psql_q "SELECT pg_current_wal_lsn()")
  m0=$(machine_busy); k0=$(proc_cpu "$sink_pid")
  t0=$(date +%s.%N)
  # The log goes to its file inside, so that only the time keyword's line reaches timed().
  timed bash -c '"$0" --config "$1" --until-idle >"$2.out" 2>"$2.log"' "$channeld" \
    "$work/site/channeld.toml" "$work/channeld-$delay" ||
    die "channeld failed, see $work/channeld-$delay.log (KEEP=1)"
  t1=$(date +%s.%N)
  ch_cpu=("$(($(machine_busy) - m0))" "$cpu_run" "$(($(proc_cpu "$sink_pid") - k0))")
  read -r sent span < <(psql_q "SELECT count(*), extract(epoch FROM max(sent_at) - min(sent_at)) + 1
                                FROM outbox WHERE state = 'sent'" | tr '|' ' ')
  [ "$sent" -eq "$n" ] || die "channeld sent $sent of $n at $delay ms, see $work/channeld-$delay.log"
  # What durability costs per message: WAL bytes and commits (each commit waits for an fsync).
  wal=$(psql_q "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') / $n)")
  commits=$(psql_q "SELECT round(xact_commit / $n.0, 3) FROM pg_stat_database WHERE datname = 'channeld'")
  ch_wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  # channeld's own timing of its sends, first to last (its --until-idle summary); sent_at keeps
  # whole seconds, so the database's span, a second too long at worst, is only the fallback
  # for a binary that does not print the line (CHANNELD_BIN of an older build).
  own=$(sed -n 's/^This run sent \([0-9]*\) messages in \([0-9.]*\) s .*/\1 \2/p' "$work/channeld-$delay.out")
  if [ -n "$own" ]; then
    ch_rate=$(awk -v n="${own% *}" -v s="${own#* }" 'BEGIN { printf "%.0f", (n - 1) / s }')
  else
    ch_rate=$(awk -v n="$n" -v s="$span" 'BEGIN { printf "%.0f", n / s }')
  fi

  m0=$(machine_busy); k0=$(proc_cpu "$sink_pid")
  t0=$(date +%s.%N)
  timed /usr/sbin/smtp-source -s "$PARALLEL" -m "$n" -l "$size" -d "127.0.0.1:$port"
  t1=$(date +%s.%N)
  src_cpu=("$(($(machine_busy) - m0))" "$cpu_run" "$(($(proc_cpu "$sink_pid") - k0))")
  src_rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')

  bare_rate="-"
  if [ "$delay" = 0 ]; then
    m0=$(machine_busy); k0=$(proc_cpu "$sink_pid")
    timed bash -c '"$0" --url "$1" --messages "$2" --parallel "$3" --message "$4" >"$5"' "$bare" \
      "smtp://127.0.0.1:$port" "$n" "$PARALLEL" "$eml" "$work/bare.out"
    bare_cpu=("$(($(machine_busy) - m0))" "$cpu_run" "$(($(proc_cpu "$sink_pid") - k0))")
    line=$(cat "$work/bare.out")
    bare_rate=$(sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p' <<<"$line" | awk '{ printf "%.0f", $1 }')
    for sender in channeld smtp-source bare; do
      case $sender in
        channeld) c=("${ch_cpu[@]}"); name="channeld (whole run)" ;;
        smtp-source) c=("${src_cpu[@]}"); name="smtp-source -s $PARALLEL -d" ;;
        bare) c=("${bare_cpu[@]}"); name="bare libcurl" ;;
      esac
      total=$(per_msg "${c[0]}" "$n"); sink=$(per_msg "${c[2]}" "$n")
      own=$(per_msg "${c[1]}" "$n")
      rest=$(per_msg "$((c[0] - c[1] - c[2]))" "$n")
      cpu_rows+=("$(printf '| %s | %s µs | %s µs | %s µs | %s µs | %s msg/s |' "$name" "$total" \
        "$own" "$sink" "$rest" "$(awk -v t="$total" -v c="$(nproc)" 'BEGIN { printf "%.0f", c * 1e6 / t }')")")
    done
  fi
  stop_sink
  open="-"; [ -f "$work/sink-$delay.stats" ] && open=$(awk '{ print $4 }' "$work/sink-$delay.stats")
  pct_src=$(awk -v a="$ch_rate" -v b="$src_rate" 'BEGIN { printf "%.0f", 100 * a / b }')
  pct_bare="-"; [ "$bare_rate" != "-" ] && pct_bare=$(awk -v a="$ch_rate" -v b="$bare_rate" 'BEGIN { printf "%.0f%%", 100 * a / b }')
  row=$(printf '| %4s ms | %6s | %5s B | %7s | %6ss | %11s | %7s | %4s%% | %6s | %s | %5s B | %s |' \
    "$delay" "$n" "$size" "$ch_rate" "$ch_wall" "$src_rate" "$bare_rate" "$pct_src" "$pct_bare" "$open" "$wal" "$commits")
  rows+=("$row")
  echo "latency: $row"
done

echo
echo "PostgreSQL: fsync=$(psql_q 'SHOW fsync'), synchronous_commit=$(psql_q 'SHOW synchronous_commit'), full_page_writes=$(psql_q 'SHOW full_page_writes'); parallelism $PARALLEL; $PARTNERS partners"
echo "| delay   | N      | message | channeld msg/s (sending span) | channeld wall | smtp-source -d msg/s | bare libcurl msg/s | vs smtp-source | vs bare | max open at sink | WAL/msg | commits/msg |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
if [ "${#cpu_rows[@]}" -gt 0 ]; then
  echo
  echo "CPU per message at 0 ms, the whole machine ($(nproc) cores; the bound is cores / CPU per message)"
  echo "| sender | machine CPU per message | the sender's own | the sink's | the rest (PostgreSQL, kernel threads) | bound |"
  echo "|---|---:|---:|---:|---:|---:|"
  printf '%s\n' "${cpu_rows[@]}"
fi
